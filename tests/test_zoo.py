"""Each zoo model loads on the real server, and each planted defect is observable from outside (its twin's is not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import GPU_REPOSITORY, ZOO_REPOSITORY
from rmt.server import EmbeddedServer, ServerOptions
from tests.zoo_client import infer, infer_all, model_stub_rss, zoo_subset

MIB = 1024 * 1024
SMALL = np.ones((1, 16), dtype=np.float32)


@pytest.fixture(scope="module")
def client(triton_server: EmbeddedServer) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(triton_server.http_url, concurrency=8, network_timeout=60)
    yield c
    c.close()


def rss_growth(server: EmbeddedServer, client: httpclient.InferenceServerClient, model: str, data: np.ndarray,
               n: int, expect_error: bool = False) -> int:
    """Stub RSS growth of ``model`` over ``n`` requests, measured after 5 warm-up requests of the same kind."""
    def send() -> None:
        if expect_error:
            with pytest.raises(InferenceServerException, match="negative element"):
                infer(client, model, data)
        else:
            infer(client, model, data)

    for _ in range(5):
        send()
    before = model_stub_rss(server, model)
    for _ in range(n):
        send()
    return model_stub_rss(server, model) - before


def test_every_zoo_model_is_ready(triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    index = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
    on_disk = {p.name for p in ZOO_REPOSITORY.iterdir() if (p / "config.pbtxt").is_file()}
    assert set(index) == on_disk
    assert all(state == "READY" for state in index.values()), index


def test_gpu_variants_are_kind_gpu_and_kept_apart() -> None:
    names = sorted(p.name for p in GPU_REPOSITORY.iterdir())
    assert {"leak_gpu", "leak_gpu_healthy", "probe_gpu"} <= set(names)
    for name in names:
        config = load_config_pbtxt(GPU_REPOSITORY / name / "config.pbtxt")
        assert all(g.kind == g.KIND_GPU for g in config.instance_group), name
        assert not (ZOO_REPOSITORY / name).exists()


def test_probe_trace_is_ground_truth(triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    stub_pids = {p.pid: p.instance for p in triton_server.processes() if p.model == "probe"}
    assert len(stub_pids) == 2
    results = infer_all(triton_server.http_url, [("probe", SMALL * i, {}) for i in range(24)])
    traces = np.array([r.as_numpy("TRACE")[0] for r in results])
    for i, r in enumerate(results):
        assert np.array_equal(r.as_numpy("OUTPUT0"), SMALL * i)
    pid, idx, exec_idx, start, end, _device, cold = traces.T
    assert set(pid) == set(stub_pids), "each trace names the stub process that executed it"
    assert {str(stub_pids[p]).rsplit("_", 1)[1] for p in set(pid)} == {str(i) for i in set(idx)}
    assert (end - start >= 2_000_000).all(), "the 2 ms execute delay is inside the traced interval"
    assert not cold.any()
    for instance in set(idx):
        mine = np.sort(exec_idx[idx == instance])
        assert len(set(mine)) == len(mine), "execution indices are unique per instance"
    order = np.argsort(start)
    overlaps = (start[order][1:] < end[order][:-1]).any()
    assert overlaps, "with 8 clients the two instances execute concurrently"


def test_leak_host_grows_by_n_times_requests_and_twin_is_flat(
        triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    n = 60
    leak = rss_growth(triton_server, client, "leak_host", SMALL, n)
    healthy = rss_growth(triton_server, client, "leak_host_healthy", SMALL, n)
    assert 0.85 * n * MIB <= leak <= 1.25 * n * MIB, leak / MIB
    assert abs(healthy) < 4 * MIB, healthy / MIB


def test_leak_on_shape_leaks_only_above_threshold(
        triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    n, big = 80, np.ones((1, 4096), dtype=np.float32)
    small = rss_growth(triton_server, client, "leak_on_shape", SMALL, n)
    large = rss_growth(triton_server, client, "leak_on_shape", big, n)
    twin = rss_growth(triton_server, client, "leak_on_shape_healthy", big, n)
    assert abs(small) < 4 * MIB
    assert 0.8 * n * 256 * 1024 <= large <= 1.4 * n * 256 * 1024, large / MIB
    assert abs(twin) < 4 * MIB


def test_leak_on_error_leaks_only_on_the_error_path(
        triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    n = 80
    ok = rss_growth(triton_server, client, "leak_on_error", SMALL, n)
    bad = rss_growth(triton_server, client, "leak_on_error", -SMALL, n, expect_error=True)
    twin = rss_growth(triton_server, client, "leak_on_error_healthy", -SMALL, n, expect_error=True)
    assert abs(ok) < 4 * MIB
    assert 0.8 * n * 256 * 1024 <= bad <= 1.4 * n * 256 * 1024, bad / MIB
    assert abs(twin) < 4 * MIB


def test_pool_grow_grows_while_accounting_says_nothing_is_in_use(
        triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    n = 80
    grow = rss_growth(triton_server, client, "pool_grow", SMALL, n)
    healthy = rss_growth(triton_server, client, "pool_grow_healthy", SMALL, n)
    stats_grow = infer(client, "pool_grow", SMALL).as_numpy("POOL_STATS")[0]
    stats_ok = infer(client, "pool_grow_healthy", SMALL).as_numpy("POOL_STATS")[0]
    assert stats_grow[1] == 0 and stats_ok[1] == 0, "by the pool's own accounting nothing is in use"
    assert stats_grow[0] >= n + 6 and stats_ok[0] == 1
    assert stats_grow[2] == stats_grow[0] * 256 * 1024
    assert 0.8 * n * 256 * 1024 <= grow <= 1.4 * n * 256 * 1024, grow / MIB
    assert abs(healthy) < 4 * MIB


def test_cold_start_pays_on_first_request_and_warmed_twin_does_not(tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", ["cold_start", "cold_start_warmed"])
    with EmbeddedServer(ServerOptions(model_repository=repo)) as server:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
        first = infer(client, "cold_start", SMALL).as_numpy("TRACE")[0]
        later = [infer(client, "cold_start", SMALL).as_numpy("TRACE")[0] for _ in range(5)]
        warmed_first = infer(client, "cold_start_warmed", SMALL).as_numpy("TRACE")[0]
        client.close()
    duration_ms = lambda row: (row[4] - row[3]) / 1e6  # noqa: E731
    assert first[2] == 0 and first[6] == 1 and duration_ms(first) >= 750, "first real request pays 800 ms"
    assert max(duration_ms(r) for r in later) < 100
    assert warmed_first[2] == 1, "the warmup sample was execution 0, before READY"
    assert warmed_first[6] == 0 and duration_ms(warmed_first) < 100


def test_queue_priority_rejects_beyond_max_queue_size_but_not_level_1(
        triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    priorities = [i % 2 + 1 for i in range(60)]
    jobs = [("queue_priority", SMALL, {"priority": p}) for p in priorities]
    outcomes = infer_all(triton_server.http_url, jobs, concurrency=60)
    low = [o for p, o in zip(priorities, outcomes, strict=True) if p == 2]
    high = [o for p, o in zip(priorities, outcomes, strict=True) if p == 1]
    assert not any(isinstance(o, InferenceServerException) for o in high), "level 1 has an unbounded queue"
    assert any(isinstance(o, InferenceServerException) and "Exceeds maximum queue size" in str(o.message())
               for o in low), low


def test_rate_limit_budget_serialises_shared_resource(tmp_path: Path) -> None:
    """R1:2 and every instance needs 2: at most one rl_* execution at any instant; without the limiter, overlap."""
    repo = zoo_subset(tmp_path / "repo", ["rl_high", "rl_low"])

    def intervals(server: EmbeddedServer) -> np.ndarray:
        results = infer_all(server.http_url, [(("rl_high", "rl_low")[i % 2], SMALL, {}) for i in range(40)])
        rows = [r.as_numpy("TRACE")[0] for r in results]
        t = np.array(rows)[:, 3:5]
        return t[np.argsort(t[:, 0])]

    with EmbeddedServer(ServerOptions(model_repository=repo, rate_limit_resources=["R1:2"])) as server:
        limited = intervals(server)
    with EmbeddedServer(ServerOptions(model_repository=repo)) as server:
        free = intervals(server)
    assert not (limited[1:, 0] < np.maximum.accumulate(limited[:-1, 1])).any()
    assert (free[1:, 0] < np.maximum.accumulate(free[:-1, 1])).any()


def test_queue_priority_timeouts_reject_on_level_2_and_delay_on_level_1(triton_server: EmbeddedServer) -> None:
    """A 1 ms per-request timeout (shorter than the 10 s default, so Triton honours it) behind 20 ms executions:
    level 2 (REJECT) times out in the queue, level 1 (DELAY) is only delayed and succeeds."""
    def run(priority: int) -> list[object]:
        jobs = [("queue_priority", SMALL, {"priority": priority, "timeout": 1000}) for _ in range(12)]
        return infer_all(triton_server.http_url, jobs, concurrency=12)

    low, high = run(2), run(1)
    timed_out = [o for o in low if isinstance(o, InferenceServerException)]
    assert timed_out and all("timeout" in str(o.message()).lower() for o in timed_out), timed_out
    assert not any(isinstance(o, InferenceServerException) for o in high), high


def shm_region_bytes(server: EmbeddedServer, model: str) -> int:
    """Bytes the model's own ``/dev/shm`` creep region holds (st_blocks: pages really written)."""
    regions = list(Path("/dev/shm").glob(f"{server.shm_prefix}rmt_creep_{model}_0_*"))
    assert len(regions) == 1, regions
    return regions[0].stat().st_blocks * 512


