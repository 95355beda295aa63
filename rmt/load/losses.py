"""Workers a distributed run lost, seen from the master: which worker, from when, and how many windows are missing.

A worker that stops heartbeating (Locust marks it ``missing`` after about 3 s), or that sends no final windows
within the drain timeout, is dropped from the merge (the windows of the others are written on, not held back) and
recorded under the manifest's :data:`~rmt.core.rundir.LOSSES` key::

    {"kind": "worker_lost", "subject": "worker <id>", "reason": "...", "last_window_end_ns": ...,
     "detected_ns": ..., "streams": 3, "windows_lost": 42}

``windows_lost`` = whole seconds from the end of its last reported window to the end of the load × the streams it
was sending (one window per stream and second). Its requests in that span reached the server, but not the windows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from locust.runners import STATE_MISSING

from rmt.core.windows import NS_PER_S

WORKER_LOST = "worker_lost"


@dataclass
class WorkerLoss:
    """One worker the master stopped waiting for."""

    worker: str
    reason: str
    last_window_end_ns: int
    """End of the last window it reported (epoch ns); the load start when it reported none."""
    detected_ns: int
    streams: int
    """Streams (× protocol) it sent windows for (those of the other workers when it reported none)."""
    windows_lost: int = 0
    late_reports: int = 0
    """Reports that came after it was declared lost (not merged: their seconds may be written already)."""

    def record(self) -> dict[str, Any]:
        """The manifest form."""
        return {"kind": WORKER_LOST, "subject": f"worker {self.worker}", **asdict(self)}


class WorkerWatch:
    """The master's view of which workers still count (see the module docstring)."""

    def __init__(self) -> None:
        self.streams: dict[str, set[tuple[str, str]]] = {}
        self.lost: dict[str, WorkerLoss] = {}

    def saw(self, worker: str, keys: list[tuple[int, str, str, str]]) -> None:
        """Note the streams of a worker's report."""
        self.streams.setdefault(worker, set()).update((k[1], k[2]) for k in keys)

    @staticmethod
    def missing(runner: Any, workers: list[str]) -> list[str]:
        """Those of ``workers`` the runner marks missing or forgot."""
        state = {c.id: c.state for c in runner.clients.all}
        return [w for w in workers if state.get(w, STATE_MISSING) == STATE_MISSING]

    def lose(self, worker: str, reason: str, watermark: float, start_ns: int, now_ns: int) -> WorkerLoss:
        """Record ``worker`` as lost; ``watermark`` is where its reports ended (0 or inf: none / final)."""
        last = int(watermark) if math.isfinite(watermark) and watermark > start_ns else start_ns
        loss = WorkerLoss(worker, reason, last, now_ns, len(self.streams.get(worker, ())))
        self.lost[worker] = loss
        return loss

    def records(self, end_ns: int) -> list[dict[str, Any]]:
        """Every loss with its windows counted up to the end of the load (``end_ns``)."""
        everyone = set().union(*self.streams.values()) if self.streams else set()
        for loss in self.lost.values():
            seconds = max(0, math.ceil((end_ns - loss.last_window_end_ns) / NS_PER_S))
            loss.streams = loss.streams or len(everyone)  # it reported none: it sent what the others sent
            loss.windows_lost = seconds * max(1, loss.streams)
        return [loss.record() for loss in self.lost.values()]
