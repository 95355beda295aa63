"""``rmt lint MODEL_REPO``: offline checks of a model repository, before any server starts.

- every ``model_warmup`` sample against its model's inputs (data type, dims and rank, batch size vs
  ``max_batch_size``, input names, data source);
- with ``--coverage``: warmup coverage — every CUDA graph spec, dynamic-batcher batch size (and, with
  ``--scenario FILE``, which implies it, every shape the scenario sends) that no warmup sample exercises;
- with ``--rate-limit-resource NAME:COUNT[:DEVICE]``: the rate-limit pre-flight — a budget smaller than some
  instance's need is reported in Triton's own words (the server would refuse to load).

Exit 0 when nothing is found, 3 on findings, 2 on a usage error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rmt.check.lint import lint_repository
from rmt.check.ratelimit import preflight
from rmt.check.warmup_coverage import coverage_repository, load_scenario_file
from rmt.core.errors import CheckFailed, ConfigError


def register(sub: Any) -> None:
    """Add ``rmt lint``."""
    p = sub.add_parser("lint", help="static checks of a model repository (warmup samples, rate-limit budgets)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_repository", type=Path, metavar="MODEL_REPO", help="the model repository to lint")
    p.add_argument("--rate-limit-resource", action="append", default=[], metavar="R:N[:D]",
                   help="a budget the server will get, NAME:COUNT[:DEVICE]; repeatable (enables the pre-flight)")
    p.add_argument("--coverage", action="store_true",
                   help="also report shapes that matter (graph_spec, batcher sizes) that no warmup sample exercises")
    p.add_argument("--scenario", type=Path, default=None, metavar="FILE",
                   help="an rmt.load scenario whose shapes and batch sizes must be warmed (implies --coverage)")
    p.add_argument("--gpus", default="0", metavar="IDS",
                   help="comma-separated device ids of GPU instances without a gpus list (default 0)")
    p.set_defaults(func=cmd_lint)


def cmd_lint(args: Any) -> int:
    """Lint warmup samples (and budgets when given); print one line per finding; exit 0 or 3."""
    try:
        gpus = [int(g) for g in str(args.gpus).split(",") if g.strip()]
    except ValueError:
        raise ConfigError(f"bad --gpus {args.gpus!r}: write device ids such as 0 or 0,1") from None
    models, findings = lint_repository(args.model_repository)
    if args.coverage or args.scenario is not None:
        scenario = load_scenario_file(args.scenario) if args.scenario is not None else None
        findings += coverage_repository(args.model_repository, scenario)
    lines = [f.line() for f in findings]
    if args.rate_limit_resource:
        for short in preflight(args.model_repository, args.rate_limit_resource, gpus=gpus):
            where = "global" if short.device is None else f"device {short.device}"
            lines.append(f"rate limiter: {where}: {short.message}: raise --rate-limit-resource "
                         f"{short.resource}:{short.required}" + ("" if short.device is None else f":{short.device}")
                         + " or lower the instances' need")
    for line in lines:
        print(line)
    print(f"linted {len(models)} models: {len(lines)} finding(s)")
    if lines:
        raise CheckFailed(f"{len(lines)} finding(s) in {args.model_repository}")
    return 0
