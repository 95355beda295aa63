"""CUDA shared-memory I/O on one GPU: real Locust load over gRPC and HTTP sends ``probe_gpu``'s inputs and outputs
through CUDA regions (``"shm": {"kind": "cuda"}``, lifecycles ``per_user`` and ``per_request``); every request must
succeed, the server must count exactly the requests sent, and every region rmt created must be unregistered and freed
(``shm_regions`` PASS, the server's CUDA shared-memory status free of rmt's regions). A direct round trip proves the
bytes: an input written by rmt's registry comes back from the echo model in a second CUDA region.
Skipped without an NVIDIA GPU (CI has none); needs cuda-python (``.carry/wheels`` on the GPU machine):

    python3 -m pytest -p rmt.pytest_plugin -q -rA -m gpu tests/test_gpu_shm.py
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from rmt.check.base import PASS
from rmt.check.data import RunInputs
from rmt.check.inputs import load_inputs
from rmt.check.path_checks import ShmRegionsCheck
from rmt.core.resources import GPU_REPOSITORY
from rmt.core.rundir import RunDir
from rmt.load.shmio import ShmRegistry, http_control
from rmt.server import EmbeddedServer, ServerOptions
from tests.zoo_client import nvml_gpu_count, run_state_locust, zoo_subset

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(nvml_gpu_count() == 0, reason="needs an NVIDIA GPU (NVML finds none)")]
MODEL = "probe_gpu"
CUDA = {"kind": "cuda", "device": 0, "outputs": True}
SCENARIO = {
    "mode": "closed", "wait_s": [0.002, 0.004],
    "patterns": {
        "pu": {"shape": [64], "shm": {**CUDA, "lifecycle": "per_user"}},
        "pr": {"shape": {"loguniform": [16, 1024]}, "shm": {**CUDA, "lifecycle": "per_request"}},
    },
    "streams": [{"model": MODEL, "pattern": "pu", "users": 2}, {"model": MODEL, "pattern": "pr", "users": 2}],
}
USERS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repo = zoo_subset(tmp_path_factory.mktemp("repo"), [MODEL], source=GPU_REPOSITORY)
    with EmbeddedServer(ServerOptions(model_repository=repo)) as srv:
        yield srv


def successes(client: Any) -> int:
    """The server's count of successful requests of ``probe_gpu`` (model statistics, every version)."""
    stats = client.get_inference_statistics(MODEL)
    return sum(int(s["inference_stats"]["success"]["count"]) for s in stats["model_stats"])


def rmt_regions(client: Any) -> list[str]:
    """Names of the CUDA regions under rmt's prefix the server has registered."""
    return [str(r["name"]) for r in client.get_cuda_shared_memory_status() if str(r["name"]).startswith("rmt_")]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cuda_shm_load_succeeds_is_counted_and_leaves_no_region(server: EmbeddedServer, tmp_path: Path,
                                                                 protocol: str) -> None:
    user, host = ("StateGrpc", server.grpc_url) if protocol == "grpc" else ("StateHttp", server.http_url)
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
    try:
        before = successes(client)
        code, err = run_state_locust(user, host, tmp_path / "run", SCENARIO, users=USERS, seconds=4, timeout_s=60)
        assert "Traceback" not in err and code == 0, err[-3000:]
        served = successes(client) - before
        left_on_server = rmt_regions(client)
    finally:
        client.close()
    rd = RunDir(tmp_path / "run", create=False)
    sent, succeeded, failed = Counter[str](), Counter[str](), Counter[str]()
    for w in rd.read("windows.jsonl"):
        sent[w["pattern"]] += int(w["sent"])
        succeeded[w["pattern"]] += int(w["succeeded"])
        failed[w["pattern"]] += sum(int(w[k]) for k in ("failed_timeout", "failed_rejected", "failed_server",
                                                         "failed_client"))
    assert succeeded == sent and sum(failed.values()) == 0, (sent, succeeded, failed)  # all answered, no error
    assert not list(rd.read("failures.jsonl"))
    assert sent["pu"] >= 50 and sent["pr"] >= 50, sent  # both lifecycles carried real load
    assert served == sum(sent.values()), (served, sent)  # the server counted every request rmt sent, no more

    shm = list(rd.read("shm.jsonl"))
    events = Counter(r["event"] for r in shm)
    print(f"{protocol}: sent {dict(sent)}, served {served}, region events {dict(events)}")
    assert {r["kind"] for r in shm if r["event"] != "status"} == {"cuda"}, shm[:5]
    # One region per per_request request, one per per_user user; each registered, unregistered and freed.
    assert sent["pr"] < events["create"] <= sent["pr"] + USERS, (events, sent)
    assert events["create"] == events["register"] == events["unregister"] == events["destroy"], events
    assert events["error"] == 0, [r for r in shm if r["event"] == "error"][:5]
    status = [r for r in shm if r["event"] == "status"]
    assert len(status) == 1 and status[0]["kind"] == "cuda", status
    assert status[0]["registered_left"] == 0 and status[0]["files_left"] == 0, status
    assert left_on_server == []
    verdicts = ShmRegionsCheck().evaluate(load_inputs(rd))
    assert [v.status for v in verdicts] == [PASS], [v.explanation for v in verdicts]
    assert verdicts[0].evidence["created_by_kind"] == {"cuda": events["create"]}


def test_cuda_regions_carry_the_bytes_both_ways(server: EmbeddedServer) -> None:
    from tritonclient.utils import cuda_shared_memory as cudashm

    records: list[dict[str, Any]] = []
    registry = ShmRegistry(lambda _name, rec: records.append(rec))
    registry.make_control = lambda: http_control(server.http_url)
    control = http_control(server.http_url)
    try:
        x = (np.arange(64, dtype=np.float32) * 0.5 - 3).reshape(1, 64)
        src = registry.create(x.nbytes, control, kind="cuda", device=0, contents=[x])
        dst = registry.create(x.nbytes, control, kind="cuda", device=0)
        tensor = httpclient.InferInput("INPUT0", [1, 64], "FP32")
        tensor.set_shared_memory(src.name, x.nbytes)
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)
        out.set_shared_memory(dst.name, x.nbytes)
        control.client.infer(MODEL, [tensor], outputs=[out])
        assert np.array_equal(cudashm.get_contents_as_numpy(dst.handle, np.float32, [1, 64]), x)
        assert sorted(rmt_regions(control.client)) == sorted([src.name, dst.name])
        registry.release(src)
        registry.close_all()  # releases dst, then asks the server
        assert rmt_regions(control.client) == []
    finally:
        control.close()
    assert [r["event"] for r in records].count("destroy") == 2 and records[-1]["registered_left"] == 0
    assert [v.status for v in ShmRegionsCheck().evaluate(RunInputs(shm_records=records))] == [PASS]
