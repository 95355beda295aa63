"""A decoupled GPU model under streaming + cancellation load (real Locust, gRPC ModelStreamInfer), NVML per process:
the cancellation leak grows its stub's device memory by 4 MiB per cancelled request, the twin stays flat.
Skipped without a GPU (needs torch or cupy in the venv for device memory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rmt.core.resources import GPU_REPOSITORY
from rmt.server import EmbeddedServer, ServerOptions
from tests.test_gpu_zoo import _gpu_count, process_gpu_bytes
from tests.test_users_locust import read_windows, run_locust
from tests.zoo_client import zoo_subset

MIB = 1024 * 1024
MODELS = ["stream_leak_on_cancel_gpu", "stream_leak_on_cancel_gpu_healthy"]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_gpu_count() == 0, reason="needs an NVIDIA GPU (NVML finds none)")]


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repo = zoo_subset(tmp_path_factory.mktemp("gpu-streams") / "repo", MODELS, GPU_REPOSITORY)
    with EmbeddedServer(ServerOptions(model_repository=repo)) as server:
        yield server


def test_cancelled_streams_leak_device_memory_per_process(gpu_server: EmbeddedServer, tmp_path: Path) -> None:
    stubs = {p.model: p.pid for p in gpu_server.processes() if p.model in MODELS}
    scenario = {"traffic": {
        "mode": "closed",
        "patterns": {"warm": {"shape": [16], "stream": {}}},
        "streams": [{"model": m, "pattern": "warm"} for m in MODELS]}}
    code, err = run_locust(scenario, tmp_path / "warm", gpu_server.grpc_url, "GrpcTraffic", users=2, run_time_s=3)
    assert code == 0, err[-2000:]  # CUDA contexts and allocators warmed before the baseline
    before = {m: process_gpu_bytes(pid) for m, pid in stubs.items()}
    assert all(before.values()), f"NVML lists every stub as a GPU process: {before}"
    scenario["traffic"]["patterns"] = {"mixed": {"shape": [16], "stream": {
        "cancel_share": 0.5, "cancel_after_responses": 2, "responses": 8}}}
    scenario["traffic"]["streams"] = [{"model": m, "pattern": "mixed"} for m in MODELS]
    code, err = run_locust(scenario, tmp_path / "load", gpu_server.grpc_url, "GrpcTraffic", users=8, run_time_s=8,
                           workers=2)
    assert code == 0, err[-2000:]
    after = {m: process_gpu_bytes(pid) for m, pid in stubs.items()}
    rows = read_windows(tmp_path / "load")
    cancelled = {m: sum(r["cancelled"] for r in rows if r["model"] == m) for m in MODELS}
    completed = {m: sum(r["succeeded"] for r in rows if r["model"] == m) for m in MODELS}
    assert min(cancelled.values()) > 50 and min(completed.values()) > 50, (cancelled, completed)
    leak = after[MODELS[0]] - before[MODELS[0]]
    # 4 MiB per cancelled request (NVML rounds per-process usage to allocator chunks: within 10 %).
    assert leak == pytest.approx(cancelled[MODELS[0]] * 4 * MIB, rel=0.1), (leak / MIB, cancelled)
    assert after[MODELS[1]] - before[MODELS[1]] < 32 * MIB, (after, before)
    assert sum(r["completed_responses"] for r in rows) == 8 * sum(completed.values())
