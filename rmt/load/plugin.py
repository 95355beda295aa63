"""The coordinator: plans a run, drains it, ships windows from workers and writes them on the master.

Attach explicitly from a locustfile::

    events.init_command_line_parser.add_listener(add_arguments)

    @events.init.add_listener
    def _(environment, **_kw):
        TritonTraffic().register(environment)

Flow. On ``test_start`` the master (or a local runner) builds a :class:`~rmt.load.engine.Plan` — the scenario,
a common start instant, each worker's rank — and sends it to every worker (``rmt_plan``) ahead of the spawn
message. Workers resolve their payload pools against the server before users start. Every ``report_to_master``
carries the windows closed since the last one; the master merges them per key and appends a window to
``windows.jsonl`` once every worker has reported past its second. On ``test_stopping`` the master asks workers to
drain (``rmt_drain``): they stop issuing, wait for in-flight requests, and send their last windows (``rmt_final``);
the master waits for all of them (bounded), then writes everything left and the totals to the manifest. A local
runner (no workers) hands its own closed windows over every second the same way, so its memory holds seconds, not
the run.

A scenario with a bad model, dtype or shape stops the run before any load with one ``rmt: error:`` line
(exit code 2). So does a run directory that cannot be written (a full filesystem) at any point: the line names the
file and the fix, the load stops (what cannot be recorded is not worth sending), nothing more is written and what
was written before stays readable.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from google.protobuf import json_format
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING, LocalRunner, MasterRunner, WorkerRunner

from rmt.core.errors import ConfigError
from rmt.core.hosts import split_host
from rmt.core.rundir import LOSSES, RunDir
from rmt.core.scenario import load_scenario, parse_scenario
from rmt.core.windows import NS_PER_S, WindowKey, WindowState, record_dict
from rmt.load.engine import Plan, TrafficEngine, engine_for
from rmt.load.losses import WorkerWatch
from rmt.load.users import (
    TritonGrpcUser,
    TritonUser,
    fetch_config_grpc,
    fetch_config_http,
    grpc_host,
)

log = logging.getLogger(__name__)
MSG_PLAN, MSG_DRAIN, MSG_FINAL = "rmt_plan", "rmt_drain", "rmt_final"
LOCAL_REPORT_S = 1.0
"""How often a local runner hands its closed windows to the writer (a worker reports at Locust's interval)."""


def add_arguments(parser: Any) -> None:
    """Locust options of rmt.load (attach to ``events.init_command_line_parser``)."""
    group = parser.add_argument_group("rmt.load")
    group.add_argument("--rmt-scenario", default="", env_var="LOCUST_RMT_SCENARIO",
                       help="traffic scenario JSON (or a file with a 'traffic' section)")
    group.add_argument("--rmt-run-dir", default="", env_var="LOCUST_RMT_RUN_DIR",
                       help="run directory for windows.jsonl, traces.jsonl and the manifest")
    group.add_argument("--rmt-grpc-host", default="", env_var="LOCUST_RMT_GRPC_HOST",
                       help="gRPC host:port of the server for gRPC users (default: --host)")
    group.add_argument("--rmt-drain-timeout", type=float, default=30.0, env_var="LOCUST_RMT_DRAIN_TIMEOUT",
                       help="seconds to wait for in-flight requests and workers' last windows at stop")


def _wire_windows(windows: dict[WindowKey, WindowState]) -> list[list[Any]]:
    return [[list(key), state.to_wire()] for key, state in windows.items()]


class TritonTraffic:
    """Plans, drains and records Triton traffic for one Locust environment (see the module docstring)."""

    def __init__(self, *, scenario: dict[str, Any] | None = None, run_dir: Path | str | None = None,
                 clock_ns: Any = time.time_ns) -> None:
        self._scenario = scenario
        self._run_dir_path = run_dir
        self._clock_ns = clock_ns
        self.environment: Any = None
        self.engine: TrafficEngine | None = None
        self.run_dir: RunDir | None = None
        self.pending: dict[WindowKey, WindowState] = {}
        self.totals: dict[str, int] = {}
        self._watermarks: dict[str, float] = {}
        self._finals: set[str] = set()
        self._all_final = Event()
        self.watch = WorkerWatch()
        self._watcher: Any = None
        self._reporter: Any = None
        self.write_error: ConfigError | None = None
        """The failed write that stopped the run (nothing is written after it)."""
        self._start_ns = 0
        self._stopped_ns = 0

    # -- attaching ---------------------------------------------------------------------------------------------------
    def register(self, environment: Any) -> TritonTraffic:
        """Subscribe to the environment's events and register the master/worker messages."""
        self.environment = environment
        self.engine = engine_for(environment)
        runner = environment.runner
        events = environment.events
        if isinstance(runner, WorkerRunner):
            runner.register_message(MSG_PLAN, self._on_plan)
            runner.register_message(MSG_DRAIN, self._on_drain, concurrent=True)
            events.report_to_master.add_listener(self._on_report_to_master)
        else:
            if isinstance(runner, MasterRunner):
                runner.register_message(MSG_FINAL, self._on_final)
                events.worker_report.add_listener(self._on_worker_report)
            events.test_start.add_listener(self._on_test_start)
            events.test_stopping.add_listener(self._on_test_stopping)
            events.quitting.add_listener(self._on_quitting)
            self._prepare()
        return self

    def _options(self) -> Any:
        return self.environment.parsed_options

    def _scenario_dict(self) -> dict[str, Any]:
        path = getattr(self._options(), "rmt_scenario", "") if self._options() else ""
        if path:
            return load_scenario(path).raw
        if self._scenario is not None:
            return parse_scenario(self._scenario).raw
        for user_class in self.environment.user_classes:
            if issubclass(user_class, TritonUser) and user_class.scenario is not None:
                return parse_scenario(user_class.scenario).raw
        raise ConfigError("no traffic scenario: pass --rmt-scenario FILE or set `scenario` on the user class")

    def _prepare(self) -> None:
        """Master/local: parse the scenario and check it against the server before any load."""
        try:
            raw = self._scenario_dict()
            engine = self.engine
            assert engine is not None
            engine.configure(Plan(raw, self._clock_ns()))
            if self.environment.host:
                grpc = all(issubclass(u, TritonGrpcUser) for u in self.environment.user_classes)
                target = (grpc_host(self.environment) if grpc else "") or self.environment.host
                host, port = split_host(target, 8001 if grpc else 8000)
                engine.validate(fetch_config_grpc(f"{host}:{port}") if grpc else fetch_config_http(f"{host}:{port}"),
                                host)
            self._raw = raw
            path = self._run_dir_path or (getattr(self._options(), "rmt_run_dir", "") if self._options() else "")
            if path:
                self.run_dir = RunDir(path)
                configs = {m: json_format.MessageToDict(c, preserving_proto_field_name=True)
                           for m, c in sorted(engine.configs.items())}
                self.run_dir.update_manifest(scenario=raw, load={"protocol_users": [
                    u.__name__ for u in self.environment.user_classes]}, model_configs=configs)
        except ConfigError as exc:
            # Before any greenlet or worker exists: one line, no traceback, exit code 2.
            print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[RunDir | None]:
        """The run directory for one write (None once a write failed): a failed write (RunDir's one-line
        :class:`ConfigError`, e.g. a full filesystem) is said once as ``rmt: error:``, every later write is skipped,
        the load stops and the process exits with 2."""
        try:
            yield self.run_dir
        except ConfigError as exc:
            self._stop_writing(exc)

    def _stop_writing(self, exc: ConfigError) -> None:
        run_dir, self.run_dir, self.write_error = self.run_dir, None, exc
        print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
        log.error("rmt: the run directory cannot be written: the load stops; nothing more is recorded")
        if run_dir is not None:
            with contextlib.suppress(ConfigError, OSError):
                run_dir.close()
        environment = self.environment
        environment.process_exit_code = exc.exit_code
        runner = environment.runner
        if runner is not None and runner.state not in (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP):
            gevent.spawn(runner.quit)  # not from inside the event being handled: Locust's own stop path

    # -- master / local ----------------------------------------------------------------------------------------------
    def _on_test_start(self, environment: Any, **_kw: Any) -> None:
        runner = environment.runner
        engine = self.engine
        assert engine is not None
        start = self._clock_ns() + 200_000_000  # a moment for the plan and spawn messages to arrive
        self.pending.clear()
        self._finals.clear()
        self._all_final.clear()
        self._start_ns, self._stopped_ns = start, 0
        if isinstance(runner, MasterRunner):
            clients = sorted(c.id for c in runner.clients.all)
            self._watermarks = dict.fromkeys(clients, 0.0)
            for rank, client in enumerate(clients):
                runner.send_message(MSG_PLAN, Plan(self._raw, start, len(clients), rank).to_wire(), client)
            self.watch = WorkerWatch()
            if self._watcher is None:
                self._watcher = gevent.spawn(self._watch_workers, runner)
        else:
            self._watermarks = {}
            engine.configure(Plan(self._raw, start))
            if self._reporter is not None:
                self._reporter.kill(block=False)
            self._reporter = gevent.spawn(self._report_locally, engine)
        with self._writing() as run_dir:
            if run_dir is not None:
                run_dir.update_manifest(load_start_ns=start, workers=max(1, len(self._watermarks)))

    def _report_locally(self, engine: TrafficEngine) -> None:
        """Local runner: every second, the windows whose second is over (and the traces, failures and records so
        far) go to the writer as a worker's report would; without it the book would hold every window of the run."""
        while True:
            gevent.sleep(LOCAL_REPORT_S)
            if engine.plan is None or engine.draining:
                return
            self._absorb("local", self._closed(engine, self._clock_ns()))

    @staticmethod
    def _closed(engine: TrafficEngine, now: int) -> dict[str, Any]:
        """A report of what ``engine`` closed by ``now``: windows whose second is over, traces, failures, records."""
        return {"windows": _wire_windows(engine.book.close(now)), "traces": engine.book.take_traces(),
                "failures": engine.book.failures.take(), "records": engine.take_records(),
                "upto": now - now % NS_PER_S}

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        self._absorb(client_id, data.get("rmt"))

    def _on_final(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self._absorb(msg.node_id, msg.data)
        self._finals.add(msg.node_id)
        if set(self._watermarks) <= self._finals:
            self._all_final.set()

    def _absorb(self, client_id: str, data: dict[str, Any] | None) -> None:
        if not data:
            return
        if client_id in self.watch.lost:  # its seconds may be written already: counted, not merged twice
            self.watch.lost[client_id].late_reports += 1
            return
        keys = [(int(key[0]), str(key[1]), str(key[2]), str(key[3])) for key, _ in data.get("windows", [])]
        self.watch.saw(client_id, keys)
        for k, (_, wire) in zip(keys, data.get("windows", []), strict=True):
            state = self.pending.get(k)
            if state is None:
                self.pending[k] = WindowState.from_wire(wire)
            else:
                state.merge_wire(wire)
        with self._writing() as run_dir:
            if run_dir is not None and data.get("traces"):
                run_dir.append("traces.jsonl", data["traces"])
            if run_dir is not None and data.get("failures"):
                run_dir.append("failures.jsonl", data["failures"])
        self._append_records(data.get("records") or {})
        self._watermarks[client_id] = math.inf if data.get("final") else float(data.get("upto", 0))
        self._write(min(self._watermarks.values(), default=0.0))

    def _append_records(self, records: dict[str, list[dict[str, Any]]]) -> None:
        """The stateful paths' records (sequences, shared-memory regions), by run-directory file."""
        for name, rows in records.items():
            with self._writing() as run_dir:
                if run_dir is not None and rows:
                    run_dir.append(name, rows)

    def _write(self, upto: float) -> None:
        """Append (and forget) every pending window that ends at or before ``upto`` (epoch ns)."""
        ready = sorted(k for k in self.pending if k[0] + NS_PER_S <= upto)
        records = []
        for key in ready:
            record = self.pending.pop(key).to_record(key)
            for name in WindowState.COUNTERS:
                self.totals[name] = self.totals.get(name, 0) + getattr(record, name)
            records.append(record_dict(record))
        with self._writing() as run_dir:
            if run_dir is not None and records:
                run_dir.append("windows.jsonl", records)

    def _on_test_stopping(self, environment: Any, **_kw: Any) -> None:
        runner = environment.runner
        timeout = float(getattr(self._options(), "rmt_drain_timeout", 30.0) or 30.0) if self._options() else 30.0
        if isinstance(runner, MasterRunner):
            if not self._watermarks:
                return
            for client in list(self._watermarks):
                runner.send_message(MSG_DRAIN, {"timeout_s": timeout}, client)
            self._stopped_ns = self._stopped_ns or self._clock_ns()
            if not self._all_final.wait(timeout + 5):
                for worker in sorted(set(self._watermarks) - self._finals):
                    self._drop(worker, f"sent no final windows within {timeout + 5:.0f} s of the stop")
        else:
            if self._reporter is not None:
                self._reporter.kill(block=False)
            engine = self.engine
            assert engine is not None
            engine.stop_arrivals()
            left = engine.wait_idle(timeout)
            if left:
                log.error("rmt: %d request(s) still in flight after %.0f s: their outcomes are missing", left, timeout)
            engine.close_paths()
            self._absorb("local", {"windows": _wire_windows(engine.book.close(self._clock_ns(), final=True)),
                                   "traces": engine.book.take_traces(), "failures": engine.book.failures.take(),
                                   "records": engine.take_records(), "final": True})
        self._flush()

    def _watch_workers(self, runner: Any) -> None:
        """Drop each worker Locust marks missing from the merge, as soon as it does (every 0.5 s)."""
        while True:
            gevent.sleep(0.5)
            waiting = [w for w in self._watermarks if w not in self._finals]
            for worker in self.watch.missing(runner, waiting):
                self._drop(worker, "stopped heartbeating (Locust marked it missing): it died or hung")

    def _drop(self, worker: str, reason: str) -> None:
        """Stop waiting for ``worker``: record the loss, write on what the others reported."""
        loss = self.watch.lose(worker, reason, self._watermarks.pop(worker), self._start_ns, self._clock_ns())
        log.error("rmt: worker %s lost: %s; its windows after %.1f s of load are missing", worker, reason,
                  (loss.last_window_end_ns - self._start_ns) / NS_PER_S)
        if set(self._watermarks) <= self._finals:
            self._all_final.set()
        if self._watermarks:
            self._write(min(self._watermarks.values()))
        with self._writing() as run_dir:
            if run_dir is not None:
                run_dir.update_manifest(**{LOSSES: self.watch.records(self._clock_ns())})

    def _flush(self) -> None:
        self._write(math.inf)
        with self._writing() as run_dir:
            if run_dir is not None:
                end = self._clock_ns()
                losses = {LOSSES: self.watch.records(self._stopped_ns or end)} if self.watch.lost else {}
                run_dir.update_manifest(load_end_ns=end, load_totals=dict(self.totals), **losses)
                run_dir.flush()

    def _on_quitting(self, environment: Any, **_kw: Any) -> None:
        for greenlet in (self._watcher, self._reporter):
            if greenlet is not None:
                greenlet.kill(block=False)
        engine = self.engine
        if engine is not None and is_local(environment):  # users' on_stop ran after the drain: their last records
            engine.close_paths()
            self._append_records(engine.take_records())
        self._flush()
        with self._writing() as run_dir:
            if run_dir is not None:
                run_dir.close()

    # -- worker ------------------------------------------------------------------------------------------------------
    def _on_plan(self, environment: Any, msg: Any, **_kw: Any) -> None:
        engine = self.engine
        assert engine is not None
        engine.configure(Plan.from_wire(msg.data))

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        engine = self.engine
        if engine is None or engine.plan is None or engine.draining:
            return
        data["rmt"] = self._closed(engine, self._clock_ns())

    def _on_drain(self, environment: Any, msg: Any, **_kw: Any) -> None:
        engine = self.engine
        assert engine is not None
        engine.stop_arrivals()
        left = engine.wait_idle(float(msg.data.get("timeout_s", 30.0)))
        if left:
            log.error("rmt: %d request(s) still in flight at drain: their outcomes are missing", left)
        gevent.sleep(0)
        engine.close_paths()
        environment.runner.send_message(MSG_FINAL, {
            "windows": _wire_windows(engine.book.close(self._clock_ns(), final=True)),
            "traces": engine.book.take_traces(), "failures": engine.book.failures.take(),
            "records": engine.take_records(), "final": True})


def is_local(environment: Any) -> bool:
    """Whether the environment runs users in this process without a master."""
    return isinstance(environment.runner, LocalRunner)
