"""Source ``shm``: the python backend's shared-memory regions in ``/dev/shm`` (a known Triton leak site).

The regions are the files named ``<prefix>*`` (prefix from ``--backend-config=python,shm-region-prefix-name=``,
learnt from the server's command line). Per read: how many regions, their apparent size and the bytes really
allocated (``st_blocks * 512``: shm pages are only used once touched). Regions outlive a crashed server, so this
source keeps reading while the server is down.
"""

from __future__ import annotations

import os
from pathlib import Path

from collectors.series import Point, Reading, labels_of
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

    def __init__(self, target: ServerTarget, *, shm_dir: Path = Path("/dev/shm"), timeout_s: float = 1.0) -> None:
        self.target = target
        self.shm_dir = shm_dir
        self.timeout_s = timeout_s

    def open(self) -> SourceInfo:
        """Unavailable when the shared-memory folder does not exist (not Linux)."""
        if not self.shm_dir.is_dir():
            return SourceInfo(False, f"{self.shm_dir} does not exist: shared-memory regions cannot be watched here")
        return SourceInfo(details={"shm_dir": str(self.shm_dir), "prefix": self.target.shm_prefix()})

    def close(self) -> None:
        """Nothing to release."""

    def read(self) -> Reading:
        """One scan of the folder."""
        prefix = self.target.shm_prefix()
        if not prefix:
            raise SourceUnavailable("python-backend shm prefix unknown until the server is found")
        count = size = allocated = 0
        try:
            with os.scandir(self.shm_dir) as entries:
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
            raise SourceUnavailable(f"cannot list {self.shm_dir}: {exc.strerror}") from None
        labels = labels_of(prefix=prefix)
        return Reading([Point("shm_regions_count", labels, float(count)),
                        Point("shm_size_bytes", labels, float(size)),
                        Point("shm_allocated_bytes", labels, float(allocated))])
