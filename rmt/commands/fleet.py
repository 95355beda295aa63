"""``rmt fleet --prometheus URL``: judge every Triton server a Prometheus server scrapes, over a time range.

Reads Triton's ``nv_*`` metrics, the rmt collector's exposition (``rmt_process_rss_bytes`` …) and DCGM exporter's
``DCGM_FI_DEV_FB_USED``/``_FREE`` through ``/api/v1/query_range``, per server (the first of the ``--server-label``
labels a series carries: ``server``, ``exported_pod``, ``pod``, ``instance``), and runs rmt's checks on each:
leak and pool growth against completed requests, rate and fairness from Triton's counters (fairness, starvation,
weights, concurrency with ``--model-repository``). Prints a verdict table per server and the fleet summary
(which servers leak, which are healthy), writes ``fleet.json`` into ``--out``, and exits 0 when every server is
healthy, 3 when one leaks, fails a check or could not be judged, 2 on a usage error, 1 on a tool error.

    rmt fleet --prometheus http://prometheus:9090 --last 2h
    rmt fleet --prometheus http://127.0.0.1:9090 --start 2026-12-04T20:00:00Z --end 2026-12-04T21:00:00Z \\
              --step 15s --server-label pod --checks 'leak.max_growth="1MiB/10k"'

A counter reset (a restarted server) starts a new epoch, judged on its own (subjects end ``@epoch N``); a failed
scrape is a gap. ``--step`` should not be shorter than the scrape interval (each step repeats the latest sample).
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rmt.check.base import SKIP
from rmt.check.data import RunInputs
from rmt.check.quantity import parse_duration
from rmt.check.ratelimit import repository_limits
from rmt.check.report import format_table
from rmt.check.spec import merge_specs, parse_spec
from rmt.core.errors import CheckFailed, ConfigError, SourceUnavailable
from rmt.core.modelconfig import load_config_pbtxt
from rmt.fleet.adapter import SERVER_LABELS
from rmt.fleet.judge import HEALTHY, judge_fleet
from rmt.fleet.prometheus import PrometheusClient


def register(sub: Any) -> None:
    """Add ``rmt fleet``."""
    p = sub.add_parser("fleet", help="verdicts per server from a Prometheus server (leaks, pools, fairness)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL, e.g. http://prom:9090")
    p.add_argument("--start", metavar="TIME", help="start of the range: epoch seconds or RFC 3339 (default: "
                   "--last before --end)")
    p.add_argument("--end", metavar="TIME", help="end of the range (default: now)")
    p.add_argument("--last", default="1h", metavar="DURATION", help="range length when --start is not given "
                   "(default 1h)")
    p.add_argument("--step", default="1s", metavar="DURATION", help="query step (default 1s; widened to at most "
                   "11000 points)")
    p.add_argument("--server-label", action="append", metavar="LABEL",
                   help=f"label naming the server of a series, first found wins; repeatable (default: "
                        f"{', '.join(SERVER_LABELS)})")
    p.add_argument("--checks", action="append", default=[], metavar="SPEC", help="thresholds as for rmt check")
    p.add_argument("--model-repository", type=Path, metavar="DIR",
                   help="the fleet's model repository: model configs for the concurrency and weights checks")
    p.add_argument("--rate-limit-resource", action="append", default=[], metavar="NAME:COUNT[:DEVICE]",
                   help="the servers' --rate-limit-resource flags (with --model-repository)")
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="where fleet.json goes (default .)")
    p.set_defaults(func=cmd_fleet)


def parse_time(text: str, flag: str) -> float:
    """Epoch seconds from ``1733340000``, ``1733340000.5`` or RFC 3339 (``2026-12-04T20:00:00Z``)."""
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not a time: write epoch seconds or RFC 3339, e.g. "
                              "2026-12-04T20:00:00Z") from None
        value = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{flag} {text!r} is not a time: write epoch seconds or RFC 3339")
    return value


def _duration(text: str, flag: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def base_inputs(repo: Path | None, flags: list[str]) -> RunInputs | None:
    """Model configs and rate-limiter flags shared by the fleet's servers (Prometheus holds neither)."""
    if repo is None:
        if flags:
            raise ConfigError("--rate-limit-resource needs --model-repository (the models that ask for resources)")
        return None
    models = repository_limits(repo)
    configs = {cfg.parent.name: load_config_pbtxt(cfg) for cfg in sorted(repo.glob("*/config.pbtxt"))}
    return RunInputs(models=models, configs=configs, rate_limit_flags=list(flags), rate_limiter_on=bool(flags))


def cmd_fleet(args: Any) -> int:
    """Query, judge, print the tables and the summary, write ``fleet.json``; exit 0 only when all are healthy."""
    end = parse_time(args.end, "--end") if args.end else time.time()
    start = parse_time(args.start, "--start") if args.start else end - _duration(args.last, "--last")
    step = _duration(args.step, "--step")
    spec = merge_specs(*(parse_spec(text) for text in args.checks))
    client = PrometheusClient(args.prometheus)
    result = judge_fleet(client, start, end, step_s=step, spec=spec,
                         server_labels=args.server_label or SERVER_LABELS,
                         base=base_inputs(args.model_repository, args.rate_limit_resource))
    if not result.servers:
        raise SourceUnavailable(f"Prometheus at {client.base_url} holds no Triton, rmt collector or DCGM series "
                                "with a server label in that range: check the scrape targets, --start/--end and "
                                "--server-label")
    for server in result.servers:
        print(f"== {server.server}")
        shown = [v for v in server.verdicts if v.status != SKIP or v.undecided]
        print(format_table(shown))
        if len(shown) < len(server.verdicts):
            missing = sorted({v.check for v in server.verdicts if v not in shown})
            print(f"no evidence in Prometheus for {', '.join(missing)} (see fleet.json)")
        for note in dict.fromkeys(server.notes):
            print(f"note: {note}")
    print("== fleet")
    print(result.summary())
    path = result.write(args.out, spec)
    print(f"wrote {path}")
    bad = [s.server for s in result.servers if s.state != HEALTHY]
    if bad:
        raise CheckFailed(f"{len(bad)} of {len(result.servers)} servers not healthy: {', '.join(bad)}")
    return 0
