"""``rmt server start``: run the embedded tritonserver in the foreground until SIGINT/SIGTERM.

Prints exactly one line once the server is ready (other tools parse it)::

    ready http=127.0.0.1:P grpc=127.0.0.1:P metrics=127.0.0.1:P pid=PID
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rmt.core.errors import ServerError
from rmt.core.resources import ZOO_REPOSITORY
from rmt.core.signals import StopSignals
from rmt.server import EmbeddedServer, ServerOptions


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that build :class:`ServerOptions` (shared by every command that starts a server)."""
    g = parser.add_argument_group("embedded tritonserver")
    g.add_argument("--model-repository", type=Path, default=ZOO_REPOSITORY, metavar="DIR",
                   help="model repository (default: the rmt zoo)")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    g.add_argument("--http-port", type=int, metavar="N", help="HTTP port (default: a free one)")
    g.add_argument("--grpc-port", type=int, metavar="N", help="gRPC port (default: a free one)")
    g.add_argument("--metrics-port", type=int, metavar="N", help="metrics port (default: a free one)")
    g.add_argument("--rate-limit", choices=("execution_count", "off"),
                   help="rate limiter mode (implied execution_count by --rate-limit-resource)")
    g.add_argument("--rate-limit-resource", action="append", default=[], metavar="R:N[:D]",
                   help="resource budget NAME:COUNT[:DEVICE]; repeatable")
    g.add_argument("--model-control-mode", choices=("none", "explicit"), default="none")
    g.add_argument("--load-model", action="append", default=[], metavar="NAME",
                   help="model to load at start in explicit mode; repeatable")
    g.add_argument("--metrics-interval-ms", type=int, metavar="MS", help="metrics update interval")
    g.add_argument("--log-verbose", type=int, default=0, metavar="N", help="tritonserver log verbosity")
    g.add_argument("--pinned-memory-pool-bytes", type=int, metavar="BYTES", help="pinned memory pool size")
    g.add_argument("--cache-size-bytes", type=int, metavar="BYTES",
                   help="Triton's local response cache of this size (--cache-config local,size=BYTES)")
    g.add_argument("--exit-timeout", type=int, default=30, metavar="S", help="graceful shutdown timeout")
    g.add_argument("--ready-timeout", type=float, default=180.0, metavar="S", help="how long to wait for ready")
    g.add_argument("--server-log", type=Path, metavar="FILE", help="keep tritonserver's log in FILE")
    g.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                   help="extra raw tritonserver flag, e.g. --server-arg=--strict-readiness=false; repeatable")


def options_from_args(args: Any) -> ServerOptions:
    """Build :class:`ServerOptions` from the flags of :func:`add_server_arguments`."""
    return ServerOptions(
        model_repository=args.model_repository, host=args.host, http_port=args.http_port,
        grpc_port=args.grpc_port, metrics_port=args.metrics_port, rate_limit=args.rate_limit,
        rate_limit_resources=list(args.rate_limit_resource), model_control_mode=args.model_control_mode,
        load_models=list(args.load_model), metrics_interval_ms=args.metrics_interval_ms,
        log_verbose=args.log_verbose, pinned_memory_pool_bytes=args.pinned_memory_pool_bytes,
        exit_timeout_s=args.exit_timeout, extra_args=list(args.server_arg), ready_timeout_s=args.ready_timeout,
        log_path=args.server_log, cache_size_bytes=args.cache_size_bytes,
    )


def register(sub: Any) -> None:
    """Add ``rmt server start``."""
    server = sub.add_parser("server", help="the embedded tritonserver")
    actions = server.add_subparsers(dest="server_command", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start tritonserver in the foreground (Ctrl-C stops it)",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(start)
    start.set_defaults(func=run_start)


def run_start(args: Any) -> int:
    """Start, print the ready line, wait for SIGINT/SIGTERM or the server's death, stop."""
    signals = StopSignals().install()
    server = EmbeddedServer(options_from_args(args))
    try:
        server.start()
        print(server.ready_line(), flush=True)
        while not signals.event.wait(0.5):
            if not server.is_running():
                tail = server.log_tail(20)
                raise ServerError(f"tritonserver (pid {server.pid}) exited unexpectedly; last log lines:\n{tail}")
    finally:
        server.stop()
    print(f"stopped{signals.describe()}", file=sys.stderr, flush=True)
    return 0
