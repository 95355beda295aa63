"""Compose a ready scenario in a locustfile: traffic (:mod:`rmt.load`), the collector (:mod:`rmt.collect`),
model-control actions and the checks, all attached explicitly. A locustfile is three lines::

    from locust import events
    from rmt.run.compose import attach
    attach(events, __file__)          # reads the definition beside it: <name>.json

    class Traffic(TritonHttpUser): ...

It runs unchanged with plain Locust (web UI, ``--headless``, ``--master``/``--worker``). On the master (or a
local runner): the run directory defaults to ``runs/<scenario>-<time>`` (``--rmt-run-dir``), the embedded collector
watches the server behind ``--host`` unless told otherwise, and at quit the checks run and set the exit code
(0 every verdict passed, 3 one failed, 2 bad input); request failures alone do not decide it, since several
scenarios send failing requests on purpose.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
from locust.runners import WorkerRunner

from rmt.collect import locust_plugin
from rmt.core.errors import RmtError
from rmt.core.hosts import split_host
from rmt.core.rundir import RunDir
from rmt.load import TritonTraffic
from rmt.load import add_arguments as traffic_arguments
from rmt.run.control import TritonControl, run_load, run_reload
from rmt.run.definition import ScenarioDef, load_definition, retarget
from rmt.run.verdicts import judge_run

log = logging.getLogger(__name__)


class ScenarioPlugin:
    """One ready scenario attached to a Locust environment (see the module docstring)."""

    def __init__(self, definition: ScenarioDef) -> None:
        self.definition = definition
        self._reloads: list[gevent.Greenlet] = []
        self._begun: set[Any] = set()
        self.environment: Any = None
        self.traffic: TritonTraffic | None = None
        self.run_dir: Path | None = None

    # -- options -----------------------------------------------------------------------------------------------------
    def add_arguments(self, parser: Any) -> None:
        """``init_command_line_parser``: rmt.load', the collectors' and the scenario's own options."""
        traffic_arguments(parser)
        locust_plugin.add_arguments(parser)
        group = parser.add_argument_group(f"rmt scenario {self.definition.name}")
        group.add_argument("--rmt-checks", default="", metavar="SPEC", env_var="LOCUST_RMT_CHECKS",
                           help='extra check spec over the scenario\'s, e.g. leak.max_growth="1MiB/10k"')
        group.add_argument("--rmt-models", default="", metavar="A,B", env_var="LOCUST_RMT_MODELS",
                           help="point the scenario at these models (inputs from each model's config)")
        group.add_argument("--rmt-definition", default="", metavar="FILE", env_var="LOCUST_RMT_DEFINITION",
                           help="use this scenario definition instead of the one beside the locustfile")

    # -- attaching ---------------------------------------------------------------------------------------------------
    def on_init(self, environment: Any, web_ui: Any = None, **_kw: Any) -> None:
        """``init``: on workers only the traffic; on the master everything, in order (see the module docstring)."""
        self.environment = environment
        options = environment.parsed_options
        if isinstance(environment.runner, WorkerRunner):
            TritonTraffic().register(environment)
            return
        try:
            self._prepare(environment, options)
        except RmtError as exc:
            print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        environment.events.quitting.add_listener(self.on_quitting)  # first added, last run (reverse order)
        locust_plugin.register(environment, web_ui=web_ui)
        try:
            self._run_actions("init")
        except RmtError as exc:
            print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        self.traffic = TritonTraffic(scenario=self.definition.raw["traffic"]).register(environment)
        environment.events.test_start.add_listener(self.on_test_start)

    def _prepare(self, environment: Any, options: Any) -> None:
        definition_file = str(getattr(options, "rmt_definition", "") or "")
        if definition_file:
            self.definition = replace(load_definition(Path(definition_file)), name=self.definition.name)
        models = [m.strip() for m in str(getattr(options, "rmt_models", "") or "").split(",") if m.strip()]
        if models:
            self.definition = retarget(self.definition, models)
        run_dir = getattr(options, "rmt_run_dir", "") or f"runs/{self.definition.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        options.rmt_run_dir = run_dir
        if not getattr(options, "rmt_collect_dir", None):
            options.rmt_collect_dir = run_dir
        remote = locust_plugin.collector_urls(getattr(options, "rmt_collector", None))
        if environment.host and not remote and not getattr(options, "rmt_collect_server_url", None) \
                and not getattr(options, "rmt_collect_pid", None):
            host, port = split_host(environment.host, 8000)
            options.rmt_collect_server_url = f"{host}:{port}"
        self.run_dir = Path(run_dir)
        rd = RunDir(self.run_dir)
        manifest = rd.manifest()
        keys: dict[str, Any] = {"scenario_name": self.definition.name, "checks": self.definition.checks,
                                "description": self.definition.description}
        if "server" not in manifest:
            keys["server"] = {"embedded": False, "http_url": environment.host, "options": {}}
        rd.update_manifest(**keys)
        rd.close()

    def _control(self) -> TritonControl:
        host, port = split_host(self.environment.host or "127.0.0.1:8000", 8000)
        return TritonControl(host, port)

    def _run_actions(self, when: str) -> None:
        actions = [a for a in self.definition.actions if a.get("kind") == "load"] if when == "init" else []
        if not actions:
            return
        if not self.environment.host:
            raise RmtError(f"scenario {self.definition.name} loads models: pass --host (Triton's HTTP host:port)")
        rd = RunDir(self.run_dir) if self.run_dir else None
        try:
            for action in actions:
                records = run_load(self._control(), action, rd)
                if rd is not None:  # the lifecycle instants the report's warmup timeline draws
                    events = list(rd.manifest().get("model_events") or [])
                    for rec in records:
                        events.append({"model": rec.model, "event": "load", "t_epoch_ns": rec.requested_ns})
                        if rec.first_ready_ns is not None:
                            events.append({"model": rec.model, "event": "ready", "t_epoch_ns": rec.first_ready_ns})
                    rd.update_manifest(model_events=events)
                for rec in records:
                    ready_ms = ((rec.first_ready_ns or rec.returned_ns) - rec.requested_ns) / 1e6
                    log.info("rmt: loaded %s (ready after %.0f ms, %d polls)", rec.model, ready_ms, len(rec.polls))
        finally:
            if rd is not None:
                rd.close()

    def on_test_start(self, environment: Any, **_kw: Any) -> None:
        """Schedule the ``reload`` actions (``at_s`` after the start), each in its own greenlet."""
        for action in self.definition.actions:
            if action.get("kind") == "reload":
                self._reloads.append(gevent.spawn_later(float(action.get("at_s", 5)), self._reload, action))

    def _reload(self, action: dict[str, Any]) -> None:
        self._begun.add(gevent.getcurrent())
        rd = RunDir(self.run_dir) if self.run_dir else None
        try:
            rec = run_reload(self._control(), action, rd)
            log.info("rmt: reloaded %s with %s: %s", rec.model, rec.config_changes, "ok" if rec.ok else rec.error)
        except RmtError as exc:
            log.error("rmt: reload failed: %s", exc)
        finally:
            if rd is not None:
                rd.close()

    # -- verdicts ----------------------------------------------------------------------------------------------------
    def on_quitting(self, environment: Any, **_kw: Any) -> None:
        """Run the checks on the run directory and set the exit code (0 pass, 3 a verdict failed, 2 bad spec)."""
        if self.run_dir is None or not self.run_dir.is_dir():
            return
        if self.traffic is not None and self.traffic.write_error is not None:
            return  # the run directory could not be written: said, the exit code set, nothing to judge or write
        # A reload still under way when the load ended (a slow, busy host) finishes before judging: otherwise its
        # window has a start and no end, and the reload verdict silently disappears.
        gevent.killall([g for g in self._reloads if g not in self._begun])  # not yet due: never start
        gevent.joinall(self._reloads, timeout=RELOAD_FINISH_S)
        extra = [s for s in [str(getattr(environment.parsed_options, "rmt_checks", "") or "")] if s]
        try:
            verdicts, notes = judge_run(self.run_dir, self.definition.checks, extra)
        except RmtError as exc:
            print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
            environment.process_exit_code = exc.exit_code
            return
        from rmt.check.report import format_table

        print(format_table(verdicts), file=sys.stderr, flush=True)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"rmt: run directory {self.run_dir}", file=sys.stderr, flush=True)
        environment.process_exit_code = 3 if any(v.failed for v in verdicts) else 0


