"""One load process's traffic state: the plan, the payload pools, the clock, the window book, open-loop arrivals.

A :class:`TrafficEngine` exists per Locust environment (``engine_for(environment)``); the users of the process
share it. It is configured by a :class:`Plan` — the scenario, the common start instant and this process's share of
the open-loop rate — which the coordinator (:mod:`rmt.load.plugin`) builds on the master (or locally) before any
user starts. Clocks: latencies use the monotonic clock; records carry epoch ns derived from it with one offset
taken at start, so they never jump.
"""

from __future__ import annotations

import random
import time
import weakref
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.queue import Queue

from rmt.core.errors import ConfigError
from rmt.core.modelconfig import config_from_json
from rmt.core.scenario import Scenario, parse_scenario
from rmt.load.payloads import ID_WIDTH, Pool, build_pool, resolve_stream
from rmt.load.schedule import ArrivalProcess, PhaseClock, StreamPicker
from rmt.load.shmio import ShmRegistry, prestart_tracker, require_kind, require_local
from rmt.load.windows import WindowBook

_ENGINES: weakref.WeakKeyDictionary[Any, TrafficEngine] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Plan:
    """What every load process must agree on; shipped from the master in the ``rmt_plan`` message."""

    scenario: dict[str, Any]
    """The scenario as parsed JSON (input data embedded)."""
    start_ns: int
    """Epoch ns at which phase 0 starts."""
    workers: int = 1
    rank: int = 0
    """This process's index among ``workers`` (seeds its random draws and staggers constant arrivals)."""

    def to_wire(self) -> dict[str, Any]:
        """The message body."""
        return {"scenario": self.scenario, "start_ns": self.start_ns, "workers": self.workers, "rank": self.rank}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Plan:
        """The inverse of :meth:`to_wire`."""
        return cls(data["scenario"], int(data["start_ns"]), int(data["workers"]), int(data["rank"]))


def engine_for(environment: Any) -> TrafficEngine:
    """The process's engine for ``environment`` (created on first use)."""
    engine = _ENGINES.get(environment)
    if engine is None:
        engine = _ENGINES[environment] = TrafficEngine()
    return engine


class TraceBudget:
    """At most ``per_s`` probe traces per second of this process."""

    __slots__ = ("_left", "_second", "per_s")

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self._second = -1
        self._left = 0

    def take(self, now_ns: int) -> bool:
        """Whether one more trace may be kept now."""
        second = now_ns // 1_000_000_000
        if second != self._second:
            self._second, self._left = second, self.per_s
        if self._left <= 0:
            return False
        self._left -= 1
        return True