def test_real_world_magnitudes_keep_exactly_their_bytes(
        triton_server: EmbeddedServer, client: httpclient.InferenceServerClient) -> None:
    """2 KiB/request kept page by page (no allocator headers), its twin hands them back, a bounded cache stops at
    its capacity, a GC-like sawtooth returns to its floor, and the shm pool creeps 16 bytes per request."""
    n = 500
    leak = rss_growth(triton_server, client, "leak_2k", SMALL, n)
    twin = rss_growth(triton_server, client, "leak_2k_healthy", SMALL, n)
    assert 0.9 * n * 2048 <= leak <= n * 2048 + 256 * 1024, leak
    assert twin < leak - 0.8 * n * 2048, (twin, leak)
    filled = rss_growth(triton_server, client, "bounded_cache", SMALL, 600)  # 605 requests: past its 1 MiB
    after = rss_growth(triton_server, client, "bounded_cache", SMALL, n)
    assert filled >= 0.9 * MIB and after < 128 * 1024, (filled, after)
    saw = rss_growth(triton_server, client, "gc_sawtooth", SMALL, 123)  # 128 requests in all: one full swing
    assert saw < 128 * 1024, saw
    before = shm_region_bytes(triton_server, "pool_creep")
    for _ in range(n):
        infer(client, "pool_creep", SMALL)
        infer(client, "pool_creep_healthy", SMALL)
    grown = shm_region_bytes(triton_server, "pool_creep") - before
    assert 16 * n - 4096 <= grown <= 16 * n + 4096, grown
    assert shm_region_bytes(triton_server, "pool_creep_healthy") <= 4096
