"""Source ``process``: RSS, USS, threads, open fds and CPU time of tritonserver and every descendant (psutil).

Python-backend stubs hold Python models' memory, so a leaking model shows in its stub's series (label ``name`` is the
stub's instance name, ``tritonserver`` for the server). RSS is read every tick; threads, fds and CPU time every
``detail_every_s``; USS (a kernel page walk: ~1 ms per stub) every ``uss_every_s``. A value that cannot be read is
NaN with a note, never 0; no server at all is a gap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import psutil

from collectors.series import Labels, Point, Reading, labels_of
from collectors.source import SourceInfo
from collectors.target import ServerTarget, TrackedProcess
from rmt.errors import SourceUnavailable
from rmt.measures import register_measure

SOURCE = "process"
for _name, _unit, _doc in (
    ("process_rss_bytes", "bytes", "resident set size of one process of the Triton tree"),
    ("process_uss_bytes", "bytes", "unique set size (private pages) of one process; NaN where not readable"),
    ("process_threads_count", "count", "threads of one process"),
    ("process_open_fds_count", "count", "open file descriptors of one process"),
    ("process_cpu_s", "s", "user + system CPU time of one process since it started"),
    ("process_tree_rss_bytes", "bytes", "sum of RSS over the server and all its descendants"),
    ("process_tree_uss_bytes", "bytes", "sum of USS over the tree; NaN when any process' USS is unreadable"),
    ("process_tree_processes_count", "count", "processes in the tree (server + stubs + others)"),
):
    register_measure(_name, _unit, SOURCE, "none" if _name.endswith(("_count", "_cpu_s")) else "lower", _doc)


def process_labels(tp: TrackedProcess) -> Labels:
    """The labels of a process' series: pid, name, role, and model/instance for stubs."""
    info = tp.info
    return labels_of(pid=info.pid, name=info.name, role=info.role, model=info.model, instance=info.instance)


class ProcessTreeSource:
    """Reads the Triton process tree of a :class:`ServerTarget` each tick."""

    name = SOURCE

    def __init__(self, target: ServerTarget, *, timeout_s: float = 1.0, detail_every_s: float = 1.0,
                 uss_every_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.detail_every_s = detail_every_s
        self.uss_every_s = uss_every_s
        self._monotonic = monotonic
        self._last_detail = -math.inf
        self._last_uss = -math.inf
        self._labels: dict[psutil.Process, Labels] = {}

    def open(self) -> SourceInfo:
        """Always available (psutil); the server may come later."""
        self.target.server()
        return SourceInfo(details={"detail_every_s": self.detail_every_s, "uss_every_s": self.uss_every_s,
                                   "server": self.target.describe()})

    def close(self) -> None:
        """Nothing to release."""

    def _labels_of(self, tp: TrackedProcess) -> Labels:
        labels = self._labels.get(tp.proc)  # psutil hashes a process by pid and creation time
        if labels is None:
            if len(self._labels) > 4096:
                self._labels.clear()
            labels = self._labels[tp.proc] = process_labels(tp)
        return labels

    def read(self) -> Reading:
        """One read of every process of the tree."""
        tree = self.target.processes()
        if not tree:
            raise SourceUnavailable(f"no tritonserver process ({self._where()})")
        now = self._monotonic()
        detail = now - self._last_detail >= self.detail_every_s
        uss = now - self._last_uss >= self.uss_every_s
        points: list[Point] = []
        notes: list[str] = []
        rss_total = 0.0
        uss_total = 0.0
        gone = 0
        for tp in tree:
            labels = self._labels_of(tp)
            proc = tp.proc
            try:
                rss = float(proc.memory_info().rss)
                extra = self._details(proc, labels, detail, uss, notes) if detail or uss else []
                if uss:
                    uss_total += extra[-1].value
            except psutil.NoSuchProcess:
                gone += 1
                if tp.info.role == "server":
                    raise SourceUnavailable(f"tritonserver (pid {proc.pid}) ended during the read") from None
                continue
            except psutil.Error as exc:
                notes.append(f"pid {proc.pid}: {type(exc).__name__}")
                continue
            rss_total += rss
            points.append(Point("process_rss_bytes", labels, rss))
            points += extra
        if gone:
            self.target.invalidate()
            notes.append(f"{gone} process(es) ended during the read")
        tree_labels = labels_of(server_pid=tree[0].proc.pid)
        points.append(Point("process_tree_rss_bytes", tree_labels, rss_total))
        points.append(Point("process_tree_processes_count", tree_labels, float(len(tree) - gone)))
        if uss:
            points.append(Point("process_tree_uss_bytes", tree_labels, uss_total))
            self._last_uss = now
        if detail:
            self._last_detail = now
        return Reading(points, "; ".join(notes))

    def _details(self, proc: psutil.Process, labels: Labels, detail: bool, uss: bool,
                 notes: list[str]) -> list[Point]:
        """Threads, fds and CPU time (when ``detail``), then USS last (when ``uss``)."""
        out: list[Point] = []
        with proc.oneshot():
            if detail:
                cpu = proc.cpu_times()
                out += [Point("process_threads_count", labels, float(proc.num_threads())),
                        Point("process_open_fds_count", labels, self._fds(proc, notes)),
                        Point("process_cpu_s", labels, cpu.user + cpu.system)]
            if uss:
                out.append(Point("process_uss_bytes", labels, self._uss(proc, notes)))
        return out

    @staticmethod
    def _uss(proc: psutil.Process, notes: list[str]) -> float:
        try:
            return float(proc.memory_full_info().uss)
        except psutil.AccessDenied:
            notes.append(f"uss unreadable for pid {proc.pid} (AccessDenied: run as the server's user)")
            return math.nan

    @staticmethod
    def _fds(proc: psutil.Process, notes: list[str]) -> float:
        try:
            return float(proc.num_fds())
        except psutil.AccessDenied:
            notes.append(f"open fds unreadable for pid {proc.pid} (AccessDenied)")
            return math.nan

    def _where(self) -> str:
        facts = self.target.describe()
        if facts.get("http_port"):
            return f"waiting for a server listening on port {facts['http_port']}"
        return f"pid {facts.get('pid')} is gone"
