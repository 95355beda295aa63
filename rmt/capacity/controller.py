"""The live sweep in Locust: a :class:`SweepController` that watches each step's windows and ends the step once
stable (perf_analyzer's rule), and :class:`SweepShape`, the ``LoadTestShape`` that stops the run at saturation or
SLO breach.

Attach from a locustfile (``rmt/scenarios/capacity.py`` does)::

    plugin = attach(events, __file__)                 # the scenario: traffic whose phases are the ladder
    attach_sweep(events, plugin)                      # this controller, configured from the definition's "capacity"

    class Sweep(SweepShape): ...                      # Locust finds the shape; -u users stay fixed all along

Data: on a local runner the controller counts Locust's ``request`` events (latency in µs from the intended send,
the issuing phase in ``context``); on a master it reads the windows every worker reports (``report_to_master``).
Control: :meth:`rmt.load.engine.TrafficEngine.end_phase` (the additive hook of rmt.load), sent to workers as the
``rmt_capacity_end`` message. Each decision is appended to ``capacity_control.jsonl`` (:class:`StepDecision`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar

import locust.runners
from hdrh.histogram import HdrHistogram
from locust import LoadTestShape
from locust.runners import MasterRunner, WorkerRunner

from rmt.capacity.ladder import SweepConfig, parse_sweep
from rmt.capacity.stability import Window, is_stable, judge_step
from rmt.core.errors import ConfigError
from rmt.core.hdr import clamp_us, new_histogram
from rmt.core.records import CAPACITY_CONTROL_FILE, StepDecision, parse_step_name
from rmt.core.rundir import RunDir
from rmt.core.scenario import parse_scenario
from rmt.core.windows import WindowState
from rmt.load.engine import engine_for
from rmt.load.schedule import PhaseClock

log = logging.getLogger(__name__)
MSG_END = "rmt_capacity_end"
NS = 1_000_000_000
WORKER_REPORT_S = 1
"""How often a sweep's workers report to the master (Locust's default, 3 s, left a 7 s step at most two complete
windows to judge: every distributed step ran to ``max_step_s`` and ended "unstable")."""
UNSERVED = ("failed_timeout", "failed_rejected", "failed_server", "failed_client", "dropped_cap")
"""Window counters of requests a step failed to serve (failed, or dropped by the client's in-flight cap)."""
_CONTROLLERS: weakref.WeakKeyDictionary[Any, SweepController] = weakref.WeakKeyDictionary()


def controller_for(environment: Any) -> SweepController | None:
    """The controller attached to ``environment`` (None when none is)."""
    return _CONTROLLERS.get(environment)


class SweepController:
    """Ends each step once stable; stops at saturation or SLO breach (see the module docstring)."""

    def __init__(self, config: SweepConfig, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self._clock_ns = clock_ns
        self.environment: Any = None
        self.decisions: list[StepDecision] = []
        self.stopped = ""
        """Why the sweep ended (``saturated``, ``slo``, ``ladder``), empty while it runs."""
        self._seconds: dict[tuple[int, str], list[Any]] = {}
        """(second, step) → [succeeded, unserved, latency sum µs, latency histogram], for steps not yet judged."""
        self._judged: set[str] = set()
        """Steps already decided: their seconds are released, and late reports of them are dropped."""
        self._clock: PhaseClock | None = None
        self._names: list[str] = []
        self._start_ns = 0
        self._current: int | None = None
        self._master = False
        self._run_dir = ""

    # -- attaching ---------------------------------------------------------------------------------------------------
    def register(self, environment: Any) -> SweepController:
        """Subscribe to the environment's events (workers: only the end-of-step message)."""
        self.environment = environment
        _CONTROLLERS[environment] = self
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            runner.register_message(MSG_END, self._on_end_message)
            locust.runners.WORKER_REPORT_INTERVAL = WORKER_REPORT_S  # read by the worker's report loop at each turn
            return self
        self._master = isinstance(runner, MasterRunner)
        if self._master:
            environment.events.worker_report.add_listener(self._on_worker_report)
        else:
            environment.events.request.add_listener(self._on_request)
        environment.events.test_start.add_listener(self._on_test_start)
        self._run_dir = str(getattr(environment.parsed_options, "rmt_run_dir", "") or "")
        return self

    def _on_test_start(self, environment: Any, **_kw: Any) -> None:
        engine = engine_for(environment)
        scenario = engine.require_scenario()
        self._names = [p.name for p in scenario.phases]
        self._clock = PhaseClock(parse_scenario(scenario.raw).phases)
        start = engine.plan.start_ns if engine.plan is not None else self._clock_ns()
        if self._master and self._run_dir:
            start = int(RunDir(self._run_dir, create=False).manifest().get("load_start_ns") or start)
        self._start_ns = start
        self._current = 0
        self._seconds.clear()
        self._judged.clear()
        self.decisions.clear()
        self.stopped = ""
        if self._run_dir:
            with RunDir(self._run_dir) as rd:
                rd.update_manifest(capacity={"config": self.config.to_dict()})

    # -- data --------------------------------------------------------------------------------------------------------
    def _bucket(self, second: int, phase: str) -> list[Any] | None:
        """The second's entry of a step not yet judged (None for a judged step: nothing reads it any more)."""
        if phase in self._judged:
            return None
        key = (second, phase)
        entry = self._seconds.get(key)
        if entry is None:
            entry = self._seconds[key] = [0, 0, 0.0, new_histogram()]
        return entry

    def _on_request(self, response_time: float, exception: Any = None, context: Any = None, **_kw: Any) -> None:
        phase = (context or {}).get("phase") if isinstance(context, Mapping) else None
        if phase is None or parse_step_name(str(phase)) is None:
            return
        entry = self._bucket(self._clock_ns() // NS, str(phase))
        if entry is None:
            return
        if exception is None:
            latency_us = float(response_time) * 1000
            entry[0] += 1
            entry[2] += latency_us
            entry[3].record_value(clamp_us(latency_us))
        else:
            entry[1] += 1

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        for key, wire in (data.get("rmt") or {}).get("windows", []):
            phase = str(key[3])
            if parse_step_name(phase) is None:
                continue
            entry = self._bucket(int(key[0]) // NS, phase)
            if entry is None:
                continue
            state = WindowState.from_wire(wire)
            succeeded = state.count("succeeded")
            entry[0] += succeeded
            entry[1] += sum(state.count(name) for name in UNSERVED)
            hist = state.latency
            entry[2] += hist.get_mean_value() * succeeded if hist.get_total_count() else 0.0
            entry[3].add(hist)

    def _on_end_message(self, environment: Any, msg: Any, **_kw: Any) -> None:
        engine_for(environment).end_phase(int(msg.data["index"]), int(msg.data["at_ns"]))

    # -- control -----------------------------------------------------------------------------------------------------
    def _windows(self, index: int, upto_ns: int) -> tuple[list[Window], HdrHistogram, list[int]]:
        """Complete windows of step ``index`` (after its settling second), up to ``upto_ns``."""
        assert self._clock is not None
        phase = self._names[index]
        start_s = self._start_ns / NS + (self._clock.end_of(index - 1) if index else 0.0)
        first = math.ceil(start_s + 1)
        last = upto_ns // NS  # seconds < last are complete
        if self._master:
            last -= WORKER_REPORT_S + 1  # a worker's report of these seconds may still be on its way
        w = self.config.window_s
        windows, seconds = [], []
        for begin in range(first, last - w + 1, w):
            ok = failed = 0
            total = 0.0
            for s in range(begin, begin + w):
                entry = self._seconds.get((s, phase))
                if entry is not None:
                    ok, failed, total = ok + entry[0], failed + entry[1], total + entry[2]
            windows.append(Window(ok, failed, total, float(w)))
            seconds.append(begin)
        return windows, new_histogram(), seconds

    def _judge(self, index: int, now_ns: int, *, stable: bool) -> bool:
        """Record how step ``index`` ended; True when the sweep must stop."""
        assert self._clock is not None
        windows, hist, seconds = self._windows(index, now_ns)
        judged = seconds[-self.config.stable_windows:] if stable else seconds
        phase = self._names[index]
        for begin in judged:
            for s in range(begin, begin + self.config.window_s):
                entry = self._seconds.get((s, phase))
                if entry is not None:
                    hist.add(entry[3])
        p99 = float(hist.get_value_at_percentile(99)) if hist.get_total_count() else math.nan
        parsed = parse_step_name(phase)
        offered = parsed[1] if parsed else math.nan
        outcome = judge_step(windows, offered, p99, self.config, stable)
        start_ns = self._start_ns + int((self._clock.end_of(index - 1) if index else 0.0) * NS)
        decision = StepDecision(index, phase, offered, outcome.achieved_per_s, p99, outcome.failure_ratio,
                                len(windows), stable, outcome.reason, start_ns, now_ns)
        self.decisions.append(decision)
        log.info("rmt capacity: %s achieved %.1f/s p99 %.1f ms (%s)", phase, outcome.achieved_per_s, p99 / 1000,
                 outcome.reason)
        if self._run_dir:
            with RunDir(self._run_dir) as rd:
                rd.append(CAPACITY_CONTROL_FILE, [asdict(decision)], flush=True)
        self._release(phase)
        if outcome.stop:
            self.stopped = outcome.reason
        return outcome.stop

    def _release(self, phase: str) -> None:
        """Forget a judged step's seconds: a sweep holds one histogram per second of the current step only."""
        self._judged.add(phase)
        for key in [k for k in self._seconds if k[1] == phase]:
            del self._seconds[key]

    def _end_step(self, index: int, at_ns: int) -> None:
        assert self._clock is not None
        self._clock.end_phase(index, (at_ns - self._start_ns) / NS)
        runner = self.environment.runner
        if self._master:
            for client in list(runner.clients.keys()):
                runner.send_message(MSG_END, {"index": index, "at_ns": at_ns}, client)
        else:
            engine_for(self.environment).end_phase(index, at_ns)

    def tick(self) -> bool:
        """One control step (the shape calls it every second); False once the sweep is over."""
        if self.stopped:
            return False
        if self._clock is None or self._current is None:
            return True
        now = self._clock_ns()
        index = self._clock.index_at((now - self._start_ns) / NS)
        if index != self._current:  # the step ran for max_step_s without stabilising
            if self._judge(self._current, now, stable=False):
                return False
            if index is None:
                self.stopped = "ladder"
                return False
            self._current = index
            return True
        assert index is not None
        start_s = self._start_ns / NS + (self._clock.end_of(index - 1) if index else 0.0)
        elapsed = now / NS - start_s
        windows, _, _ = self._windows(index, now)
        if elapsed >= 1 + self.config.min_step_s and is_stable(windows, self.config.stable_windows,
                                                                 self.config.stable_tolerance):
            if self._judge(index, now, stable=True):
                return False
            if index + 1 >= len(self._names):
                self.stopped = "ladder"
                return False
            self._end_step(index, now)
            self._current = index + 1
        return True


class SweepShape(LoadTestShape):
    """The sweep's shape: the users of ``-u`` all along, until the controller says the sweep is over."""

    abstract = True
    use_common_options: ClassVar[bool] = True

    def tick(self) -> tuple[int, float] | None:
        """``(users, spawn rate)`` while the sweep runs; None (stop) once it ended."""
        assert self.runner is not None
        environment = self.runner.environment
        options = environment.parsed_options
        users = int(getattr(options, "num_users", 0) or 64)
        rate = float(getattr(options, "spawn_rate", 0) or users)
        controller = controller_for(environment)
        if controller is not None and not controller.tick():
            return None
        return users, rate


def attach_sweep(events: Any, plugin: Any) -> None:
    """Attach a :class:`SweepController` configured from the scenario plugin's definition (``capacity`` key)."""
    def on_init(environment: Any, **_kw: Any) -> None:
        data = plugin.definition.raw.get("capacity") if not isinstance(environment.runner, WorkerRunner) else None
        try:
            config = parse_sweep(data, f"{plugin.definition.name} capacity")
        except ConfigError as exc:
            print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        SweepController(config).register(environment)

    events.init.add_listener(on_init)
