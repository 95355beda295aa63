"""``rmt run SCENARIO``: one command from zero to verdict.

Without ``--host`` it starts the embedded tritonserver with the zoo (or ``--model-repository DIR``) and the options
the scenario needs (rate-limiter resources, explicit model control); it starts the collector, runs Locust (headless,
or the web UI on 127.0.0.1 with ``--ui``; ``--workers N`` spawns N real worker processes), then the checks and the
report, printing progress, the verdict table and the run directory. Exit codes as ``rmt check``: 0 every verdict
passed, 3 one failed, 4 the run is incomplete (a worker died, it was interrupted: the INCOMPLETE rows say what was
lost), 2 usage error, 1 tool error; with ``--expected``, 0 when every verdict matches the scenario's expectation
(planted defects FAIL on purpose), 3 otherwise (4 when only the run's completeness failed).

With ``--host``, the server flags given (``--model-repository``, ``--rate-limit-resource``, ``--model-control-mode``)
describe that server to the checks (rmt cannot read a server's flags back); the model configs come from the server,
and ``--server-log FILE`` (the log of a server on this host, e.g. ``rmt server start --server-log FILE``) gives the
models' own log lines.

Scenarios: memory_growth, fragmentation, rate_limit, weights_plenty, fairness, priority, priority_starvation,
warmup, reconfig, cross_device, cross_device_global, campaign
(``rmt/scenarios/<name>.json``), or a definition file path. ``--models a,b`` points any scenario at your own models
(inputs from each model's config).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rmt.commands.server import add_server_arguments, options_from_args
from rmt.core.resources import ZOO_REPOSITORY
from rmt.run.definition import available
from rmt.run.orchestrate import Orchestrator, RunRequest


def register(sub: Any) -> None:
    """Add ``rmt run``."""
    p = sub.add_parser("run", help="run a ready scenario end to end: server, load, collector, verdicts, report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       conflict_handler="resolve")
    add_server_arguments(p)
    p.add_argument("scenario", metavar="SCENARIO", help=f"one of {', '.join(available())}, or a definition file")
    p.add_argument("--host", metavar="URL", help="use this running Triton (HTTP host:port) instead of the embedded one")
    p.add_argument("--duration", type=float, metavar="S", help="seconds of load (campaign: in all); default: the "
                                                                "scenario's")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="Locust worker processes (default 0: one "
                                                                       "process)")
    p.add_argument("--users", type=int, metavar="N", help="Locust users (default: the scenario's)")
    p.add_argument("--ui", action="store_true", help="show Locust's web UI on 127.0.0.1 while it runs")
    p.add_argument("--out", type=Path, metavar="DIR", help="run directory (default runs/<scenario>-<time>)")
    p.add_argument("--models", metavar="A,B", help="point the scenario at these models")
    p.add_argument("--checks", action="append", default=[], metavar="SPEC",
                   help='extra check spec, e.g. leak.max_growth="1MiB/10k"; repeatable')
    p.add_argument("--until-decisive", action="store_true",
                   help="keep the load on until every leak/pool verdict is decided (sequential testing), then stop")
    p.add_argument("--max-duration", type=float, metavar="S",
                   help="with --until-decisive: the longest the load may last (default 600 s; phases stretch to it)")
    p.add_argument("--expected", action="store_true",
                   help="exit 0 when every verdict matches its expectation (planted defects fail on purpose)")
    p.set_defaults(func=cmd_run, model_repository=None)  # None: not given (the embedded server takes the zoo)


def cmd_run(args: Any) -> int:
    """Build the request from the flags and run it."""
    repository_given = args.model_repository is not None
    server_args = argparse.Namespace(**{**vars(args), "host": "127.0.0.1",
                                        "model_repository": args.model_repository or ZOO_REPOSITORY})
    flags = {name for name, given in (("model_repository", repository_given),
                                      ("rate_limit_resources", args.rate_limit_resource),
                                      ("log_path", args.server_log is not None),
                                      ("model_control_mode", args.model_control_mode != "none"),
                                      ("load_models", args.load_model)) if given}
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()] if args.models is not None else []
    if args.models is not None and not models:
        from rmt.core.errors import ConfigError

        raise ConfigError(f"bad --models {args.models!r}: give model names separated by commas, e.g. a,b")
    request = RunRequest(scenario=args.scenario, host=args.host, duration_s=args.duration, workers=args.workers,
                         ui=args.ui, out=args.out, models=models, users=args.users, checks=list(args.checks),
                         expected=args.expected, server=options_from_args(server_args), server_flags=flags,
                         until_decisive=args.until_decisive, max_duration_s=args.max_duration)
    return Orchestrator(request).run()
