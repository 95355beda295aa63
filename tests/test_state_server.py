"""Sequences and shared-memory I/O on a real tritonserver, driven by real Locust processes over gRPC and HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from rmt.check.inputs import load_inputs
from rmt.check.path_checks import SequenceSlotsCheck, ShmRegionsCheck
from rmt.core.rundir import RunDir
from rmt.server import EmbeddedServer, ServerOptions
from tests.zoo_client import model_stub_rss, run_state_locust, wait_for, zoo_subset

MIB = 2**20

SCENARIO = {
    "mode": "closed", "wait_s": [0.002, 0.004],
    "patterns": {
        "seq_u": {"shape": [16], "sequence": {"length": {"uniform": [2, 4]}, "abandon": 0.5, "in_flight": 2,
                                              "id": "uint64", "probe_after_s": 0.3}},
        "seq_s": {"shape": [16], "sequence": {"length": 3, "abandon": 0.5, "in_flight": 2, "id": "string",
                                              "probe_after_s": 0.3}},
        "pu": {"shape": [64], "shm": {"lifecycle": "per_user", "outputs": True}},
        "pr": {"shape": {"loguniform": [16, 1024]}, "shm": {"lifecycle": "per_request", "outputs": True}},
        "once": {"shape": [64], "shm": {"lifecycle": "once"}},
        "refused": {"shape": [64], "shm": {"lifecycle": "per_request", "outputs": True, "output_bytes": 4}},
    },
    "streams": [{"model": "seq_state_healthy", "pattern": "seq_u", "users": 1},
                {"model": "seq_state_healthy", "pattern": "seq_s", "users": 1},
                {"model": "probe", "pattern": "pu", "users": 1}, {"model": "probe", "pattern": "pr", "users": 1},
                {"model": "probe", "pattern": "once", "users": 1}, {"model": "probe", "pattern": "refused",
                                                                   "users": 1}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repo = zoo_subset(tmp_path_factory.mktemp("repo"), ["probe", "seq_state", "seq_state_healthy"])
    with EmbeddedServer(ServerOptions(model_repository=repo)) as srv:
        yield srv


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequences_and_shm_over_each_protocol(server: EmbeddedServer, tmp_path: Path, protocol: str) -> None:
    user, host = ("StateGrpc", server.grpc_url) if protocol == "grpc" else ("StateHttp", server.http_url)
    code, err = run_state_locust(user, host, tmp_path / "run", SCENARIO, users=6, seconds=6, timeout_s=90)
    assert "Traceback" not in err, err[-2000:]
    rd = RunDir(tmp_path / "run", create=False)
    sequences = list(rd.read("sequences.jsonl"))
    outcomes = Counter((r["outcome"], r["probe"], r["id_kind"]) for r in sequences)
    for kind in ("uint64", "string"):
        assert outcomes[("ended", "", kind)] >= 10, outcomes
        assert outcomes[("abandoned", "reclaimed", kind)] >= 5, outcomes
    # A step can only fail when its sequence idled past 300 ms: at start-up, while grpcio's first channels block the
    # process, a few may; in steady state none does.
    failed = [r for r in sequences if r["outcome"] == "failed"]
    assert len(failed) <= 0.03 * len(sequences), outcomes
    shm = list(rd.read("shm.jsonl"))
    events = Counter(r["event"] for r in shm)
    assert events["create"] == events["destroy"] == events["register"] == events["unregister"] > 20, events
    status = [r for r in shm if r["event"] == "status"]
    assert len(status) == 1 and status[0]["registered_left"] == 0 and status[0]["files_left"] == 0, status
    refused = [r for r in rd.read("failures.jsonl") if r["model"] == "probe"]
    assert refused and all("should be at least" in r["message"] for r in refused)  # Triton refused: still released
    assert not list(Path("/dev/shm").glob(f"rmt_{status[0]['pid']}_*"))
    inputs = load_inputs(rd)
    assert [v.status for v in SequenceSlotsCheck().evaluate(inputs)] == ["pass"]
    assert [v.status for v in ShmRegionsCheck().evaluate(inputs)] == ["pass"]
    assert code == 0, err[-2000:]


def _sequence_step(client: Any, model: str, sid: int, *, start: bool) -> bool:
    """One step of sequence ``sid``; False when Triton refused it as an unknown (reclaimed) sequence."""
    tensor = httpclient.InferInput("INPUT0", [1, 16], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
    try:
        client.infer(model, [tensor], sequence_id=sid, sequence_start=start)
    except InferenceServerException as exc:
        if "must specify the START flag" in str(exc):
            return False
        raise
    return True


def _abandon_round(client: Any, server: EmbeddedServer, model: str, base: int) -> int:
    """60 abandoned sequences of 256 KiB each (START, one step, no END), waited until Triton reclaimed them, then one
    more request (the model sweeps on its next execution); the stub's RSS growth over the round."""
    before = model_stub_rss(server, model)
    for sid in range(base, base + 60):
        _sequence_step(client, model, sid, start=True)
        _sequence_step(client, model, sid, start=False)
    probes = iter(range(base, base + 60))  # each probe of a still-live sequence only keeps that one alive

    def reclaimed() -> bool:
        return not _sequence_step(client, model, next(probes), start=False)

    wait_for(reclaimed, 20, f"Triton to reclaim {model}'s idle sequences")
    _sequence_step(client, model, base + 500, start=True)
    return model_stub_rss(server, model) - before


def test_seq_state_keeps_abandoned_state_and_its_twin_reclaims_it(server: EmbeddedServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        # Round 1 fills each stub; freed state stays in the allocator's heap, so round 2 tells: the twin reuses
        # what it released, the defect keeps all of it again.
        second = {}
        for base, model in ((10_000, "seq_state"), (20_000, "seq_state_healthy")):
            _abandon_round(client, server, model, base)
            second[model] = _abandon_round(client, server, model, base + 1000)
        assert second["seq_state"] > 12 * MIB, second  # 60 × 256 KiB = 15 MiB kept again
        assert second["seq_state_healthy"] < min(8 * MIB, second["seq_state"] / 3), second
    finally:
        client.close()
