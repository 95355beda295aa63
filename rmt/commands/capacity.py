"""``rmt capacity [SCENARIO]``: a stepped open-loop sweep over a scenario's traffic mix, to saturation or SLO breach.

Each step (``step-03@120rps``) is held until stable — perf_analyzer's rule: the last ``--stable-windows`` windows
within ± ``--tolerance`` in throughput and mean latency — for at most ``--max-step-s``; the sweep stops when a step
achieves less than offered by the margin, loses requests, or breaks ``--slo-p99-ms``. Then, from the run directory:
the per-step table (``capacity_steps.csv``), the max sustainable rate under the SLO, the knee, which resource binds
first and the memory headroom (the ``slo`` check, in ``verdicts.json`` and ``report.html``).

SCENARIO is ``capacity`` (probe, default), any ready scenario or a definition file: its streams and mix are swept.
Server options, ``--host``, ``--models``, ``--workers`` and ``--checks`` work as in ``rmt run``. Exit codes as
``rmt run``: 0, 3 when ``--min-rate-per-s`` is not reached, 2 bad input, 1 tool error.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from rmt.capacity.compare import format_rows, machine_info
from rmt.capacity.ladder import parse_sweep, sweep_definition
from rmt.check.capacity_analysis import analyse, by_scope
from rmt.check.capacity_checks import cpu_count_of, summary
from rmt.check.capacity_steps import STEPS_CSV, step_figures, write_csv
from rmt.commands.server import add_server_arguments, options_from_args
from rmt.core.errors import ConfigError
from rmt.core.rundir import RunDir
from rmt.run.definition import load_definition, retarget
from rmt.run.orchestrate import Orchestrator, RunRequest

_SWEEP_FLAGS = (("start_rate", "start_rate_per_s"), ("step_factor", "step_factor"), ("step_rate", "step_rate_per_s"),
                ("max_steps", "max_steps"), ("min_step_s", "min_step_s"), ("max_step_s", "max_step_s"),
                ("stable_windows", "stable_windows"), ("tolerance", "stable_tolerance"),
                ("margin", "saturation_margin"), ("slo_p99_ms", "slo_p99_ms"))


def register(sub: Any) -> None:
    """Add ``rmt capacity``."""
    p = sub.add_parser("capacity", help="stepped-load capacity sweep: max sustainable rate, knee, what binds first",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       conflict_handler="resolve")
    add_server_arguments(p)
    p.add_argument("scenario", nargs="?", default="capacity", metavar="SCENARIO",
                   help="ready scenario or definition file whose traffic mix is swept (default: capacity)")
    p.add_argument("--host", metavar="URL", help="use this running Triton (HTTP host:port) instead of the embedded one")
    p.add_argument("--models", metavar="A,B", help="sweep these models (inputs from each model's config)")
    p.add_argument("--users", type=int, metavar="N", help="Locust users = most requests in flight (default 64)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="Locust worker processes (default 0)")
    p.add_argument("--out", type=Path, metavar="DIR", help="run directory (default runs/capacity-<time>)")
    p.add_argument("--checks", action="append", default=[], metavar="SPEC", help="extra check spec; repeatable")
    g = p.add_argument_group("sweep (defaults: the definition's \"capacity\" section, then rmt.capacity.ladder)")
    g.add_argument("--start-rate", type=float, metavar="R", help="offered req/s of the first step")
    g.add_argument("--step-factor", type=float, metavar="F", help="geometric ladder: each step offers F times more")
    g.add_argument("--step-rate", type=float, metavar="R", help="linear ladder: each step adds R req/s")
    g.add_argument("--max-steps", type=int, metavar="N", help="at most N steps")
    g.add_argument("--min-step-s", type=float, metavar="S", help="hold every step at least S s")
    g.add_argument("--max-step-s", type=float, metavar="S", help="an unstable step ends after S s")
    g.add_argument("--stable-windows", type=int, metavar="N", help="stability: the last N windows ...")
    g.add_argument("--tolerance", type=float, metavar="X", help="... within ± X of their mean (0.1)")
    g.add_argument("--margin", type=float, metavar="X", help="saturated when achieved < offered × (1 − X)")
    g.add_argument("--slo-p99-ms", type=float, metavar="MS", help="p99 SLO: stop at a breach and judge capacity "
                                                                   "under it")
    g.add_argument("--min-rate-per-s", type=float, default=0.0, metavar="R",
                   help="exit 3 unless the sustainable rate reaches R req/s")
    p.set_defaults(func=cmd_capacity)


def prepare(args: Any) -> tuple[dict[str, Any], Path]:
    """The sweep definition written into the run directory (``capacity.json``) and that directory."""
    definition = load_definition(args.scenario)
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            raise ConfigError(f"bad --models {args.models!r}: give model names separated by commas, e.g. a,b")
        definition = retarget(definition, models)
    if definition.scenarios:
        raise ConfigError(f"{args.scenario} is a campaign: give one scenario (its traffic mix is swept)")
    settings = dict(definition.raw.get("capacity") or {})
    settings.update({key: getattr(args, flag) for flag, key in _SWEEP_FLAGS if getattr(args, flag) is not None})
    config = parse_sweep(settings, "rmt capacity")
    if args.users is not None and args.users < 1:
        raise ConfigError(f"--users {args.users}: give at least 1 (the most requests in flight)")
    raw = sweep_definition(definition.raw, config, args.users)
    slo = {"p99_ms": config.slo_p99_ms, "min_rate_per_s": args.min_rate_per_s,
           "margin": config.saturation_margin}
    raw["checks"] = {"only": "slo", "slo": slo}
    streams = sorted({str(s["model"]) for s in raw["traffic"]["streams"]})
    raw["description"] = f"capacity sweep of {', '.join(streams)} ({definition.name} mix)"
    out = args.out or Path("runs") / f"capacity-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(raw, indent=1) + "\n")
    return raw, out


def print_summary(out: Path, slo_p99_ms: float) -> None:
    """The per-step table, the CSV path and one capacity sentence per scope."""
    figures = step_figures(out)
    if not figures:
        print(f"no capacity steps in {out}: see {out / 'locust.log'}")
        return
    write_csv(figures, out / STEPS_CSV)
    rows = [[f.phase, f"{f.achieved_per_s:.1f}", f"{f.latency_p50_us / 1000:.1f}", f"{f.latency_p99_us / 1000:.1f}",
             "-" if math.isnan(f.queue_us) else f"{f.queue_us / 1000:.1f}",
             "-" if math.isnan(f.pending_mean) else f"{f.pending_mean:.1f}", str(f.failed), f.reason]
            for f in figures if f.scope == "all"]
    print(format_rows(["STEP", "ACHIEVED/S", "P50 MS", "P99 MS", "QUEUE MS", "PENDING", "FAILED", "ENDED"], rows))
    manifest = RunDir(out, create=False).manifest()
    for steps in by_scope(figures).values():
        print(summary(analyse(steps, slo_p99_ms=slo_p99_ms, cpu_count=cpu_count_of(manifest))))
    print(f"per-step table: {out / STEPS_CSV}")


def cmd_capacity(args: Any) -> int:
    """Build the sweep, run it through ``rmt run``'s orchestrator, print the capacity."""
    raw, out = prepare(args)
    server_args = argparse.Namespace(**{**vars(args), "host": "127.0.0.1"})
    flags = {name for name, given in (("rate_limit_resources", args.rate_limit_resource),
                                      ("model_control_mode", args.model_control_mode != "none"),
                                      ("load_models", args.load_model)) if given}
    request = RunRequest(scenario=str(out / "capacity.json"), host=args.host, workers=args.workers, out=out,
                         users=args.users, checks=list(args.checks), server=options_from_args(server_args),
                         server_flags=flags)
    orchestrator = Orchestrator(request)
    RunDir(out).update_manifest(machine_info=machine_info(args.host))
    code = orchestrator.run()
    print_summary(out, float(raw["capacity"]["slo_p99_ms"]))
    return code
