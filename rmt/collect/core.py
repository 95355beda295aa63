"""The collector: drift-free sampling threads, gaps instead of zeros, records to the run directory.

Every source is read on the same schedule (tick k at ``start + k * interval``, monotonic clock). One sampling thread
wakes once per tick for the ``inline`` sources (reads that cannot block and take well under a millisecond: the
``process`` tick and ``shm``) and the ``split`` ones (an HTTP GET: Triton's metrics): it sends the split sources'
requests first, reads the inline sources meanwhile, then takes each answer that has arrived; an answer still on its
way is taken at the next tick's wake-up, so waiting for a server never costs a wake-up of its own (a thread's wake-up
is a measurable share of the collector's CPU at 10 Hz: docs/benchmarks.md) and a hung server never delays the other
sources.
Every other source (NVML) reads in a thread of its own. A source with an ``every_s`` longer than the interval
(Triton's metrics, by default: see :class:`~rmt.collect.sidecar.SidecarOptions`) is read at every n-th tick only
(``tick`` a multiple of n): its records have that resolution, none are invented in between.

A read that fails, raises, or takes longer than the source's ``timeout_s`` is a gap: a sample with ``ok: false``, its
reason, null for the source's series, and one more count in ``errors_total``. Ticks a thread missed while a read
overran are written as gaps too ("skipped"), so the time axis stays complete.

Records go at once to a bounded in-memory history served by :mod:`rmt.collect.http_api`; series declarations go to
``series.jsonl`` at once (flushed, before any sample that uses them), samples to ``samples.jsonl`` in one batch every
``flush_interval_s`` (encoded by :class:`~rmt.collect.series.SampleEncoder` and flushed by the housekeeping thread,
off the sampling threads), so a SIGKILL loses at most that interval.

A tick costs the reads and little else: the sampling threads sleep on a lock rather than an ``Event`` (a quarter
cheaper per wake-up), encode nothing, and a read that returns the very list of points it returned the tick before
(an unchanged Triton metrics page) reuses that tick's series ids and values.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from rmt.collect.series import Point, Reading, SampleEncoder, SeriesTable
from rmt.collect.source import Clock, Source, SourceInfo, SplitSource, SystemClock
from rmt.core.errors import ConfigError, RmtError, SourceUnavailable
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE, SampleRecord, SeriesRecord

log = logging.getLogger(__name__)
NS = 1_000_000_000
T = TypeVar("T")


@dataclass
class SourceStatus:
    """Live counters of one source (served by the HTTP API and the Prometheus exposition)."""

    name: str
    info: SourceInfo
    timeout_s: float
    samples_total: int = 0
    """Good reads."""
    errors_total: int = 0
    """Gaps: failed, timed-out or skipped reads."""
    last_error: str = ""
    last_seq: int = 0
    """``seq`` of the latest record of this source."""
    known_ids: list[int] = field(default_factory=list)
    """Series ids of the latest good read (a gap writes null for each)."""


@dataclass
class _InFlight:
    """A split source's read sent at tick ``tick`` whose answer has not been taken yet."""

    tick: int
    scheduled: int
    started: int
    epoch: int


