"""Cheap per-tick reads of one process from ``/proc``: kept-open files read again with ``os.pread``.

psutil opens, reads and closes a ``/proc`` file per value and wraps each call in several layers, which at ten
reads a second of every process of the tree makes it the collector's largest cost. A :class:`ProcFiles` opens
``/proc/<pid>/statm`` and ``/proc/<pid>/stat`` once and re-reads them with one ``pread`` each (the kernel
regenerates the text at offset 0), several times cheaper (figures: docs/benchmarks.md, collectors). The values
are the ones psutil reports:

==========================  ==================================================================  ================
value                       where                                                                psutil
==========================  ==================================================================  ================
RSS                         ``statm`` field 2 (pages) × page size                                ``memory_info``
threads, CPU time           ``stat`` fields 20 and 14 + 15 (clock ticks ÷ ``SC_CLK_TCK``)        ``num_threads``,
                                                                                                 ``cpu_times``
open fds                    size of ``/proc/<pid>/fd`` (Linux 6.2+), else its entries            ``num_fds``
USS                         ``Private_*`` lines of ``smaps_rollup`` (a kernel page walk)         ``memory_full_info``
==========================  ==================================================================  ================

A kept-open file refers to the process, not to its number: once the process has ended (or is a zombie, whose
``statm`` is all zeros) every read raises :class:`ProcessLookupError`, so a recycled PID is never read by mistake.
"""

from __future__ import annotations

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_READ = 4096


class ProcFiles:
    """The ``/proc`` files of one process, opened once; ``close()`` releases them."""

    def __init__(self, pid: int, *, proc_dir: str = "/proc") -> None:
        self.pid = pid
        self._dir = f"{proc_dir}/{pid}"
        self._statm = -1
        self._stat = -1
        try:
            self._statm = os.open(f"{self._dir}/statm", os.O_RDONLY | os.O_CLOEXEC)
            self._stat = os.open(f"{self._dir}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.close()
            raise ProcessLookupError(pid) from None
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close the kept-open files (idempotent)."""
        for fd in (self._statm, self._stat):
            if fd >= 0:
                os.close(fd)
        self._statm = self._stat = -1

    def rss_bytes(self) -> int:
        """Resident set size; ProcessLookupError once the process ended or is a zombie."""
        fields = os.pread(self._statm, _READ, 0).split()
        if fields[0] == b"0":  # a zombie has no memory map left: statm reads all zeros
            raise ProcessLookupError(self.pid)
        return int(fields[1]) * PAGE_SIZE

    def threads_and_cpu_s(self) -> tuple[int, float]:
        """``(threads, user + system CPU seconds)`` from one read of ``stat``."""
        data = os.pread(self._stat, _READ, 0)
        fields = data[data.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
        if fields[0] == b"Z":
            raise ProcessLookupError(self.pid)
        return int(fields[17]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def open_fds(self) -> int:
        """Open file descriptors (PermissionError unless run as the process' user or root).

        Linux 6.2+ reports the count as the size of ``/proc/<pid>/fd`` (one ``stat``); older kernels report 0 there,
        and the folder is listed instead."""
        try:
            count = os.stat(f"{self._dir}/fd").st_size
            return count if count > 0 else len(os.listdir(f"{self._dir}/fd"))
        except FileNotFoundError:
            raise ProcessLookupError(self.pid) from None

    def uss_bytes(self) -> int:
        """Unique set size: the ``Private_*`` lines of ``smaps_rollup`` (``smaps`` where the kernel has no rollup or
        refuses it for a live process, as psutil does); PermissionError as for ``open_fds``.

        Reads by path, not through the kept-open files, so another thread may call it while this one closes them."""
        try:
            text = self._read_all("smaps_rollup")
        except (FileNotFoundError, ProcessLookupError):
            text = b""
        if not text:
            try:
                text = self._read_all("smaps")
            except (FileNotFoundError, ProcessLookupError):
                raise ProcessLookupError(self.pid) from None
            if not text:  # a zombie has no memory map left
                raise ProcessLookupError(self.pid)
        return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(b"Private_")) * 1024

    def _read_all(self, name: str) -> bytes:
        fd = os.open(f"{self._dir}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)
