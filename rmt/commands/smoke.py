"""``rmt smoke``: start the embedded server (or use one), send a short load to every READY model, print a table.

Per model: requests that succeeded, the first request's latency (a cold start shows here), median and p99 of the
rest, and how much the model's python-backend stubs grew (RSS) after each instance's first request (which pays
one-time imports) — a leaking zoo model stands out at once. A decoupled model is sent streaming requests
(``generate_stream``): one succeeded when its final response came.
Exit code 0 when every model is READY and every request succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from rmt.commands.server import add_server_arguments, options_from_args
from rmt.core.errors import SourceUnavailable
from rmt.core.hdr import clamp_us, new_histogram
from rmt.core.modelconfig import config_from_json, example_inputs, input_specs
from rmt.core.procs import stub_rss_bytes
from rmt.load.streamwire import SseConnection, sse_head
from rmt.server import EmbeddedServer

MIB = 1024 * 1024


@dataclass
class ModelSmoke:
    """Outcome of the smoke load on one model."""

    model: str
    state: str
    sent: int = 0
    ok: int = 0
    first_us: float = float("nan")
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    rss_growth_bytes: float = float("nan")
    error: str = ""


def _model_rss(server_pid: int | None) -> dict[str, int]:
    if server_pid is None:
        return {}
    totals: dict[str, int] = defaultdict(int)
    for instance, rss in stub_rss_bytes(server_pid).items():
        totals[instance.rsplit("_", 2)[0]] += rss
    return totals


def smoke_model(client: Any, name: str, requests: int, server_pid: int | None, url: str = "") -> ModelSmoke:
    """Send ``requests`` sequential inferences with inputs derived from the model's config (``url``: the HTTP
    host:port, for streaming requests to a decoupled model)."""
    result = ModelSmoke(name, "READY")
    config = config_from_json(client.get_model_config(name))
    arrays = example_inputs(config)
    inputs = []
    for spec in input_specs(config):
        if spec.name in arrays:
            tensor = httpclient.InferInput(spec.name, list(arrays[spec.name].shape), spec.datatype)
            tensor.set_data_from_numpy(arrays[spec.name], binary_data=True)
            inputs.append(tensor)
    hist = new_histogram()
    instances = max(1, sum(g.count or 1 for g in config.instance_group))
    before: int | None = None
    stream = _streamer(url, name, config, arrays) if config.model_transaction_policy.decoupled else None
    for i in range(requests):
        start = time.perf_counter_ns()
        try:
            if stream is None:
                client.infer(name, inputs)
            else:
                stream()
            result.ok += 1
        except InferenceServerException as exc:
            result.error = result.error or str(exc.message())
        elapsed_us = (time.perf_counter_ns() - start) / 1000
        result.sent += 1
        if i == 0:
            result.first_us = elapsed_us
        else:
            hist.record_value(clamp_us(elapsed_us))
        if i == min(instances, requests) - 1:
            before = _model_rss(server_pid).get(name)  # each instance has paid its one-time imports
    if hist.get_total_count():
        result.p50_us = float(hist.get_value_at_percentile(50))
        result.p99_us = float(hist.get_value_at_percentile(99))
    after = _model_rss(server_pid).get(name)
    if before is not None and after is not None:
        result.rss_growth_bytes = float(after - before)
    return result


def format_table(rows: list[ModelSmoke]) -> str:
    """The per-model status table."""
    def ms(us: float) -> str:
        return "-" if np.isnan(us) else f"{us / 1000:.2f}"

    def mib(b: float) -> str:
        return "-" if np.isnan(b) else f"{b / MIB:+.1f}"

    header = ("MODEL", "STATE", "OK/SENT", "FIRST ms", "P50 ms", "P99 ms", "STUB RSS MiB", "ERROR")
    lines = [header] + [
        (r.model, r.state, f"{r.ok}/{r.sent}", ms(r.first_us), ms(r.p50_us), ms(r.p99_us), mib(r.rss_growth_bytes),
         r.error[:60]) for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _streamer(url: str, name: str, config: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A callable sending one ``generate_stream`` request to decoupled model ``name`` at ``url`` (host:port of
    HTTP); it raises InferenceServerException when the request failed or never got its final response."""
    host, _, port = url.split("://")[-1].rpartition(":")
    rows = {k: (v[0] if config.max_batch_size > 0 else v).ravel().tolist() for k, v in arrays.items()}
    body = json.dumps(rows).encode()
    conn = SseConnection(host, int(port), 60)
    head = sse_head(f"{host}:{port}", name, len(body))

    def send() -> None:
        result = conn.stream((head, body))
        if result.outcome or not result.final:
            raise InferenceServerException(result.error or "the stream ended without its final response")
    return send


def run_smoke(url: str, requests: int, server_pid: int | None) -> list[ModelSmoke]:
    """Smoke every model in the server's repository index."""
    client = httpclient.InferenceServerClient(url, connection_timeout=10, network_timeout=60)
    try:
        index = client.get_model_repository_index()
    except (InferenceServerException, OSError) as exc:
        raise SourceUnavailable(f"cannot reach tritonserver at {url} ({exc}): start one or fix --url") from exc
    rows = []
    for entry in sorted(index, key=lambda e: e["name"]):
        state = entry.get("state", "UNKNOWN")
        if state != "READY":
            rows.append(ModelSmoke(entry["name"], state, error=entry.get("reason", "")))
            continue
        rows.append(smoke_model(client, entry["name"], requests, server_pid, url))
    client.close()
    return rows


def register(sub: Any) -> None:
    """Add ``rmt smoke``."""
    p = sub.add_parser("smoke", help="short load on every model of a server, with a status table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=50, metavar="N", help="requests per model (default 50)")
    p.add_argument("--url", help="use this running server (host:port of HTTP) instead of starting one")
    p.add_argument("--pid", type=int, help="with --url: tritonserver's PID, to report stub RSS growth")
    add_server_arguments(p)
    p.set_defaults(func=cmd_smoke)


def cmd_smoke(args: Any) -> int:
    """Run the smoke job and print the table."""
    if args.requests < 1:
        raise SystemExit("rmt: error: --requests must be at least 1")
    if args.url:
        rows = run_smoke(args.url, args.requests, args.pid)
    else:
        with EmbeddedServer(options_from_args(args)) as server:
            print(server.ready_line(), flush=True)
            rows = run_smoke(server.http_url, args.requests, server.pid)
    print(format_table(rows))
    failed = [r for r in rows if r.state != "READY" or r.ok != r.sent]
    return 1 if failed else 0