RELOAD_FINISH_S = 120.0
"""How long the checks wait at quit for a reload that is still under way."""


def definition_named_on_command_line(argv: list[str] | None = None) -> Path | None:
    """The definition file named by ``--rmt-definition FILE`` (or ``=FILE``) in ``argv``, else by
    ``LOCUST_RMT_DEFINITION``; None when neither names one. Read at import, before Locust parses its options."""
    args = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(args):
        if arg == "--rmt-definition" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--rmt-definition="):
            return Path(arg.split("=", 1)[1])
    named = os.environ.get("LOCUST_RMT_DEFINITION", "")
    return Path(named) if named else None


def attach(events: Any, locustfile: str | Path) -> ScenarioPlugin:
    """Attach the scenario defined beside ``locustfile`` (same name, ``.json``) to Locust's ``events``; a locustfile
    with no definition beside it takes the one named by ``--rmt-definition`` / ``LOCUST_RMT_DEFINITION``."""
    beside = Path(locustfile).with_suffix(".json")
    named = definition_named_on_command_line()
    source = beside if beside.is_file() else named
    if source is None:
        print(f"rmt: error: no scenario definition for {locustfile}: put {beside.name} beside it or pass "
              "--rmt-definition FILE", file=sys.stderr, flush=True)
        raise SystemExit(2)
    try:
        plugin = ScenarioPlugin(load_definition(source))
    except RmtError as exc:
        print(f"rmt: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(exc.exit_code) from None
    events.init_command_line_parser.add_listener(plugin.add_arguments)
    events.init.add_listener(plugin.on_init)
    return plugin
