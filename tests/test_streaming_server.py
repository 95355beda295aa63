"""Streaming on the real tritonserver: gRPC ModelStreamInfer and HTTP generate_stream (SSE), client cancellation
reaching the model, master + 2 workers counting exactly what Triton counted, and stream/unary mismatches refused
before any load with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient

from rmt.core.modelconfig import config_from_json
from rmt.core.scenario import parse_scenario
from rmt.load.payloads import ID_WIDTH, build_pool, grpc_id_field, resolve_stream
from rmt.load.streamwire import NO_CANCEL, CancelPlan, GrpcStreamConnection, SseConnection, sse_head, stream_trace
from rmt.load.users import fetch_config_http
from rmt.pytest_plugin import _require_server
from rmt.server import EmbeddedServer, ServerOptions
from tests.test_users_locust import read_windows, run_locust
from tests.zoo_client import model_stub_rss, wait_for, zoo_subset

LOCUST = str(Path(sys.executable).parent / "locust")
LOCUSTFILE = str(Path(__file__).resolve().parent.parent / "rmt" / "load" / "locustfile.py")
MODELS = ["stream_n", "stream_leak_on_cancel", "probe"]
TAG = grpc_id_field(bytes(ID_WIDTH))[:-ID_WIDTH]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A tritonserver with the two streaming models and one unary model."""
    _require_server()
    repo = zoo_subset(tmp_path_factory.mktemp("streaming") / "repo", MODELS)
    with EmbeddedServer(ServerOptions(model_repository=repo)) as running:
        yield running


def _pool(server: EmbeddedServer, model: str, protocol: str) -> Any:
    scenario = parse_scenario({"patterns": {"s": {"shape": [4], "stream": {}}},
                               "streams": [{"model": model, "pattern": "s"}]})
    config = config_from_json(fetch_config_http(server.http_url)(model))
    return build_pool(resolve_stream(scenario.streams[0], scenario.pattern("s"), config), scenario, protocol)


class _Client:
    """One streaming connection of either protocol sending the model's first pooled body."""

    def __init__(self, server: EmbeddedServer, model: str, protocol: str) -> None:
        pool = _pool(server, model, protocol)
        if protocol == "grpc":
            self.conn: Any = GrpcStreamConnection(server.host, server.grpc_port, 10)
            self.before: tuple[bytes, ...] = (pool.grpc[0], TAG)
            self.after: tuple[bytes, ...] = ()
        else:
            self.conn = SseConnection(server.host, server.http_port, 10)
            head, tail = pool.sse[0]
            self.before = (sse_head(server.http_url, model, len(head) + ID_WIDTH + len(tail)) + head,)
            self.after = (tail,)

    def stream(self, plan: CancelPlan = NO_CANCEL) -> Any:
        """One request (the id between the body's parts)."""
        return self.conn.stream((*self.before, b"r" * ID_WIDTH, *self.after), plan)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_streams_complete_and_cancel_on_one_connection(server: EmbeddedServer, protocol: str) -> None:
    client = _Client(server, "stream_n", protocol)
    full = client.stream()
    assert (full.outcome, full.cancelled, full.responses, full.final) == (0, False, 8, True), full.error
    assert len(full.gaps_us) == 7 and full.last_ns - full.first_ns == pytest.approx(sum(full.gaps_us) * 1000)
    rows = stream_trace(full)
    assert rows is not None and rows.shape == (1, 7)
    by_count = client.stream(CancelPlan(after_responses=2))
    assert (by_count.cancelled, by_count.responses, by_count.final) == (True, 2, False)
    by_time = client.stream(CancelPlan(after_ms=5.0))
    assert by_time.cancelled and by_time.responses < 8 and not by_time.final
    again = client.stream()  # the connection (or its replacement) serves the next request
    assert (again.outcome, again.responses, again.final) == (0, 8, True), again.error
    client.conn.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_cancellation_reaches_the_model(server: EmbeddedServer, protocol: str) -> None:
    client = _Client(server, "stream_leak_on_cancel", protocol)
    assert client.stream().final  # the stub is up and warm
    before = model_stub_rss(server, "stream_leak_on_cancel")
    for _ in range(40):
        assert client.stream(CancelPlan(after_responses=1)).cancelled
    # 256 KiB kept per cancelled request (the model saw request.is_cancelled()); a completed one keeps nothing.
    wait_for(lambda: model_stub_rss(server, "stream_leak_on_cancel") - before > 40 * 256 * 1024 * 0.9, 10,
             "the stub to keep the cancelled requests' state")
    client.conn.close()


