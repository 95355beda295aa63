"""The verdict matrix: each scenario's planted defects and healthy twins run N times, caught and false-alarm rates
per check × subject, and the margin (measured / threshold: min, median, max) each verdict had.

    .venv/bin/python benchmarks/verdict_matrix.py [-n 10 | --quick] [--scenario memory_growth ...]
        [--alone memory_growth:leak_2k=fail ...] [--duration S] [--host URL | --servers K] [--out DIR]
        [--checks SPEC ...]

Cases:

- ``--scenario NAME`` runs the scenario as shipped; each verdict's expectation is what ``rmt run --expected``
  writes into ``expectations.json`` (the scenario's ``run.expect``: planted defects FAIL, everything else passes).
  Any scenario works (memory, scheduling, warmup): the matrix only reads the expectations.
- ``--alone SCENARIO:MODEL=STATUS`` runs the scenario pointed at MODEL alone (``rmt run --models MODEL``: all its
  traffic on one model, the user's view); the model's own series are expected to end STATUS, series without a
  model label (the process tree, the device) are tallied apart as ``aggregate`` when MODEL is a defect (they hold
  it) and expected to pass otherwise.

Without ``--host`` one embedded server (explicit model control) serves every run (``--servers K``: K servers,
each running one of a case's runs at a time, for a machine with the cores to keep K runs apart); each case's models
are loaded again before every run, so each run starts with fresh stubs (a bounded cache fills, settling happens,
in every run). ``rmt run`` itself runs each case (the CLI, its Locust processes and collector: the real path). The
table is printed and written as ``matrix.md`` (and every run's ``verdicts.json`` kept) under ``--out``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import queue
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmt.core.errors import RmtError
from rmt.run.definition import load_definition
from rmt.server import EmbeddedServer, ServerOptions

#: The memory scenarios' single-model cases: the default-duration run (~2 000 requests) of each real-world-magnitude
#: defect and healthy case, as a user runs ``rmt run memory_growth --models M``.
DEFAULT_ALONE = ("memory_growth:leak_2k=fail", "memory_growth:leak_2k_healthy=pass", "memory_growth:gc_sawtooth=pass",
                 "memory_growth:bounded_cache=pass", "memory_growth:pool_creep=fail",
                 "memory_growth:pool_creep_healthy=pass")
DEFAULT_SCENARIOS = ("memory_growth", "fragmentation")
#: Checks whose verdicts the matrix tallies in single-model cases (scenario cases tally every check).
MEMORY_CHECKS = ("leak", "pool", "leak_attribution")


@dataclass
class Case:
    """One configuration run N times."""

    scenario: str
    model: str | None = None
    """Run the scenario pointed at this model alone (None: as shipped)."""
    expect: str = ""
    """The alone model's expected status."""

    @property
    def label(self) -> str:
        """How the table names the case."""
        return self.scenario if self.model is None else f"{self.scenario} --models {self.model}"

    def models(self) -> list[str]:
        """The models the case's runs need loaded."""
        if self.model is not None:
            return [self.model]
        definition = load_definition(self.scenario)
        models = [str(s["model"]) for s in definition.raw.get("traffic", {}).get("streams", [])]
        return sorted(set(models) | set(definition.server.get("load_models") or []))


@dataclass
class Tally:
    """The outcomes of one check × subject over the runs of a case."""

    expected: str
    statuses: list[str] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)

    def row(self, n: int) -> tuple[str, str, str, str]:
        """(expected, caught / false alarms, warn·undecided·skip counts, margin min/median/max)."""
        fails = self.statuses.count("fail")
        if "fail" in self.expected.split("|"):
            rate = f"caught {fails}/{len(self.statuses)}"
        elif self.expected == "aggregate":
            rate = f"fail {fails}/{len(self.statuses)}"
        else:
            rate = f"false alarms {fails}/{len(self.statuses)}"
        other = " ".join(f"{s} {self.statuses.count(s)}" for s in ("warn", "undecided", "skip")
                         if self.statuses.count(s))
        if len(self.statuses) < n:
            other += f" absent {n - len(self.statuses)}"
        m = sorted(self.margins)
        margin = f"{m[0]:.3g} / {statistics.median(m):.3g} / {m[-1]:.3g}" if m else "-"
        return self.expected, rate, other.strip() or "-", margin


