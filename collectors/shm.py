"""Source ``shm``: the python backend's shared-memory regions in ``/dev/shm`` (a known Triton leak site).

The regions are the files named ``<prefix>*`` (prefix from ``--backend-config=python,shm-region-prefix-name=``,
learnt from the server's command line). Per read: how many regions, their apparent size and the bytes really
allocated (``st_blocks * 512``: shm pages are only used once touched). Regions outlive a crashed server, so this
source keeps reading while the server is down.
"""

from __future__ import annotations

import os
from pathlib import Path

from collectors.series import Labels, Point, Reading, labels_of
from collectors.source import SourceInfo
from collectors.target import ServerTarget
from rmt.errors import SourceUnavailable
from rmt.measures import register_measure

SOURCE = "shm"
register_measure("shm_regions_count", "count", SOURCE, "none", "python-backend shared-memory regions in /dev/shm")
register_measure("shm_size_bytes", "bytes", SOURCE, "lower", "apparent size of those regions (st_size summed)")
register_measure("shm_allocated_bytes", "bytes", SOURCE, "lower", "memory those regions really hold (st_blocks*512)")


class ShmSource:
    """Sums the ``/dev/shm`` regions of the watched server's python backend."""

    name = SOURCE
    inline = True
    """A read lists a memory-backed folder: it never blocks, and may share the collector's sampling thread."""

    def __init__(self, target: ServerTarget, *, shm_dir: Path = Path("/dev/shm"), timeout_s: float = 1.0) -> None:
        self.target = target
        self.shm_dir = shm_dir
        self.timeout_s = timeout_s
        self._dir_fd = -1
        """The folder, kept open: listing it by descriptor stats each entry relative to it (no path walk)."""
        self._labels: tuple[str, Labels] = ("", ())

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

    def read(self) -> Reading:
        """One scan of the folder."""
        prefix = self.target.shm_prefix()
        if not prefix:
            raise SourceUnavailable("python-backend shm prefix unknown until the server is found")
        count = size = allocated = 0
        try:
            if self._dir_fd < 0:
                self._dir_fd = os.open(self.shm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            with os.scandir(self._dir_fd) as entries:
                for entry in entries:
                    if entry.name.startswith(prefix):
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # removed between listing and stat
                        count += 1
                        size += st.st_size
                        allocated += st.st_blocks * 512
        except OSError as exc:
            self.close()  # opened again at the next read (the folder may have been remounted)
            raise SourceUnavailable(f"cannot list {self.shm_dir}: {exc.strerror}") from None
        if self._labels[0] != prefix:
            self._labels = (prefix, labels_of(prefix=prefix))
        labels = self._labels[1]
        return Reading([Point("shm_regions_count", labels, float(count)),
                        Point("shm_size_bytes", labels, float(size)),
                        Point("shm_allocated_bytes", labels, float(allocated))])