class TrafficEngine:
    """Shared traffic state of one load process (see the module docstring)."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.scenario: Scenario | None = None
        self.book = WindowBook()
        self.draining = False
        self.arrivals: Queue[tuple[int, int, int, bool]] = Queue()
        self.idle = 0
        self.picker: StreamPicker | None = None
        self.clock: PhaseClock | None = None
        self.traces = TraceBudget(0)
        self._pools: dict[tuple[str, str], list[Pool]] = {}
        self._configs: dict[str, Any] = {}
        self._driver: gevent.Greenlet | None = None
        self._ids = 0
        self._id_prefix = b""
        self.start_mono_ns = 0
        self.epoch_offset_ns = time.time_ns() - time.perf_counter_ns()
        self.path_records: dict[str, list[dict[str, Any]]] = {}
        """Records of the stateful paths (sequences, shared memory) not yet shipped, by run-directory file."""
        self.shm = ShmRegistry(self.note)
        """Every shared-memory region this process created."""
        self.stateful: list[Any] = []
        """The users' :class:`~rmt.load.stateful.StatefulStream` objects (closed when the load drains)."""

    # -- configuration -------------------------------------------------------------------------------------------------
    def configure(self, plan: Plan) -> None:
        """Adopt ``plan`` (a new run: windows and pools start afresh)."""
        self.plan = plan
        self.scenario = parse_scenario(plan.scenario)
        if any(p.shm is not None and p.shm.kind == "system" for p in self.scenario.patterns):
            prestart_tracker()
        self.picker = StreamPicker(self.scenario, random.Random(self.scenario.seed * 7919 + plan.rank))
        self.clock = PhaseClock(self.scenario.phases)
        self.traces = TraceBudget(self.scenario.max_traces_per_s)
        self.draining = False
        self.arrivals = Queue()
        self._pools.clear()
        self.epoch_offset_ns = time.time_ns() - time.perf_counter_ns()
        self.start_mono_ns = plan.start_ns - self.epoch_offset_ns
        self._id_prefix = f"r{plan.rank:02d}-".encode()[:4]

    def require_scenario(self) -> Scenario:
        """The configured scenario; ConfigError when no plan arrived."""
        if self.scenario is None:
            raise ConfigError("no traffic scenario: pass --rmt-scenario FILE or set `scenario` on the user class")
        return self.scenario

    def model_config(self, model: str, fetch: Any) -> Any:
        """The model's configuration (``fetch(model)`` → JSON dict), cached per run."""
        if model not in self._configs:
            self._configs[model] = config_from_json(fetch(model))
        return self._configs[model]

    @property
    def configs(self) -> dict[str, Any]:
        """The model configurations fetched so far this run (model → ``ModelConfig``)."""
        return dict(self._configs)

    def pools(self, protocol: str, url: str, fetch: Any) -> list[Pool]:
        """Each stream's pre-encoded bodies for ``protocol`` (built once per run and server)."""
        key = (protocol, url)
        if key not in self._pools:
            scenario = self.require_scenario()
            plan = self.plan
            assert plan is not None
            pools = []
            for i, stream in enumerate(scenario.streams):
                resolved = resolve_stream(stream, scenario.pattern(stream.pattern), self.model_config(stream.model,
                                                                                                       fetch))
                pools.append(build_pool(resolved, scenario, protocol, seed=scenario.seed + 1000 * plan.rank + i))
            self._pools[key] = pools
        return self._pools[key]

    def validate(self, fetch: Any, host: str | None = None) -> None:
        """Resolve every stream against the server now (raises the first ConfigError before any load); a
        shared-memory pattern needs ``host`` to be this machine, a CUDA one cuda-python too."""
        scenario = self.require_scenario()
        for stream in scenario.streams:
            pattern = scenario.pattern(stream.pattern)
            if pattern.shm is not None:
                require_kind(pattern.shm.kind)
                if host is not None:
                    require_local(host)
            resolve_stream(stream, pattern, self.model_config(stream.model, fetch))

    # -- stateful paths ------------------------------------------------------------------------------------------------
    def note(self, name: str, record: dict[str, Any]) -> None:
        """Keep one record for the run-directory file ``name`` (shipped with the next report)."""
        self.path_records.setdefault(name, []).append(record)

    def take_records(self) -> dict[str, list[dict[str, Any]]]:
        """The records kept since the last call, by file."""
        out, self.path_records = self.path_records, {}
        return out

    def close_paths(self) -> None:
        """Close the users' stateful streams (unfinished sequences recorded), release every shared-memory region of
        this process (the load drained) and record what is left."""
        now = time.time_ns()
        for stream in self.stateful:
            stream.close(now)
        self.stateful.clear()
        self.shm.close_all()

    # -- hot-path helpers ----------------------------------------------------------------------------------------------
    def next_id(self) -> bytes:
        """A fresh request id of exactly :data:`~rmt.load.payloads.ID_WIDTH` bytes."""
        self._ids += 1
        return self._id_prefix + b"%016d" % self._ids

    def epoch_ns(self, mono_ns: int) -> int:
        """Epoch ns of a ``time.perf_counter_ns()`` reading."""
        return mono_ns + self.epoch_offset_ns

    def phase_index(self, mono_ns: int) -> int | None:
        """The phase active at ``mono_ns`` (``None`` after the last phase)."""
        assert self.clock is not None
        return self.clock.index_at((mono_ns - self.start_mono_ns) / 1e9)

    def end_phase(self, index: int, at_ns: int) -> bool:
        """End phase ``index`` early at epoch ``at_ns`` (later phases move up); False when not inside it.

        The additive hook of adaptive drivers (:mod:`rmt.capacity`): arrivals and closed-loop users alike follow.
        """
        assert self.clock is not None and self.plan is not None
        return self.clock.end_phase(index, (at_ns - self.plan.start_ns) / 1e9)

    # -- open loop ---------------------------------------------------------------------------------------------------
    def start_arrivals(self, dropped: Any) -> None:
        """Start issuing this process's share of the open-loop arrivals (idempotent).

        ``dropped(stream_index, phase_index, delayed, now_ns)`` is called for each arrival that finds every user busy.
        """
        scenario = self.require_scenario()
        if scenario.mode != "open" or self._driver is not None:
            return
        self._driver = gevent.spawn(self._drive, dropped)

    def _drive(self, dropped: Any) -> None:
        scenario = self.require_scenario()
        plan = self.plan
        assert plan is not None and self.picker is not None
        rng = random.Random(scenario.seed * 104729 + plan.rank)
        process = ArrivalProcess(scenario, 1.0 / plan.workers, rng, offset=plan.rank / plan.workers, clock=self.clock)
        backlog = scenario.backlog
        while not self.draining:
            nxt = process.next()
            if nxt is None:
                return
            t_s, phase = nxt
            intended = self.start_mono_ns + int(t_s * 1e9)
            delay = (intended - time.perf_counter_ns()) / 1e9
            if delay > 0:
                gevent.sleep(delay)
            if self.draining:
                return
            stream = self.picker.pick(phase)
            waiting = self.arrivals.qsize()
            if self.idle > waiting:
                self.arrivals.put((intended, stream, phase, False))
            elif waiting < backlog:
                self.arrivals.put((intended, stream, phase, True))
                dropped(stream, phase, True, self.epoch_ns(time.perf_counter_ns()))
            else:
                dropped(stream, phase, False, self.epoch_ns(time.perf_counter_ns()))

    def stop_arrivals(self) -> None:
        """Stop the arrival driver and discard arrivals not yet taken by a user."""
        self.draining = True
        if self._driver is not None:
            self._driver.kill(block=False)
            self._driver = None
        while not self.arrivals.empty():
            self.arrivals.get_nowait()
        # Wake users blocked on the queue so they see ``draining``.
        for _ in range(self.idle):
            self.arrivals.put((0, -1, -1, False))

    def wait_idle(self, timeout_s: float) -> int:
        """Wait (cooperatively) until no request is in flight or ``timeout_s`` passed; returns those still in flight."""
        deadline = time.monotonic() + timeout_s
        while self.book.in_flight > 0 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        return self.book.in_flight

    def reset(self) -> None:
        """Forget the plan (end of a run)."""
        self.stop_arrivals()
        self.plan = None
        self.scenario = None
        self.book = WindowBook()


__all__ = ["ID_WIDTH", "Plan", "TraceBudget", "TrafficEngine", "engine_for"]
