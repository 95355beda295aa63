"""``rmt collect``: the resource sidecar as a standalone process, beside a running tritonserver.

Samples the server's process tree, its metrics page, its python-backend shared memory and (where there is a GPU)
NVML into ``--out`` (``series.jsonl``, ``samples.jsonl``, ``manifest.json``), and serves the latest values on
127.0.0.1: JSON under ``/api/…`` and a Prometheus exposition on ``/metrics``. Prints one line once running::

    collecting api=http://127.0.0.1:PORT out=DIR sources=process,triton_metrics,shm

Runs until SIGINT/SIGTERM (or ``--duration``). The server may stop and come back on the same port: its PID is found
again, and the time in between is recorded as gaps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rmt.collect.sidecar import DEFAULT_SOURCES, SOURCE_NAMES, Sidecar, SidecarOptions, check_interval
from rmt.collect.target import ServerTarget
from rmt.core.errors import ConfigError
from rmt.core.rundir import RunDir
from rmt.core.signals import StopSignals


def register(sub: Any) -> None:
    """Add ``rmt collect``."""
    p = sub.add_parser("collect", help="resource sidecar: sample a tritonserver into a run directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_argument_group("which server (at least one)")
    which.add_argument("--pid", type=int, metavar="PID", help="tritonserver's PID")
    which.add_argument("--server-url", metavar="HOST:PORT",
                       help="tritonserver's HTTP endpoint: its PID is whoever listens there (found again on restart)")
    which.add_argument("--metrics-url", metavar="URL",
                       help="tritonserver's metrics page (default: from the server's command line)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run directory to append to")
    p.add_argument("--host", default="127.0.0.1", help="address of the HTTP API (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, metavar="N", help="port of the HTTP API (default: a free one)")
    p.add_argument("--no-api", action="store_true", help="do not serve the HTTP API")
    p.add_argument("--interval", type=float, default=0.1, metavar="S", help="sampling interval (default 0.1 = 10 Hz)")
    p.add_argument("--timeout", type=float, default=1.0, metavar="S", help="per-source read timeout (default 1)")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES), metavar="LIST",
                   help=f"comma-separated sources of {','.join(SOURCE_NAMES)} (default: {','.join(DEFAULT_SOURCES)})")
    p.add_argument("--uss-every", type=float, default=SidecarOptions.uss_every_s, metavar="S",
                   help=f"USS cadence (default {SidecarOptions.uss_every_s:g})")
    p.add_argument("--detail-every", type=float, default=1.0, metavar="S",
                   help="threads/fds/CPU cadence (default 1)")
    p.add_argument("--metrics-every", type=float, default=SidecarOptions.metrics_every_s, metavar="S",
                   help=f"Triton metrics cadence (default {SidecarOptions.metrics_every_s:g}; the interval: each tick)")
    p.add_argument("--nvml-every", type=float, default=SidecarOptions.nvml_every_s, metavar="S",
                   help=f"NVML cadence (default {SidecarOptions.nvml_every_s:g}; the interval: every tick)")
    p.add_argument("--shm-every", type=float, default=SidecarOptions.shm_every_s, metavar="S",
                   help=f"/dev/shm regions cadence (default {SidecarOptions.shm_every_s:g}; the interval: every tick)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until a signal)")
    p.set_defaults(func=cmd_collect)


def options_from_args(args: Any) -> SidecarOptions:
    """Build and validate :class:`SidecarOptions` from the flags."""
    if args.pid is None and args.server_url is None:
        raise ConfigError("say which server to watch: pass --pid PID or --server-url HOST:PORT")
    if args.pid is not None and args.pid <= 0:
        raise ConfigError(f"bad --pid {args.pid}: give tritonserver's process id")
    if args.duration is not None:
        check_interval(args.duration, "--duration")
    options = SidecarOptions(interval_s=args.interval, timeout_s=args.timeout,
                             sources=[s.strip() for s in args.sources.split(",") if s.strip()],
                             detail_every_s=args.detail_every, uss_every_s=args.uss_every,
                             metrics_every_s=args.metrics_every, nvml_every_s=args.nvml_every,
                             shm_every_s=args.shm_every, host=args.host,
                             port=None if args.no_api else args.port)
    options.validate()
    return options


def cmd_collect(args: Any) -> int:
    """Run the sidecar until a signal or ``--duration``."""
    options = options_from_args(args)
    target = ServerTarget(pid=args.pid, http_url=args.server_url, metrics_url=args.metrics_url)
    if args.pid is not None and target.server() is None:
        raise ConfigError(f"no process with pid {args.pid}: pass tritonserver's PID (or --server-url HOST:PORT)")
    signals = StopSignals().install()
    run = RunDir(args.out)
    run.update_manifest(command=["rmt", *sys.argv[1:]])
    sidecar = Sidecar(target, run, options)
    try:
        sidecar.start()
        for st in sidecar.collector.statuses():
            if not st.info.available:
                print(f"rmt collect: {st.name} unavailable: {st.info.reason}", file=sys.stderr, flush=True)
        on = [st.name for st in sidecar.collector.statuses() if st.info.available]
        print(f"collecting api={sidecar.url or '-'} out={args.out} sources={','.join(on)}", flush=True)
        signals.event.wait(args.duration)
    finally:
        sidecar.stop()
        run.close()
    totals = {st.name: (st.samples_total, st.errors_total) for st in sidecar.collector.statuses()}
    summary = " ".join(f"{name}={ok}/{err}" for name, (ok, err) in totals.items())
    print(f"stopped{signals.describe()}: samples/gaps {summary}", file=sys.stderr,
          flush=True)
    return 0
