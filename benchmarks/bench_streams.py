"""Client cost of the streaming transports: client CPU per request and per response, rmt vs perf_analyzer --streaming.

One embedded tritonserver with ``sident`` (the zoo's stream_n with no gap: ``--responses`` data responses per
request, no delay) and ``ident`` (bench_users' unary identity model, for the unary figure beside it). Every
contender sends the same request (INPUT0 FP32 [1, 16], zeros) at the same concurrency, in its own process; the
server's ``inference_count`` gives the requests over a ``--seconds`` interval (× ``--responses`` = responses, every
request completing), psutil the contender's CPU time. Contenders: rmt over gRPC ``ModelStreamInfer``, rmt over HTTP
``generate_stream`` (SSE), rmt unary gRPC on ``ident``, and perf_analyzer (the ``tritonclient==2.41.0`` binary, as
bench_users fetches it) with ``--streaming`` over gRPC (its only streaming protocol).

Usage: ``.venv/bin/python benchmarks/bench_streams.py --seconds 10``. Last line: ``grpc_stream_ratio=X`` (rmt's gRPC
streams / perf_analyzer's, in responses per client CPU-second).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_users import BIN, arguments, identity_repository, measure, perf_analyzer  # noqa: E402

from rmt.core.resources import ZOO_REPOSITORY  # noqa: E402
from rmt.server import EmbeddedServer, ServerOptions  # noqa: E402

STREAM_MODEL = "sident"


def stream_repository(folder: Path, responses: int) -> Path:
    """``ident`` (unary) and ``sident``: stream_n with ``responses`` responses, no gap, two instances."""
    identity_repository(folder)
    model = folder / STREAM_MODEL
    (model / "1").mkdir(parents=True)
    config = (ZOO_REPOSITORY / "stream_n" / "config.pbtxt").read_text()
    config = config.replace('"stream_gap_us" value { string_value: "2000" }',
                            '"stream_gap_us" value { string_value: "0" }')
    config = config.replace('"stream_responses" value { string_value: "8" }',
                            f'"stream_responses" value {{ string_value: "{responses}" }}')
    config = config.replace("count: 1 kind: KIND_CPU", "count: 2 kind: KIND_CPU")
    (model / "config.pbtxt").write_text(config)
    (model / "1" / "model.py").symlink_to((ZOO_REPOSITORY / "stream_n" / "1" / "model.py").resolve())
    return folder


def main() -> int:
    """Run every contender and print the table and the ratio line."""
    parser = arguments(__doc__)
    parser.add_argument("--responses", type=int, default=8, help="data responses per streaming request")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rmt-bench-streams-"))
    scenarios = {}
    sections: list[tuple[str, str, dict[str, Any]]] = [("stream", STREAM_MODEL, {"stream": {}}), ("unary", "ident", {})]
    for name, model, section in sections:
        scenarios[name] = work / f"{name}.json"
        scenarios[name].write_text(json.dumps({"traffic": {
            "mode": "closed", "max_traces_per_s": 0,
            "patterns": {"z": {"shape": [16], "data": "zeros", **section}},
            "streams": [{"model": model, "pattern": "z"}]}}))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pa = perf_analyzer(args.cache_dir)
    rows: dict[str, tuple[float, float]] = {}
    with EmbeddedServer(ServerOptions(model_repository=stream_repository(work / "repo", args.responses))) as server:
        def locust(user: str, host: str, scenario: Path) -> list[str]:
            return [str(BIN / "locust"), "-f", str(ROOT / "rmt" / "load" / "locustfile.py"), "--headless",
                    "-u", str(args.concurrency), "-r", "1000", "-t", "600s", "--host", host, "--only-summary",
                    "--loglevel", "WARNING", "--rmt-scenario", str(scenario), user]

        contenders: list[tuple[str, str, int, list[str] | str]] = [
            ("rmt grpc stream", STREAM_MODEL, args.responses, locust("GrpcTraffic", server.grpc_url,
                                                                     scenarios["stream"])),
            ("rmt http sse", STREAM_MODEL, args.responses, locust("HttpTraffic", server.http_url,
                                                                  scenarios["stream"])),
            ("rmt grpc unary", "ident", 1, locust("GrpcTraffic", server.grpc_url, scenarios["unary"])),
            ("perf_analyzer grpc stream", STREAM_MODEL, args.responses, pa if isinstance(pa, str) else [
                str(pa[0]), "-m", STREAM_MODEL, "-u", server.grpc_url, "-i", "grpc", "--streaming",
                "--shape", "INPUT0:16", "--input-data", "zero",
                "--concurrency-range", f"{args.concurrency}:{args.concurrency}",
                "--measurement-interval", str(int(args.seconds * 3000 + 60000))]),
        ]
        print(f"server {server.http_url}, {args.responses} responses per streaming request, concurrency "
              f"{args.concurrency}, {args.seconds:g} s each; {os.cpu_count()} CPUs", flush=True)
        for name, model, per_request, cmd in contenders:
            if args.only and args.only not in name:
                continue
            if isinstance(cmd, str):
                print(f"{name:26s} skipped: {cmd}", flush=True)
                continue
            run_env = pa[1] if name.startswith("perf_analyzer") and not isinstance(pa, str) else env
            requests, cpu, note = measure(cmd, run_env, server, args.seconds, model)
            responses = requests * per_request
            us_request = cpu * 1e6 / requests if requests else math.nan
            us_response = cpu * 1e6 / responses if responses else math.nan
            rows[name] = (responses / cpu if cpu else math.nan, us_response)
            print(f"{name:26s} {requests:7d} requests {responses:8d} responses  {cpu:6.2f} CPU-s  "
                  f"{us_request:7.1f} µs/request  {us_response:6.1f} µs/response  ({note})", flush=True)
    ours, theirs = rows.get("rmt grpc stream"), rows.get("perf_analyzer grpc stream")
    ratio = ours[0] / theirs[0] if ours and theirs else math.nan
    print(f"grpc_stream_ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
