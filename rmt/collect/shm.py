"""Source ``shm``: the python backend's shared-memory regions in ``/dev/shm`` (a known Triton leak site).

The regions are the files named ``<prefix>*`` (prefix from ``--backend-config=python,shm-region-prefix-name=``,
learnt from the server's command line). Per read: how many regions, their apparent size and the bytes really
allocated (``st_blocks * 512``: shm pages are only used once touched). Regions outlive a crashed server, so this
source keeps reading while the server is down.

A read is one ``fstat`` of the kept-open folder and one ``stat`` per region: the folder (every server's regions and
anything else there) is listed again only when it changed — its modification time, change time or size (tmpfs
counts its entries in the size) differ from the last listing's — and at every read while the last listing was taken
less than :data:`SETTLE_NS` after the folder's latest change (a timestamp may be coarser than the changes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rmt.collect.series import Labels, Point, Reading, labels_of
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget
from rmt.core.errors import SourceUnavailable
from rmt.core.measures import SHM

SOURCE = "shm"
SETTLE_NS = 1_000_000_000
"""A listing taken this soon after the folder's latest change is taken again at the next read."""
MEASURES = tuple(SHM)
"""The series of a read, in order (one each, labelled with the prefix)."""


class ShmSource:
    """Sums the ``/dev/shm`` regions of the watched server's python backend."""

    name = SOURCE
    inline = True
    """A read lists a memory-backed folder: it never blocks, and may share the collector's sampling thread."""

    def __init__(self, target: ServerTarget, *, shm_dir: Path = Path("/dev/shm"), timeout_s: float = 1.0,
                 every_s: float = 0.0) -> None:
        self.target = target
        self.shm_dir = shm_dir
        self.timeout_s = timeout_s
        self.every_s = every_s
        """Read at most this often (0: every tick); see :attr:`rmt.collect.sidecar.SidecarOptions.shm_every_s`."""
        self._dir_fd = -1
        """The folder, kept open: listing it by descriptor stats each entry relative to it (no path walk)."""
        self._labels: tuple[str, Labels] = ("", ())
        self._listed: tuple[tuple[str, int, int, int, int], list[str], bool] | None = None
        """The last listing: the folder's signature (prefix, mtime, ctime, size, inode) then, the regions' names, and
        whether it was taken too soon after a change to be trusted."""
        self._points: list[Point] = []
        self._points_labels: Labels | None = None

    def open(self) -> SourceInfo:
        """Unavailable when the shared-memory folder does not exist (not Linux)."""
        if not self.shm_dir.is_dir():
            return SourceInfo(False, f"{self.shm_dir} does not exist: shared-memory regions cannot be watched here")
        return SourceInfo(details={"shm_dir": str(self.shm_dir), "prefix": self.target.shm_prefix()})

    def close(self) -> None:
        """Close the folder."""
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        self._listed = None

    def read(self) -> Reading:
        """The regions' count, size and allocation (the folder listed again only when it changed)."""
        prefix = self.target.shm_prefix()
        if not prefix:
            raise SourceUnavailable("python-backend shm prefix unknown until the server is found")
        count = size = allocated = 0
        try:
            if self._dir_fd < 0:
                self._dir_fd = os.open(self.shm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            names = self._names(prefix)
            for name in names:
                try:
                    st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
                except FileNotFoundError:  # removed since the listing: the folder changed, listed at the next read
                    continue
                count += 1
                size += st.st_size
                allocated += st.st_blocks * 512
        except OSError as exc:
            self.close()  # opened again at the next read (the folder may have been remounted)
            raise SourceUnavailable(f"cannot list {self.shm_dir}: {exc.strerror}") from None
        if self._labels[0] != prefix:
            self._labels = (prefix, labels_of(prefix=prefix))
        labels = self._labels[1]
        return Reading(note="", layout=self._layout(labels), values=[float(count), float(size), float(allocated)])

    def _names(self, prefix: str) -> list[str]:
        """The regions' names: the last listing while the folder has not changed since, else a new one."""
        st = os.fstat(self._dir_fd)
        sig = (prefix, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        listed = self._listed
        if listed is not None and listed[0] == sig and not listed[2]:
            return listed[1]
        listed_at = time.time_ns()
        with os.scandir(self._dir_fd) as entries:
            names = [e.name for e in entries if e.name.startswith(prefix)]
        recent = listed_at - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLE_NS  # a later change may not show
        self._listed = (sig, names, recent)
        return names

    def _layout(self, labels: Labels) -> list[Point]:
        if self._points_labels is not labels:
            nan = float("nan")
            self._points = [Point(measure, labels, nan) for measure in MEASURES]
            self._points_labels = labels
        return self._points