class Collector:
    """Samples its sources on one schedule (one thread for the inline and split sources, one per other source);
    ``start()`` / ``stop()`` (joins) or ``with``."""

    def __init__(self, sources: Sequence[Source], *, run_dir: RunDir | None = None, interval_s: float = 0.1,
                 name: str = "local", clock: Clock | None = None, history_s: float = 60.0,
                 flush_interval_s: float = 1.0) -> None:
        if not interval_s > 0 or math.isinf(interval_s):
            raise ConfigError(f"bad sampling interval {interval_s!r} s: use a positive number, e.g. 0.1 for 10 Hz")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"sources named twice in {names}: give each source once")
        self.sources = list(sources)
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.name = name
        self.clock = clock or SystemClock()
        self.flush_interval_s = flush_interval_s
        self.table = SeriesTable(name)
        if run_dir is not None and (run_dir.path / SERIES_FILE).exists():  # restarted into the same run directory
            self.table.resume(run_dir.read(SERIES_FILE), _last_seq(run_dir.path / SAMPLES_FILE))
        self._stop = threading.Event()
        self._gate = threading.Lock()
        """Held while running; ``stop()`` releases it: a sampling thread sleeps in ``acquire(timeout=...)``."""
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._every = {s.name: max(1, round(getattr(s, "every_s", 0.0) / interval_s)) for s in self.sources}
        """Per source, read at every ``n``-th tick (its optional ``every_s`` in ticks; 1: every tick)."""
        history = max(1, sum(math.ceil(history_s / (interval_s * n)) for n in self._every.values()))
        self._history: collections.deque[SampleRecord] = collections.deque(maxlen=history)
        """``history_s`` of records of every source: each writes one record (good or gap) per tick it is read at."""
        self._latest: dict[str, SampleRecord] = {}
        self._pending: list[SampleRecord] = []
        self._write_failing = False
        """Whether the last write of samples failed (said once per failing stretch)."""
        self._encoder = SampleEncoder()
        self._shapes: dict[str, tuple[list[Point], list[int], dict[str, float | None]]] = {}
        """Per source, its last good read's points (the list object), their series ids and the values dict."""
        self._layouts: dict[str, dict[int, tuple[list[Point], list[int], list[str]]]] = {}
        """Per source, the layouts it returned (by ``id``, the list kept): their series ids, as ints and strings."""
        self.status: dict[str, SourceStatus] = {}
        self.start_mono_ns = 0
        self.start_epoch_ns = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Collector:
        """Open every source (unavailable ones are logged once and skipped) and start the sampling threads."""
        if self._threads:
            raise RuntimeError("collector already started")
        for source in self.sources:
            try:
                info = source.open()
            except SourceUnavailable as exc:
                info = SourceInfo(False, str(exc))
            if not info.available:
                log.info("rmt collector: source %s unavailable: %s", source.name, info.reason)
            self.status[source.name] = SourceStatus(source.name, info, source.timeout_s)
        self.start_mono_ns = self.clock.mono_ns()
        self.start_epoch_ns = self.clock.epoch_ns()
        if self.run_dir is not None:
            extra: dict[str, Any] = {}
            for st in self.status.values():
                extra.update(st.info.manifest)
            self.run_dir.update_manifest(collector=self.manifest(), **extra)
        for group in self._groups():
            name = "rmt-sample-" + "+".join(s.name for s in group)
            self._threads.append(threading.Thread(target=self._loop, args=(group,), name=name, daemon=True))
        housekeeping = threading.Thread(target=self._flush_loop, name="rmt-collector-flush", daemon=True)
        self._threads.append(housekeeping)
        self._gate.acquire()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, join every thread, close the sources and flush the run directory. Idempotent."""
        if self._threads and not self._stop.is_set():
            self._stop.set()
            self._gate.release()
        for thread in self._threads:
            thread.join(timeout=max(5.0, 2 * max((s.timeout_s for s in self.sources), default=1.0)))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("rmt collector: threads still in a read after stop: %s", ", ".join(alive))
        for source in self.sources:
            if source.name in self.status:
                source.close()
        if self.run_dir is not None and self.status:
            self._write_pending()
            try:
                self.run_dir.flush()
            except RmtError as exc:  # a full disk: said, the stop goes on
                log.error("rmt collector: %s", exc)
        self._threads = []

    def _groups(self) -> list[list[Source]]:
        """The available sources by sampling thread: the ``inline`` and ``split`` ones together (first), every
        other alone."""
        available = [s for s in self.sources if self.status[s.name].info.available]
        shared = [s for s in available if _shares(s)]
        return ([shared] if shared else []) + [[s] for s in available if not _shares(s)]

    @property
    def running(self) -> bool:
        """Whether the sampling threads run."""
        return bool(self._threads) and not self._stop.is_set()

    def manifest(self) -> dict[str, Any]:
        """The ``collector`` key of the run manifest: schedule and each source's availability and details."""
        return {
            "name": self.name,
            "interval_s": self.interval_s,
            "start_epoch_ns": self.start_epoch_ns,
            "start_mono_ns": self.start_mono_ns,
            "sources": {
                st.name: {"available": st.info.available, "reason": st.info.reason, "timeout_s": st.timeout_s,
                          "every_s": self._every[st.name] * self.interval_s, **st.info.details}
                for st in self.status.values()
            },
        }

    # -- sampling -----------------------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the collector is stopping."""
        if self._gate.acquire(timeout=seconds):
            self._gate.release()  # hand the stop on to the next sleeping thread
            return True
        return False

    def _loop(self, sources: list[Source]) -> None:
        """Read ``sources`` at every tick: one source per thread, or the inline and split sources together (each
        split source's request sent first, its answer taken at the end of the tick or at a later tick)."""
        interval_ns = int(self.interval_s * NS)
        skipped = ("skipped: the previous read of this source overran its tick" if len(sources) == 1 else
                   f"skipped: the previous tick of the sources sharing a thread ({', '.join(s.name for s in sources)})"
                   f" overran")
        split = [cast(SplitSource, s) for s in sources if getattr(s, "split", False)]
        others = [s for s in sources if not getattr(s, "split", False)]
        flights: dict[str, _InFlight] = {}
        next_tick = {s.name: 0 for s in split}
        """Per split source, its first tick not yet sent (the ticks an answer overran are skipped)."""
        every = {s.name: self._every[s.name] for s in sources}
        step = math.gcd(*every.values())
        """Ticks between two wake-ups: each source is read at the ticks that are multiples of its own ``every``."""
        k = 0
        try:
            while not self._stop.is_set():
                scheduled = self.start_mono_ns + k * interval_ns
                wait_ns = scheduled - self.clock.mono_ns()
                if wait_ns > 0 and self._sleep(wait_ns / NS):
                    break
                started = self.clock.mono_ns()
                missed = (started - scheduled) // interval_ns // step * step
                if missed > 0:  # the previous tick overran these ticks: each is a gap, the axis stays complete
                    for source in others:
                        due = -(-k // every[source.name]) * every[source.name]  # its first tick from k on
                        for j in range(due, k + missed, every[source.name]):
                            self._gap(source, j, self.start_mono_ns + j * interval_ns, started, math.nan, skipped)
                    k += missed
                    scheduled = self.start_mono_ns + k * interval_ns
                for source in split:  # answers that came after their tick; then this tick's requests
                    flight = flights.get(source.name)
                    if flight is not None and self._take(source, flight, wait=False):
                        del flights[source.name]
                    if source.name not in flights and k % every[source.name] == 0:
                        for j in range(next_tick[source.name], k, every[source.name]):
                            self._gap(source, j, self.start_mono_ns + j * interval_ns, started, math.nan, skipped)
                        next_tick[source.name] = k + every[source.name]
                        started = self._begin(source, k, scheduled, started, flights)
                for source in others:
                    if k % every[source.name] == 0:
                        started = self._read(source, k, scheduled, started)
                k += step
                for source in split:  # the answers already there: no wake-up to wait for them, unless the
                    flight = flights.get(source.name)  # timeout ends before the next tick (then it decides now)
                    if flight is not None and flight.tick == k - step:
                        wait = flight.started + int(source.timeout_s * NS) < self.start_mono_ns + k * interval_ns
                        if self._take(source, flight, wait=wait):
                            del flights[source.name]
        finally:
            for source in split:  # stopping: wait for the answers on their way (as a join waits for a read)
                flight = flights.pop(source.name, None)
                if flight is not None:
                    self._take(source, flight, wait=True)

    def _begin(self, source: SplitSource, k: int, scheduled: int, started: int,
               flights: dict[str, _InFlight]) -> int:
        """Send a split source's request for tick ``k`` (a gap at once if it cannot be sent); returns the time."""
        epoch = self.clock.epoch_ns()
        _, error = _call(source, source.begin)
        ended = self.clock.mono_ns()
        if error:
            self._gap(source, k, scheduled, started, (ended - started) / 1e3, error, epoch)
        else:
            flights[source.name] = _InFlight(k, scheduled, started, epoch)
        return ended

    def _take(self, source: SplitSource, flight: _InFlight, *, wait: bool) -> bool:
        """Record the answer to ``flight`` if it has come (or, with ``wait``, once it comes), or its gap when it
        failed or is over the timeout; False while it is still on its way."""
        timeout_ns = int(source.timeout_s * NS)
        while True:
            reading, error = _call(source, source.poll)
            duration = self.clock.mono_ns() - flight.started
            if reading is not None or error:
                break
            if duration > timeout_ns:
                source.cancel()
                break
            if not wait:
                return False
            source.wait((timeout_ns - duration) / NS)
        if not error and duration > timeout_ns:
            error = f"timeout: the read took {duration / 1e6:.1f} ms, over the {timeout_ns / 1e6:.0f} ms limit"
        if error or reading is None:
            self._gap(source, flight.tick, flight.scheduled, flight.started, duration / 1e3, error, flight.epoch)
        else:
            self._good(source, flight.tick, flight.scheduled, flight.started, flight.epoch, duration / 1e3, reading)
        return True

    def _read(self, source: Source, k: int, scheduled: int, started: int) -> int:
        """Read ``source`` for tick ``k`` and record the sample or gap; returns when the read ended (mono ns)."""
        epoch = self.clock.epoch_ns()
        reading, error = _call(source, source.read)
        ended = self.clock.mono_ns()
        duration = ended - started
        timeout_ns = int(source.timeout_s * NS)
        if not error and duration > timeout_ns:
            error = f"timeout: the read took {duration / 1e6:.1f} ms, over the {timeout_ns / 1e6:.0f} ms limit"
        if error or reading is None:
            self._gap(source, k, scheduled, started, duration / 1e3, error, epoch)
        else:
            self._good(source, k, scheduled, started, epoch, duration / 1e3, reading)
        return ended

    def _good(self, source: Source, tick: int, scheduled: int, started: int, epoch: int, duration_us: float,
              reading: Reading) -> None:
        layout = reading.layout
        new: list[SeriesRecord] = []
        values: dict[str, float | None]
        if layout is not None and reading.values is not None:
            layouts = self._layouts.setdefault(source.name, {})
            known = layouts.get(id(layout))
            if known is None or known[0] is not layout:  # a layout not seen before (the dict keeps it alive)
                try:
                    ids, new = self.table.ids_for(source.name, layout, epoch)
                except KeyError as exc:
                    self._gap(source, tick, scheduled, started, duration_us, str(exc.args[0]), epoch)
                    return
                if len(layouts) >= 64:  # a source that keeps building new layouts (the process source: one per set of
                    # processes read between full ticks): keep a bounded few
                    layouts.clear()
                known = layouts[id(layout)] = (layout, ids, [str(i) for i in ids])
            ids = known[1]
            values = dict(zip(known[2], reading.values, strict=True))
        else:
            points = reading.points
            shape = self._shapes.get(source.name)
            if shape is not None and shape[0] is points:  # the source returned its previous points unchanged
                ids, values = shape[1], shape[2]
            else:
                try:
                    ids, new = self.table.ids_for(source.name, points, epoch)
                except KeyError as exc:
                    self._gap(source, tick, scheduled, started, duration_us, str(exc.args[0]), epoch)
                    return
                values = dict(zip(map(str, ids), [p.value for p in points], strict=True))
                self._shapes[source.name] = (points, ids, values)
        rec = SampleRecord(self.name, 0, source.name, tick, started, epoch,
                           (started - scheduled) / 1e3, duration_us, True, reading.note or None, values)
        self._emit(rec, new, ids)

    def _gap(self, source: Source, tick: int, scheduled: int, started: int, duration_us: float, reason: str,
             epoch: int | None = None) -> None:
        with self._lock:
            st = self.status[source.name]
            st.errors_total += 1
            st.last_error = reason
            known = list(st.known_ids)
        if epoch is None:
            epoch = self.clock.epoch_ns() - (self.clock.mono_ns() - scheduled)
        rec = SampleRecord(self.name, 0, source.name, tick, max(started, scheduled), epoch,
                           (started - scheduled) / 1e3, duration_us, False, reason,
                           {str(i): None for i in known})
        self._emit(rec, [])

    def _emit(self, rec: SampleRecord, new_series: list[SeriesRecord], ids: list[int] | None = None) -> None:
        """Publish a record (history, latest, counters) and queue it for the run directory; ``ids`` of a good one."""
        with self._lock:  # seq and history order agree, so an ``after=seq`` cursor never skips a record
            rec.seq = self.table.next_seq()
            self._history.append(rec)
            self._latest[rec.source] = rec
            st = self.status[rec.source]
            st.last_seq = rec.seq
            if ids is not None:
                st.samples_total += 1
                st.known_ids = ids
            if self.run_dir is not None:
                self._pending.append(rec)
        if new_series and self.run_dir is not None:  # rare: written at once, before any sample that uses them
            try:
                self.run_dir.append(SERIES_FILE, [asdict(s) for s in new_series], flush=True)
            except (OSError, RmtError) as exc:  # a full or vanished disk: say so, keep sampling (the API serves)
                log.error("rmt collector: %d series declarations not written to %s: %s", len(new_series),
                          self.run_dir.path, exc)

    def _write_pending(self) -> None:
        """Append the samples emitted since the last call and flush the run directory."""
        with self._lock:
            samples, self._pending = self._pending, []
        if self.run_dir is None or not samples:
            return
        try:
            self.run_dir.append_lines(SAMPLES_FILE, [self._encoder.line(r) for r in samples])
            self.run_dir.flush()
        except (OSError, RmtError) as exc:  # a full or vanished disk (RunDir's one-line error): say so once per
            # failing stretch, keep sampling (the API still serves)
            if not self._write_failing:
                log.error("rmt collector: samples not written to %s: %s", self.run_dir.path, exc)
            self._write_failing = True
        else:
            self._write_failing = False

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self._write_pending()

    # -- views (thread-safe copies) -------------------------------------------------------------------------------
    def latest(self) -> dict[str, SampleRecord]:
        """The latest record (good or gap) of each source."""
        with self._lock:
            return dict(self._latest)

    def samples_after(self, seq: int = 0, since_epoch_ns: int = 0) -> list[SampleRecord]:
        """Records still in the history with ``seq > seq`` and ``t_epoch_ns >= since_epoch_ns``, in order."""
        with self._lock:
            return [r for r in self._history if r.seq > seq and r.t_epoch_ns >= since_epoch_ns]

    def series(self, after_seq: int = 0) -> list[SeriesRecord]:
        """Declarations with ``seq > after_seq``."""
        return [s for s in self.table.records() if s.seq > after_seq]

    def statuses(self) -> list[SourceStatus]:
        """A copy of every source's counters."""
        with self._lock:
            return [SourceStatus(s.name, s.info, s.timeout_s, s.samples_total, s.errors_total, s.last_error,
                                 s.last_seq, list(s.known_ids)) for s in self.status.values()]


def _last_seq(path: Path) -> int:
    """``seq`` of the last whole record of a samples file (0 when there is none): where a restart goes on."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 65536))
            lines = fh.read().split(b"\n")[:-1]
        return int(json.loads(lines[-1])["seq"]) if lines else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _call(source: Source, read: Callable[[], T]) -> tuple[T | None, str]:
    """``(result, "")`` of one call into a source, or ``(None, reason)``: a source bug must not end sampling."""
    try:
        return read(), ""
    except SourceUnavailable as exc:
        return None, str(exc) or type(exc).__name__
    except Exception as exc:  # recorded as a gap with the reason, and logged: keep going
        log.exception("rmt collector: source %s raised", source.name)
        return None, f"{type(exc).__name__}: {exc}"


def _shares(source: Source) -> bool:
    """Whether ``source`` is read in the shared sampling thread (``inline`` or ``split``)."""
    return bool(getattr(source, "inline", False) or getattr(source, "split", False))
