"""The collector on a real tritonserver: leak visible in the stub's RSS, counters match traffic, restart survived,
HTTP JSON and Prometheus agree, bad metrics endpoints give gaps."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rmt.collect.sidecar import SOURCE_NAMES, Sidecar, SidecarOptions
from rmt.collect.target import ServerTarget
from rmt.core.measures import MEASURES
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE, find_series, load_series
from rmt.pytest_plugin import ServerFactory
from rmt.server import EmbeddedServer
from tests.zoo_client import infer_all, wait_for, zoo_subset

MIB = 2**20
N = 40


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def series_values(run: RunDir, measure: str, **labels: str) -> np.ndarray:
    """The values written so far (samples reach the file within the collector's flush interval: poll for more)."""
    run.flush()
    found = find_series(load_series(run, measure=measure), measure, **labels)
    assert len(found) == 1, f"{measure}{labels}: {len(found)} series"
    return found[0].values


def measured(run: RunDir, measure: str, **labels: str) -> np.ndarray:
    """The values of :func:`series_values` without its gaps (NaN: a tick the box was too loaded to read is a gap
    of every series the last good tick read)."""
    values = series_values(run, measure, **labels)
    return values[~np.isnan(values)]


def grew(values: np.ndarray, by: float) -> bool:
    """Whether ``values`` (as written so far) rose by at least ``by`` from the first to the last."""
    return len(values) > 1 and values[-1] - values[0] >= by


def good_samples(sidecar: Sidecar, source: str) -> int:
    return next(s.samples_total for s in sidecar.collector.statuses() if s.name == source)


def test_leak_grows_the_stub_rss_twin_stays_flat_counters_match(triton_server: EmbeddedServer,
                                                                tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    target = ServerTarget(pid=triton_server.pid, metrics_url=triton_server.metrics_url)
    options = SidecarOptions(interval_s=0.1, port=None, uss_every_s=1.0, sources=SOURCE_NAMES)  # all, model_stats too
    with Sidecar(target, run, options) as sidecar:
        wait_for(lambda: good_samples(sidecar, "process") >= 3 and good_samples(sidecar, "triton_metrics") >= 3,
                 60, "first good samples")
        jobs: list[tuple[str, np.ndarray, dict[str, Any]]] = [
            (m, np.ones((1, 16), np.float32), {}) for m in ("leak_host", "leak_host_healthy") for _ in range(N)]
        results = infer_all(triton_server.http_url, jobs, concurrency=4)
        assert not [r for r in results if isinstance(r, Exception)]

        def counted() -> bool:  # a sample taken after the last response
            ok = [measured(run, "nv_inference_request_success", model=m) for m in ("leak_host",
                                                                                    "leak_host_healthy")]
            return all(grew(v, N) for v in ok)

        wait_for(counted, 60, "the Triton counters to show the traffic")
        wait_for(lambda: grew(measured(run, "process_rss_bytes", instance="leak_host_0_0"), 0.8 * N * MIB),
                 60, "the leaking stub's RSS to grow")
    leak = measured(run, "process_rss_bytes", instance="leak_host_0_0")
    twin = measured(run, "process_rss_bytes", instance="leak_host_healthy_0_0")
    assert 0.8 * N * MIB <= leak[-1] - leak[0] <= 1.5 * N * MIB
    assert abs(twin[-1] - twin[0]) < 0.2 * N * MIB
    for model in ("leak_host", "leak_host_healthy"):  # raw counters: the delta over the run is the traffic
        ok = measured(run, "nv_inference_request_success", model=model)
        inferences = measured(run, "nv_inference_count", model=model)
        assert ok[-1] - ok[0] == N and inferences[-1] - inferences[0] == N
        stats = measured(run, "model_inference_count", model=model)  # v2/models/stats agrees
        assert stats[-1] - stats[0] == N
        failed = find_series(load_series(run), "nv_inference_request_failure", model=model)
        assert failed and all(v[-1] == v[0] for s in failed for v in [s.values[~np.isnan(s.values)]])
    uss = measured(run, "process_uss_bytes", instance="leak_host_0_0")
    assert uss.size and uss.max() > 0
    declared = {r["measure"] for r in run.read(SERIES_FILE)}
    assert declared <= set(MEASURES), f"sampled but not registered: {declared - set(MEASURES)}"
    assert {"process_rss_bytes", "nv_inference_count", "shm_allocated_bytes"} <= declared


def test_killed_server_is_a_gap_and_sampling_resumes_on_restart(triton_server_factory: ServerFactory,
                                                                 tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", ["probe"])
    first = triton_server_factory(model_repository=repo)
    ports = {"http_port": first.http_port, "grpc_port": first.grpc_port, "metrics_port": first.metrics_port}
    run = RunDir(tmp_path / "run")
    target = ServerTarget(http_url=first.http_url, metrics_url=first.metrics_url)  # the PID is found by port
    with Sidecar(target, run, SidecarOptions(interval_s=0.1, port=None, timeout_s=0.5)) as sidecar:
        wait_for(lambda: good_samples(sidecar, "process") >= 3 and good_samples(sidecar, "triton_metrics") >= 3,
                 60, "samples from the first server")
        first_pid = first.pid
        first.stop()
        col = sidecar.collector
        wait_for(lambda: all(not col.latest()[s].ok for s in ("process", "triton_metrics")), 30,
                 "gaps after the kill")
        wait_for(lambda: col.status["process"].errors_total >= 5 and col.status["triton_metrics"].errors_total >= 5,
                 30, "several gap ticks")
        assert sidecar.collector.running
        second = triton_server_factory(model_repository=repo, **ports)
        wait_for(lambda: all(col.latest()[s].ok for s in ("process", "triton_metrics")), 60,
                 "sampling to resume on the new server")
        assert second.pid != first_pid and target.server_pid() == second.pid and target.restarts == 1
    rows = [r for r in run.read(SAMPLES_FILE) if r["source"] in ("process", "triton_metrics")]
    gaps = [r for r in rows if not r["ok"]]
    assert gaps and all(r["error"] for r in gaps)
    assert all(v is None for r in gaps for v in r["values"].values())  # NaN, never 0
    server_rss = {s.labels["pid"]: s.values for s in find_series(load_series(run), "process_rss_bytes",
                                                                  role="server")}
    assert set(server_rss) == {str(first_pid), str(second.pid)}
    assert np.isnan(server_rss[str(first_pid)]).any()  # the gap is in the series
    assert np.nanmin(server_rss[str(second.pid)]) > 0
    pool = series_values(run, "nv_pinned_memory_pool_total_bytes")  # server-wide: present on both servers
    assert np.isnan(pool).any() and np.isfinite(pool[-1])  # gap, then values again (a per-interval gauge)


def test_http_json_and_prometheus_agree(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    target = ServerTarget(pid=triton_server.pid, metrics_url=triton_server.metrics_url)
    with Sidecar(target, RunDir(tmp_path), SidecarOptions(interval_s=0.5, port=0)) as sidecar:
        assert sidecar.url is not None and sidecar.url.startswith("http://127.0.0.1:")
        wait_for(lambda: good_samples(sidecar, "process") >= 2, 60, "samples")

        def snapshot() -> tuple[dict[str, Any], dict[tuple[str, tuple[tuple[str, str], ...]], float]] | None:
            latest = get_json(f"{sidecar.url}/api/latest")
            text = urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=10).read().decode()
            again = get_json(f"{sidecar.url}/api/latest")
            seqs = {k: v["seq"] for k, v in latest["sources"].items()}
            if seqs != {k: v["seq"] for k, v in again["sources"].items()}:
                return None  # a sample landed between the two reads: try again
            prom = {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for fam in text_string_to_metric_families(text) for s in fam.samples}
            return latest, prom

        latest, prom = wait_for(snapshot, 30, "a quiet moment between two samples")
        status = get_json(f"{sidecar.url}/api/status")
        samples = get_json(f"{sidecar.url}/api/samples?after=0")
    status_seq = {k: v["seq"] for k, v in latest["sources"].items()}
    for source, seq in status_seq.items():
        assert prom[("rmt_source_last_seq", (("source", source),))] == seq
    checked = 0
    for point in latest["sources"]["process"]["points"]:
        if point["measure"] == "process_rss_bytes":
            names = sorted(set(point["labels"]) | {"instance", "model", "name", "pid", "role"})
            key = ("rmt_process_rss_bytes", tuple((n, point["labels"].get(n, "")) for n in names))
            assert prom[key] == point["value"]
            checked += 1
    assert checked == len(triton_server.processes())
    for src in status["sources"]:
        assert prom[("rmt_samples_total", (("source", src["name"]),))] >= 0
    assert ("rmt_source_errors_total", (("source", "process"),)) in prom
    assert {"rmt_gpu_memory_used_bytes", "rmt_gpu_process_memory_bytes"}.isdisjoint({k[0] for k in prom})  # no GPU
    assert samples["samples"] and samples["series"] and samples["last_seq"] >= max(status_seq.values())


class _BadMetrics(BaseHTTPRequestHandler):
    """A metrics endpoint that misbehaves: ``/garbage`` (200, not Prometheus), ``/empty``, anything else 404."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = {"/garbage": b"<html>\x00not metrics{{{</html>\n", "/empty": b"# nothing here\n"}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture
def bad_endpoint() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _BadMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path, reason", [("/garbage", "malformed"), ("/empty", "no Triton metrics"),
                                          ("/metrics", "HTTP 404"), (None, "failed")])
def test_bad_metrics_endpoints_are_gaps_not_crashes(bad_endpoint: str, path: str | None, reason: str,
                                                    tmp_path: Path) -> None:
    url = f"{bad_endpoint}{path}" if path else "http://127.0.0.1:9/metrics"  # port 9 (discard): refused
    run = RunDir(tmp_path)
    options = SidecarOptions(interval_s=0.05, port=None, sources=["triton_metrics"], timeout_s=0.5)
    with Sidecar(ServerTarget(metrics_url=url), run, options) as sidecar:
        wait_for(lambda: sidecar.collector.status["triton_metrics"].errors_total >= 3, 20, "gaps")
        assert sidecar.collector.running
    st = sidecar.collector.status["triton_metrics"]
    assert st.samples_total == 0 and reason in st.last_error
    rows = list(run.read(SAMPLES_FILE))
    assert rows and all(not r["ok"] and reason in r["error"] for r in rows)
