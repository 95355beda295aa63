"""The GPU zoo on a real GPU: device-memory defects seen per process by NVML, twins flat. Skipped without a GPU.

Run on the lent H100 (see docs/gpu-validation.md); CI has no GPU and skips this module.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from rmt.core.resources import GPU_REPOSITORY
from rmt.server import EmbeddedServer, ServerOptions
from tests.zoo_client import infer, nvml_gpu_count

pynvml = pytest.importorskip("pynvml")
MIB = 1024 * 1024
SMALL = np.ones((1, 16), dtype=np.float32)



pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(nvml_gpu_count() == 0, reason="needs an NVIDIA GPU (NVML finds none)")]


@pytest.fixture(scope="module")
def gpu_server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer(ServerOptions(model_repository=GPU_REPOSITORY)) as server:
        yield server


def process_gpu_bytes(pid: int) -> int:
    """Device memory NVML attributes to ``pid`` on GPU 0 (0 when the process holds none)."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == pid:
            return int(proc.usedGpuMemory or 0)
    return 0


def growth(server: EmbeddedServer, client: httpclient.InferenceServerClient, model: str, n: int) -> int:
    (stub,) = [p.pid for p in server.processes() if p.model == model]
    for _ in range(3):  # CUDA context and allocator warm-up
        infer(client, model, SMALL)
    before = process_gpu_bytes(stub)
    assert before > 0, f"NVML lists the {model} stub as a GPU process"
    for _ in range(n):
        infer(client, model, SMALL)
    return process_gpu_bytes(stub) - before


def test_leak_gpu_grows_per_process_and_twin_is_flat(gpu_server: EmbeddedServer) -> None:
    client = httpclient.InferenceServerClient(gpu_server.http_url, network_timeout=120)
    n = 40
    leak = growth(gpu_server, client, "leak_gpu", n)
    healthy = growth(gpu_server, client, "leak_gpu_healthy", n)
    client.close()
    assert 0.9 * n * 16 * MIB <= leak <= 1.3 * n * 16 * MIB, leak / MIB
    assert abs(healthy) <= 32 * MIB, healthy / MIB


def test_pool_grow_gpu_grows_and_twin_is_flat(gpu_server: EmbeddedServer) -> None:
    client = httpclient.InferenceServerClient(gpu_server.http_url, network_timeout=120)
    n = 40
    grow = growth(gpu_server, client, "pool_grow_gpu", n)
    healthy = growth(gpu_server, client, "pool_grow_gpu_healthy", n)
    stats = infer(client, "pool_grow_gpu", SMALL).as_numpy("POOL_STATS")[0]
    client.close()
    assert stats[1] == 0, "the pool's own accounting says nothing is in use"
    assert 0.9 * n * 16 * MIB <= grow <= 1.3 * n * 16 * MIB, grow / MIB
    assert abs(healthy) <= 32 * MIB, healthy / MIB


def test_probe_gpu_runs_on_device_0(gpu_server: EmbeddedServer) -> None:
    client = httpclient.InferenceServerClient(gpu_server.http_url)
    result = infer(client, "probe_gpu", SMALL * 3)
    client.close()
    assert np.array_equal(result.as_numpy("OUTPUT0"), SMALL * 3)
    trace = result.as_numpy("TRACE")[0]
    assert trace[5] == 0 and trace[4] - trace[3] >= 2_000_000
