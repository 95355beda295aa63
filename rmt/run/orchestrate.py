"""``rmt run``: from zero to verdict — server (embedded, or ``--host``), Locust (master + real worker processes),
collector, checks, report, and the verdict table set against the scenario's expectations.

Locust runs in child processes (each in its own session, ended by PID when it overstays its deadline), so this
process is never gevent-patched. The effective scenario definition (durations scaled to ``--duration``, streams
pointed at ``--models``) is written into the run directory as ``definition.json`` and handed to the locustfile with
``--rmt-definition``; the locustfile's own checks run at quit on the master, and they are recomputed here from the
run directory alone (the same library call), so the verdicts printed are exactly the offline ones.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from rmt.core.errors import ConfigError, RmtError
from rmt.core.hosts import base_url
from rmt.core.records import CAPACITY_CONTROL_FILE, MODEL_LINES, SERVER_LOG
from rmt.core.resources import GPU_REPOSITORY, MULTI_GPU_REPOSITORY
from rmt.core.rundir import RunDir
from rmt.load.shmio import require_kinds_for, require_local_for
from rmt.run.decisive import DEFAULT_MAX_DURATION_S, Decisive
from rmt.run.definition import CAMPAIGN, ScenarioDef, load_definition, retarget
from rmt.run.interrupt import Interrupts, record_cut_short
from rmt.run.locustlog import LocustLog
from rmt.run.verdicts import INCOMPLETE, Row, format_rows, judge_run, rows_for
from rmt.server import EmbeddedServer, ServerOptions, free_port

_LOCUST_SCRIPT = Path(sys.executable).parent / "locust"
#: How to start Locust with this interpreter: its console script, or ``python -m locust`` where packages were installed
#: without scripts beside the interpreter (``pip install --target``, a system Python).
LOCUST = [str(_LOCUST_SCRIPT)] if _LOCUST_SCRIPT.exists() else [sys.executable, "-m", "locust"]
DEFINITION_FILE = "definition.json"
LOCUST_LOG = "locust.log"


@dataclass
class RunRequest:
    """What ``rmt run`` was asked for."""

    scenario: str
    host: str | None = None
    duration_s: float | None = None
    workers: int = 0
    ui: bool = False
    out: Path | None = None
    models: list[str] = field(default_factory=list)
    users: int | None = None
    checks: list[str] = field(default_factory=list)
    expected: bool = False
    """Exit 0 when every verdict matches its expectation (``make run``), instead of 0 only when all pass."""
    server: ServerOptions = field(default_factory=ServerOptions)
    server_flags: set[str] = field(default_factory=set)
    """The server options the user set explicitly (they win over the scenario's needs)."""
    progress: TextIO = sys.stdout
    until_decisive: bool = False
    """Keep the load on until every leak/pool verdict is decided (:mod:`rmt.run.decisive`), at most
    ``max_duration_s``."""
    max_duration_s: float | None = None


@dataclass
class ScenarioRun:
    """The outcome of one scenario's Locust run."""

    definition: ScenarioDef
    run_dir: Path
    rows: list[Row]
    notes: list[str]
    skipped: str = ""


def gpu_count() -> int:
    """GPUs visible to ``nvidia-smi -L`` (0 without the tool)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        out = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def scaled(definition: ScenarioDef, duration_s: float) -> ScenarioDef:
    """The definition with its finite phases scaled to ``duration_s`` in total."""
    raw = copy.deepcopy(definition.raw)
    phases = raw.get("traffic", {}).get("phases")
    if phases and all("duration_s" in p for p in phases):
        total = sum(float(p["duration_s"]) for p in phases)
        for p in phases:
            p["duration_s"] = round(float(p["duration_s"]) * duration_s / total, 3)
    return replace(definition, raw=raw, duration_s=duration_s)


def check_reachable(url: str, deadline_s: float = 5.0) -> None:
    """ConfigError naming the fix unless Triton answers ``v2/health/live`` at ``url`` within the deadline."""
    base = base_url(url, flag="--host")
    end = time.monotonic() + deadline_s
    error = ""
    while True:
        try:
            with urllib.request.urlopen(f"{base}/v2/health/live", timeout=2) as resp:
                if resp.status == 200:
                    return
                error = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        if time.monotonic() > end:
            raise ConfigError(f"cannot reach tritonserver at {url} ({error}): start it, fix --host, or leave --host "
                              "out to start the embedded server")
        time.sleep(0.2)


def server_options(request: RunRequest, needs: dict[str, Any]) -> ServerOptions:
    """The embedded server's options: the user's flags, completed by what the scenario needs."""
    opts = request.server
    updates: dict[str, Any] = {}
    if "rate_limit_resources" not in request.server_flags and needs.get("rate_limit_resources"):
        updates["rate_limit_resources"] = list(needs["rate_limit_resources"])
    if "model_control_mode" not in request.server_flags and needs.get("model_control_mode"):
        updates["model_control_mode"] = needs["model_control_mode"]
        if "load_models" not in request.server_flags:
            updates["load_models"] = list(needs.get("load_models") or [])
    for key in ("metrics_interval_ms", "log_verbose", "cache_size_bytes"):
        if key not in request.server_flags and key in needs:
            updates[key] = needs[key]
    return replace(opts, **updates)


class Orchestrator:
    """Runs one scenario or the campaign (see the module docstring)."""

    def __init__(self, request: RunRequest, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.request = request
        self.clock = clock
        self.definition = load_definition(request.scenario)
        if request.workers < 0:
            raise ConfigError(f"--workers {request.workers}: give 0 (one process) or more worker processes")
        if request.duration_s is not None and request.duration_s <= 0:
            raise ConfigError(f"--duration {request.duration_s:g}: give a positive number of seconds")
        if request.max_duration_s is not None and not request.until_decisive:
            raise ConfigError("--max-duration needs --until-decisive: add it, or give --duration instead")
        if request.until_decisive and request.max_duration_s is not None and request.max_duration_s <= 0:
            raise ConfigError(f"--max-duration {request.max_duration_s:g}: give a positive number of seconds")
        if request.until_decisive and self.definition.scenarios:
            raise ConfigError("--until-decisive runs one scenario: name it instead of a campaign")
        self.out = request.out or Path("runs") / f"{self.definition.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self._gpus: int | None = None
        self.interrupted: int | None = None
        """The signal that cut the last Locust run short (SIGINT/SIGTERM to ``rmt run``), None without one."""
        self._decisive: Decisive | None = None
        self._log: LocustLog | None = None

    def say(self, text: str) -> None:
        """One progress line."""
        print(text, file=self.request.progress, flush=True)

    def plan(self) -> list[tuple[ScenarioDef, Path]]:
        """Each scenario to run with its run directory (one, or the campaign's in order)."""
        if not self.definition.scenarios:
            return [(self._effective(self.definition, self.request.duration_s), self.out)]
        share = None
        if self.request.duration_s is not None:
            share = self.request.duration_s / sum(d for _, d in self.definition.scenarios)
        return [(self._effective(load_definition(name), d * share if share else d), self.out / name)
                for name, d in self.definition.scenarios]

    def _effective(self, definition: ScenarioDef, duration_s: float | None) -> ScenarioDef:
        if self.request.models:
            definition = retarget(definition, self.request.models)
        if self.request.until_decisive:  # the load may last up to the cap; the phases stretch with it
            duration_s = self.request.max_duration_s or DEFAULT_MAX_DURATION_S
        return scaled(definition, duration_s or definition.duration_s)

    def run(self) -> int:
        """Everything; returns the exit code (0 pass / matches expectations, 3 failed, 2 usage, 1 tool error)."""
        plan = self.plan()
        for definition, _ in plan:  # a CUDA shared-memory pattern without cuda-python: before a server starts
            require_kinds_for(definition.raw)
        if not self.definition.scenarios:
            why = self._gpu_shortfall(plan[0][0])
            if why:  # refused before a server starts (its models may not even be in this repository)
                raise ConfigError(why)
        needs = self.definition.server if self.definition.scenarios else plan[0][0].server
        self.out.mkdir(parents=True, exist_ok=True)
        if self.request.host:
            for definition, _ in plan:  # before the server is asked anything
                require_local_for(definition.raw, self.request.host)
            check_reachable(self.request.host)
            return self._all(plan, None)
        options = server_options(self.request, needs)
        if self.request.models and options.model_control_mode == "explicit" and "load_models" not in \
                self.request.server_flags and any(not d.actions for d, _ in plan):
            options = replace(options, load_models=list(self.request.models))
        started = self.clock()
        self.say(f"starting tritonserver ({options.model_repository}) …")
        with EmbeddedServer(options) as server:
            self.say(f"tritonserver ready in {self.clock() - started:.1f} s: {server.ready_line()}")
            return self._all(plan, server)

    def _gpu_shortfall(self, definition: ScenarioDef) -> str | None:
        """Why ``definition`` cannot run on this host's GPUs, or None (``nvidia-smi`` asked once per run)."""
        if not definition.requires_gpus:
            return None
        if self._gpus is None:
            self._gpus = gpu_count()
        if self._gpus >= definition.requires_gpus:
            return None
        repository = MULTI_GPU_REPOSITORY if definition.requires_gpus > 1 else GPU_REPOSITORY
        return (f"{definition.name} needs {definition.requires_gpus} GPUs, found {self._gpus}: run it on a host with "
                f"{definition.requires_gpus} GPUs and --model-repository {repository}")

    def _all(self, plan: list[tuple[ScenarioDef, Path]], server: EmbeddedServer | None) -> int:
        results: list[ScenarioRun] = []
        for definition, run_dir in plan:
            why = self._gpu_shortfall(definition)
            if why:
                self.say(f"[{definition.name}] skipped: {why}")
                results.append(ScenarioRun(definition, run_dir, [], [], skipped=why))
                continue
            results.append(self.run_scenario(definition, run_dir, server))
            if self.interrupted is not None:
                break  # the user stopped the run: judge what ran, start nothing more
        return self.finish(results)

    def run_scenario(self, definition: ScenarioDef, run_dir: Path, server: EmbeddedServer | None) -> ScenarioRun:
        """One Locust run of ``definition`` into ``run_dir``, then its verdicts (and report)."""
        rd = RunDir(run_dir)
        (run_dir / DEFINITION_FILE).write_text(json.dumps({**definition.raw, "name": definition.name}, indent=1) + "\n")
        host = server.http_url if server is not None else str(self.request.host)
        rd.update_manifest(
            command=sys.argv, rmt_run={"scenario": definition.name, "duration_s": definition.duration_s,
                                       "workers": self.request.workers, "users": self._users(definition)},
            server=server.describe() if server is not None else {"embedded": False, "http_url": host,
                                                                  "options": self._declared()})
        rd.close()
        self.say(f"[{definition.name}] {definition.description}")
        log = _log_of(server, self.request.server.log_path if "log_path" in self.request.server_flags else None)
        log_from = _log_size(log)
        self._decisive = Decisive(run_dir, definition.checks, self.request.checks, definition.duration_s) \
            if self.request.until_decisive else None
        code = self._locust(definition, run_dir, host, server)
        _copy_log(log, log_from, run_dir, bool(server.options.log_verbose) if server is not None else False)
        notes_decisive = []
        planned_s = definition.duration_s
        if self._decisive is not None:
            outcome = self._decisive.outcome(self.clock())
            rd = RunDir(run_dir)
            rd.update_manifest(until_decisive=outcome)
            rd.close()
            notes_decisive.append(outcome["text"])
            if outcome["decided"]:
                planned_s = 0.0  # stopped on purpose once decided: not a load cut short
        if code == 2:
            raise ConfigError(self._locust_error(run_dir) or f"locust refused the scenario: see {run_dir / LOCUST_LOG}")
        if definition.raw.get("capacity") and (run_dir / CAPACITY_CONTROL_FILE).is_file():
            planned_s = 0.0  # a capacity sweep's shape ends the load itself once saturated: not a load cut short
        cut = record_cut_short(run_dir, planned_s, self.interrupted, code)
        if cut is not None:
            self.say(f"[{definition.name}] the run is cut short: {cut['reason']}; judging what was recorded")
        elif code not in (0, 3):
            raise RmtError(f"locust exited with code {code}: see {run_dir / LOCUST_LOG}")
        verdicts, notes = judge_run(run_dir, definition.checks, self.request.checks)
        self._report(run_dir)
        return ScenarioRun(definition, run_dir, rows_for(definition, verdicts), notes_decisive + notes)

    def _declared(self) -> dict[str, Any]:
        """The options of a server rmt did not start, as far as the user's flags state them (for the checks)."""
        opts = self.request.server
        known = {"model_repository": str(opts.model_repository), "rate_limit_resources": list(
            opts.rate_limit_resources), "model_control_mode": opts.model_control_mode}
        return {k: v for k, v in known.items() if k in self.request.server_flags}

    def _users(self, definition: ScenarioDef) -> int:
        return self.request.users or definition.users

    def _locust(self, definition: ScenarioDef, run_dir: Path, host: str, server: EmbeddedServer | None) -> int:
        """Run the locustfile (master + workers); print progress; return the master's exit code."""
        users = self._users(definition)
        args = [*LOCUST, "-f", str(definition.locustfile), "--host", host, "-u", str(users),
                "-r", str(definition.spawn_rate), "-t", f"{max(1, math.ceil(definition.duration_s))}s",
                "--rmt-run-dir", str(run_dir), "--rmt-definition", str(run_dir / DEFINITION_FILE),
                "--stop-timeout", "5", "--rmt-drain-timeout", "20", "--csv", str(run_dir / "locust")]
        for spec in self.request.checks:
            args += ["--rmt-checks", spec]
        if server is not None:
            args += ["--rmt-collect-pid", str(server.pid), "--rmt-collect-server-url", server.http_url,
                     "--rmt-collect-metrics-url", server.metrics_url]
        if self.request.ui:
            port = free_port()
            args += ["--web-host", "127.0.0.1", "--web-port", str(port), "--autostart", "--autoquit", "15"]
            self.say(f"[{definition.name}] Locust web UI: http://127.0.0.1:{port}")
        else:
            args += ["--headless", "--only-summary"]
        procs: list[subprocess.Popen[bytes]] = []
        env = dict(os.environ, LOCUST_RMT_DEFINITION=str(run_dir / DEFINITION_FILE))  # workers read it at import
        if server is not None:  # gRPC users (streaming scenarios) find the server's gRPC port here
            env["LOCUST_RMT_GRPC_HOST"] = server.grpc_url
        log = self._log = LocustLog(run_dir / LOCUST_LOG)
        try:
            if self.request.workers:
                port = free_port()
                args += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                         "--expect-workers", str(self.request.workers), "--expect-workers-max-wait", "60"]
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=env))
            log.follow(procs[-1])
            for _ in range(self.request.workers):
                procs.append(subprocess.Popen(
                    [*LOCUST, "-f", str(definition.locustfile), "--worker", "--master-host", "127.0.0.1",
                     "--master-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env))
                log.follow(procs[-1])
            with Interrupts(lambda _signum: _terminate(procs[0])) as interrupts:
                code = self._watch(definition, run_dir, procs[0], procs[1:])
            self.interrupted = interrupts.signum
            for worker in procs[1:]:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(timeout=30)  # the master's quit message ends them
            return code
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
                    proc.wait(timeout=10)
            log.close()

    def _watch(self, definition: ScenarioDef, run_dir: Path, master: subprocess.Popen[bytes],
               workers: list[subprocess.Popen[bytes]]) -> int:
        """Wait for the master with a deadline, printing request counts every few seconds and each worker that
        ends before the master (before the load started: the run cannot start, an error at once)."""
        start = self.clock()
        deadline = start + definition.duration_s + (180 if self.request.ui else 120)
        next_line = start + 5
        stats = run_dir / "locust_stats.csv"
        gone: set[int] = set()
        while True:
            try:
                return master.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            now = self.clock()
            for rank, worker in enumerate(workers, 1):
                code = worker.poll()
                if code is None or worker.pid in gone:
                    continue
                gone.add(worker.pid)
                if self._log is not None:
                    self._log.drain(worker)  # its last lines, its rmt: error line among them
                if not RunDir(run_dir, create=False).manifest().get("load_start_ns"):
                    raise RmtError(f"Locust worker {rank} (pid {worker.pid}) exited with code {code} before the "
                                   f"load started: {self._locust_error(run_dir) or 'see ' + str(run_dir / LOCUST_LOG)}")
                if code == 0:  # the master told it to quit (its load ended or was stopped): not a loss
                    continue
                self.say(f"[{definition.name}] Locust worker {rank} (pid {worker.pid}) exited with code {code} after "
                         f"{now - start:.0f} s: the run goes on without it; its last windows are lost (the run "
                         "will be INCOMPLETE)")
            if now > deadline:
                raise RmtError(f"locust did not finish within {deadline - start:.0f} s: see {run_dir / LOCUST_LOG}")
            if self._decisive is not None and self._decisive.due(now - start) and self._decisive.look(now - start):
                self.say(f"[{definition.name}] {self._decisive.reason}: stopping the load")
                master.send_signal(signal.SIGTERM)  # Locust's own shutdown: quitting hooks, the drain, its checks
                return master.wait(timeout=120)
            if now >= next_line:
                sent, failed = _aggregated(stats)
                elapsed = now - start
                where = (f"{elapsed:4.0f} s of {definition.duration_s:.0f}" if elapsed <= definition.duration_s + 1
                         else f"{elapsed:4.0f} s (load of {definition.duration_s:.0f} s over: Locust is stopping)")
                self.say(f"[{definition.name}] {where}  requests {sent}  failed {failed}")
                next_line = now + 5

    def _locust_error(self, run_dir: Path) -> str:
        """The first ``rmt: error:`` line of the Locust processes of ``run_dir`` (read on its way to the log)."""
        log = self._log
        return log.first_error() if log is not None and log.path.parent == run_dir else ""

    def _report(self, run_dir: Path) -> None:
        """``rmt report`` (part B) when it exists: imported lazily, its failure never hides the verdicts."""
        try:
            from rmt.report import write_report
        except ImportError:
            return
        try:
            write_report(run_dir)
        except (RmtError, OSError, ValueError) as exc:
            self.say(f"report not written: {exc}")

    def finish(self, results: list[ScenarioRun]) -> int:
        """Print the verdict table and the run directory; the exit code."""
        rows = [r for res in results for r in _shown(res.rows)]
        self.say("")
        self.say(format_rows(rows))
        for res in results:
            for note in res.notes:
                self.say(f"note ({res.definition.name}): {note}")
            if res.skipped:
                self.say(f"skipped ({res.definition.name}): {res.skipped}")
        summary = [{"scenario": r.scenario, "check": r.verdict.check, "subject": r.verdict.subject,
                    "status": r.verdict.status, "expected": r.expected, "outcome": r.outcome} for r in rows]
        (self.out / "expectations.json").write_text(json.dumps(summary, indent=1) + "\n")
        reports = [res.run_dir / "report.html" for res in results if (res.run_dir / "report.html").exists()]
        self.say(f"run directory: {self.out}" + (f"  (report: {reports[0]})" if len(reports) == 1 else ""))
        lost = any(r.outcome == INCOMPLETE for r in rows)
        if self.request.expected:
            bad = [r for r in rows if not r.matches and r.outcome != INCOMPLETE]
        else:
            bad = [r for r in rows if r.verdict.failed and r.outcome != INCOMPLETE]
        if self.interrupted is not None:
            self.say(f"interrupted by {signal.Signals(self.interrupted).name}: verdicts, JUnit and report written "
                     "for what ran")
            return 128 + self.interrupted
        if bad:
            return 3
        if lost:
            self.say("the run is INCOMPLETE (exit 4): it lost data, see the INCOMPLETE rows; rerun it")
            return 4
        return 0


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a child still running (Locust's graceful stop: drain, last windows, quit)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)


def _log_of(server: EmbeddedServer | None, declared: Path | None) -> Path | None:
    """The server's log file: the embedded server's, or the one ``--server-log`` names for a server on this host."""
    return server.log_path if server is not None else declared


def _log_size(path: Path | None) -> int:
    """Bytes the server's log holds now (0 without one)."""
    return path.stat().st_size if path is not None and path.exists() else 0


def _copy_log(path: Path | None, start: int, run_dir: Path, verbose: bool) -> None:
    """The server's log written since byte ``start``, into the run directory: whole as ``SERVER_LOG`` when the
    server logs verbosely (the checkers take it for Triton's warmup lines), and the zoo models' own ``rmt_*`` lines
    always as ``MODEL_LINES`` (warmup ends for the readiness check)."""
    if path is None or not path.exists():
        return
    with path.open("rb") as src:
        src.seek(start)
        text = src.read()
    if verbose and not (run_dir / SERVER_LOG).exists():
        (run_dir / SERVER_LOG).write_bytes(text)
    lines = [line for line in text.splitlines(keepends=True) if b"rmt_" in line]
    if lines:
        with (run_dir / MODEL_LINES).open("ab") as out:
            out.writelines(lines)


def _shown(rows: list[Row]) -> list[Row]:
    """The rows worth a line: every judged verdict; a check's skips only when it judged nothing at all."""
    judged = {r.verdict.check for r in rows if r.verdict.status != "skip"}
    return [r for r in rows if r.verdict.status != "skip" or r.verdict.check not in judged]


def _aggregated(path: Path) -> tuple[int, int]:
    """(requests, failures) of the ``Aggregated`` row of Locust's ``--csv`` stats file (0, 0 before it exists)."""
    try:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("Name") == "Aggregated":
                    return int(row.get("Request Count") or 0), int(row.get("Failure Count") or 0)
    except (OSError, ValueError, csv.Error):
        pass
    return 0, 0


__all__ = ["CAMPAIGN", "Orchestrator", "RunRequest", "check_reachable", "gpu_count", "scaled"]
