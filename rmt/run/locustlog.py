"""The Locust processes' output on its way to the run's ``locust.log``: copied line by line, and rmt's own
``rmt: error:`` lines kept in memory, so that the reason a run stopped reaches ``rmt run`` even when the log cannot
be written (its filesystem is full)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path
from typing import IO

MARK = "rmt: error: "


class LocustLog:
    """Copies the output of each process :meth:`follow` is given into ``path`` (appending) and keeps rmt's error
    lines; a write that fails ends the copy to the file (``lost``), never the reading of the pipes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = path.open("ab")
        self._lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}
        self.errors: list[str] = []
        """The text after ``rmt: error:`` of each such line, in the order they came."""
        self.lost = False
        """Whether a write to the file failed (what came after it is not in the file)."""

    def follow(self, proc: subprocess.Popen[bytes]) -> None:
        """Copy ``proc``'s output (``stdout=PIPE``, stderr folded in) until it closes it."""
        assert proc.stdout is not None
        thread = threading.Thread(target=self._copy, args=(proc.stdout,), name=f"rmt-locust-log-{proc.pid}",
                                  daemon=True)
        thread.start()
        self._threads[proc.pid] = thread

    def drain(self, proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the output of ``proc``, which ended, is read to its end."""
        thread = self._threads.get(proc.pid)
        if thread is not None:
            thread.join(timeout_s)

    def first_error(self) -> str:
        """The first ``rmt: error:`` text a process wrote (the cause; later ones are its consequences), or ""."""
        with self._lock:
            return self.errors[0] if self.errors else ""

    def _copy(self, stream: IO[bytes]) -> None:
        with stream:
            for line in iter(stream.readline, b""):
                text = line.decode(errors="replace")
                with self._lock:
                    if MARK in text:
                        self.errors.append(text.split(MARK, 1)[1].strip())
                    if self._file is None:
                        continue
                    try:
                        self._file.write(line)
                        self._file.flush()  # a killed rmt run keeps what its processes said
                    except OSError:
                        self.lost = True
                        with contextlib.suppress(OSError):
                            self._file.close()
                        self._file = None

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for the processes' output to end, then close the file."""
        for thread in self._threads.values():
            thread.join(timeout_s)
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