def parse_alone(text: str) -> Case:
    """``SCENARIO:MODEL=STATUS`` → a single-model case."""
    try:
        scenario, rest = text.split(":", 1)
        model, status = rest.split("=", 1)
    except ValueError:
        raise SystemExit(f"rmt: error: bad --alone {text!r}: write SCENARIO:MODEL=pass|fail") from None
    if status not in ("pass", "fail"):
        raise SystemExit(f"rmt: error: bad --alone {text!r}: the status is pass or fail")
    return Case(scenario, model, status)


def reload(url: str, models: list[str]) -> None:
    """Unload and load each model again (fresh stubs) through the repository API."""
    for model in models:
        for action in ("unload", "load"):
            req = urllib.request.Request(f"http://{url}/v2/repository/models/{model}/{action}", data=b"{}",
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=120):
                    pass
            except OSError as exc:
                raise RmtError(f"cannot {action} {model} at {url} ({exc}): start the server with "
                               "--model-control-mode explicit and the case's models in its repository") from None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{url}/v2/models/{model}/ready", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)


def run_once(case: Case, url: str, out: Path, duration: float | None, checks: list[str]) -> list[dict[str, Any]]:
    """One ``rmt run`` of the case; its verdicts with their expectations."""
    cmd = [sys.executable, "-m", "rmt", "run", case.scenario, "--host", url, "--out", str(out), "--expected"]
    if case.model is not None:
        cmd += ["--models", case.model]
    if duration is not None:
        cmd += ["--duration", f"{duration:g}"]
    for spec in checks:
        cmd += ["--checks", spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode not in (0, 3) or not (out / "verdicts.json").exists():
        print(f"  run failed ({proc.returncode}): {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return []
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    expected = {(e["check"], e["subject"]): e["expected"]
                for e in json.loads((out / "expectations.json").read_text())}
    rows = []
    for v in verdicts:
        exp = expected.get((v["check"], v["subject"]), "pass")
        if case.model is not None:
            if v["check"] not in MEMORY_CHECKS:
                continue
            if fnmatch.fnmatchcase(v["subject"], f"*model={case.model}[,}}]*"):
                exp = case.expect
            elif "model=" not in v["subject"]:
                exp = "aggregate" if case.expect == "fail" else "pass"
        rows.append({**v, "expected": exp})
    return rows


def margin(v: dict[str, Any]) -> float | None:
    """measured / threshold (None when either is missing or the threshold is 0)."""
    m, t = v.get("measured"), v.get("threshold")
    if m is None or t in (None, 0):
        return None
    return float(m) / float(t)


def matrix(cases: list[Case], urls: list[str], n: int, out: Path, duration: float | None, checks: list[str],
           fresh: bool) -> str:
    """Run every case n times, the runs of a case spread over the servers at ``urls`` (one run at a time each);
    the markdown table."""
    lines = ["| case | check | subject | expected | rate | other | measured/threshold min / median / max |",
             "|---|---|---|---|---|---|---|"]
    free: queue.Queue[str] = queue.Queue()
    for url in urls:
        free.put(url)

    def one(case: Case, i: int) -> list[dict[str, Any]]:
        url = free.get()
        try:
            if fresh:
                reload(url, case.models())
            started = time.monotonic()
            rows = run_once(case, url, out / case.label.replace(" ", "_") / f"run{i:02d}", duration, checks)
            print(f"{case.label} run {i + 1}/{n}: {len(rows)} verdicts in {time.monotonic() - started:.0f} s",
                  flush=True)
            return rows
        finally:
            free.put(url)

    with ThreadPoolExecutor(len(urls)) as pool:
        for case in cases:
            tallies: dict[tuple[str, str], Tally] = {}
            for rows in pool.map(lambda i, c=case: one(c, i), range(n)):
                for v in rows:
                    t = tallies.setdefault((v["check"], v["subject"]), Tally(v["expected"]))
                    t.statuses.append(v["status"])
                    mg = margin(v)
                    if mg is not None:
                        t.margins.append(mg)
            for (check, subject), t in sorted(tallies.items()):
                if all(s == "skip" for s in t.statuses):
                    continue
                lines.append("| " + " | ".join((case.label, check, _short(subject), *t.row(n))) + " |")
    return "\n".join(lines)


def _short(subject: str) -> str:
    """``measure{...,model=m,...}`` as ``measure[m]`` (the instance names add nothing)."""
    if "{" not in subject:
        return subject
    measure, labels = subject.split("{", 1)
    body, rest = labels.split("}", 1)
    parts = dict(p.split("=", 1) for p in body.split(",") if "=" in p)
    key = parts.get("model") or parts.get("name") or parts.get("gpu") or parts.get("gpu_uuid") or ""
    return f"{measure}[{key}]{rest}" if key else measure + rest


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, start a server unless ``--host``, run the matrix, print and write it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=10, help="runs per case (default 10)")
    p.add_argument("--quick", action="store_true", help="3 runs per case, 10 s each")
    p.add_argument("--scenario", action="append", default=None, help="a scenario run as shipped; repeatable")
    p.add_argument("--alone-only", action="store_true", help="only the single-model cases (no --scenario runs)")
    p.add_argument("--alone", action="append", default=None, metavar="SCENARIO:MODEL=STATUS",
                   help="the scenario pointed at MODEL alone, expected STATUS; repeatable")
    p.add_argument("--duration", type=float, help="seconds of load per run (default: the scenario's)")
    p.add_argument("--host", metavar="URL", help="a running tritonserver (explicit model control) instead of "
                                                 "the embedded one")
    p.add_argument("--servers", type=int, default=1, metavar="K",
                   help="embedded servers running a case's runs side by side (default 1; not with --host)")
    p.add_argument("--no-fresh", action="store_true", help="do not reload the models before each run")
    p.add_argument("--checks", action="append", default=[], metavar="SPEC", help="extra check spec; repeatable")
    p.add_argument("--out", type=Path, default=Path("runs/matrix"), help="where the runs and matrix.md go")
    args = p.parse_args(argv)
    n = 3 if args.quick else args.n
    duration = args.duration if args.duration is not None else (10.0 if args.quick else None)
    scenarios = [] if args.alone_only else (args.scenario if args.scenario is not None else DEFAULT_SCENARIOS)
    cases = [Case(s) for s in scenarios]
    cases += [parse_alone(a) for a in (args.alone if args.alone is not None else DEFAULT_ALONE)]
    for case in cases:
        case.models()  # an unknown scenario is refused before anything starts
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.servers < 1 or (args.host and args.servers != 1):
        raise SystemExit("rmt: error: --servers takes a count of 1 or more, and only without --host")
    if args.host:
        table = matrix(cases, [args.host], n, args.out, duration, args.checks, not args.no_fresh)
    else:
        needs: dict[str, Any] = {}
        for case in cases:
            needs.update({k: v for k, v in load_definition(case.scenario).server.items() if k != "load_models"})
        models = sorted({m for c in cases for m in c.models()})
        options = ServerOptions(model_control_mode="explicit", load_models=models,
                                rate_limit_resources=list(needs.get("rate_limit_resources") or []))
        with ExitStack() as stack:
            urls = [stack.enter_context(EmbeddedServer(options)).http_url for _ in range(args.servers)]
            table = matrix(cases, urls, n, args.out, duration, args.checks, not args.no_fresh)
    head = (f"N = {n} runs per case on {args.servers} server(s) side by side, "
            f"{'the scenario' if duration is None else f'{duration:g} s'} duration, "
            f"{time.monotonic() - started:.0f} s in all\n\n")
    (args.out / "matrix.md").write_text(head + table + "\n")
    print(head + table)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RmtError as exc:
        print(f"rmt: error: {exc}", file=sys.stderr)
        sys.exit(2)