def _server_requests(server: EmbeddedServer, model: str) -> int:
    """Triton's requests of a model (success + fail; its python backend leaves ``response_stats`` empty, so
    responses are held to the model's promised count instead)."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_stats"]["success"]["count"]) + int(stats["inference_stats"]["fail"]["count"])


STREAMS = {"traffic": {
    "mode": "closed",
    "patterns": {"full": {"shape": [16], "stream": {"responses": 8}},
                 "cancel": {"shape": [16], "stream": {"cancel_share": 0.5, "cancel_after_responses": 3}}},
    "streams": [{"model": "stream_n", "priority": 1, "pattern": "full"},
                {"model": "stream_n", "priority": 2, "pattern": "cancel"}]}}


@pytest.mark.parametrize(("user_class", "workers"), [("GrpcTraffic", 2), ("HttpTraffic", 0)])
def test_stream_counts_equal_server_statistics(server: EmbeddedServer, tmp_path: Path, user_class: str,
                                               workers: int) -> None:
    before = _server_requests(server, "stream_n")
    host = server.grpc_url if user_class == "GrpcTraffic" else server.http_url
    code, err = run_locust(STREAMS, tmp_path / "run", host, user_class, users=4, run_time_s=4, workers=workers)
    after = _server_requests(server, "stream_n")
    assert code == 0, err[-2000:]
    rows = read_windows(tmp_path / "run")
    total = {k: sum(r[k] for r in rows) for k in ("sent", "succeeded", "cancelled", "responses", "finals",
                                                  "completed_responses", "failed_client", "failed_server")}
    assert total["sent"] > 40, total
    assert total["failed_client"] == total["failed_server"] == 0
    # Exact: every request the master recorded is one Triton counted; each completed one brought the model's 8
    # responses, each cancelled one the 3 after which the client cancelled it.
    assert after - before == total["succeeded"] + total["cancelled"] == total["sent"]
    assert total["completed_responses"] == 8 * total["succeeded"]
    assert total["finals"] == total["succeeded"] and total["cancelled"] > 0
    if workers:
        assert max(r["processes"] for r in rows) == 2
    cancelled = [r for r in rows if r["pattern"] == "cancel"]
    assert sum(r["responses"] for r in cancelled) - sum(r["completed_responses"] for r in cancelled) == \
        3 * sum(r["cancelled"] for r in cancelled)


@pytest.mark.parametrize(("model", "pattern", "expected"), [
    ("probe", {"shape": [16], "stream": {}}, "model 'probe' is not decoupled"),
    ("stream_n", {"shape": [16]}, "model 'stream_n' is decoupled"),
])
def test_stream_and_unary_mismatch_refused_before_load(server: EmbeddedServer, tmp_path: Path, model: str,
                                                       pattern: dict[str, Any], expected: str) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"patterns": {"p": pattern}, "streams": [{"model": model, "pattern": "p"}]}))
    before = _server_requests(server, model)
    proc = subprocess.run([LOCUST, "-f", LOCUSTFILE, "--rmt-scenario", str(scenario), "--headless", "-u", "1",
                           "-t", "2s", "--host", server.http_url, "HttpTraffic"],
                          capture_output=True, text=True, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert [line for line in lines if line.startswith("rmt: error:")] == lines[-1:] and expected in lines[-1]
    assert "Traceback" not in proc.stderr and _server_requests(server, model) == before


def test_server_side_timeouts_end_streams_as_timed_out(server: EmbeddedServer, tmp_path: Path) -> None:
    scenario = {"traffic": {"mode": "closed", "patterns": {"s": {"shape": [16], "stream": {}}},
                            "streams": [{"model": "stream_n", "priority": 2, "pattern": "s", "timeout_us": 3000}]}}
    before = _server_requests(server, "stream_n")
    code, err = run_locust(scenario, tmp_path / "t", server.grpc_url, "GrpcTraffic", users=8, run_time_s=3)
    assert code in (0, 1), err[-2000:]  # exit 1: Locust saw the timed-out requests fail
    rows = read_windows(tmp_path / "t")
    total = {k: sum(r[k] for r in rows) for k in ("sent", "succeeded", "failed_timeout", "failed_server",
                                                  "failed_client", "finals")}
    # 8 streams of 16 ms each queue behind one instance: those queued > 3 ms expire in Triton's queue.
    assert total["failed_timeout"] > 0 and total["succeeded"] > 0, total
    assert total["failed_server"] == total["failed_client"] == 0 and total["finals"] == total["succeeded"]
    assert _server_requests(server, "stream_n") - before == total["sent"]
