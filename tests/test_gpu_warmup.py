"""CUDA-graph warmup on a real GPU: graphs captured per warmed shape, replayed after READY; a skipped shape is eager.

``rmt/zoo/gpu/graph_gap_gpu`` captures a ``torch.cuda.CUDAGraph`` (``y = 2x + 1``) per ``graph_spec`` shape during its
warmup, which skips batch 4; ``graph_gap_gpu_healthy`` warms batch 1, 2 and 4. Every request's ``GRAPH`` output says
whether it replayed a graph, and its checksum proves the replay computed on the request's own data. The run is then
judged by the ``graph_replay`` check from the server log. Skipped without a GPU; :func:`graph_run` also runs on the
CPU twins (``tests/test_warmup_coverage.py``) so CI exercises the same code.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from rmt.check.data import RunInputs
from rmt.check.shape_checks import GraphReplayCheck
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import GPU_REPOSITORY
from rmt.server import EmbeddedServer, ServerOptions
from tests.zoo_client import nvml_gpu_count, zoo_subset

pynvml = pytest.importorskip("pynvml")
BATCHES = (1, 2, 4)



def graph_run(tmp_path: Path, source: Path, gap: str, healthy: str, requests: int = 10) -> dict[str, Any]:
    """Serve ``gap`` and ``healthy`` from ``source``, send ``requests`` of each batch size to each, check every
    checksum; per model: modes per batch, p50 ms per batch, graph_replay verdict, and the log's ``graphs=`` kind."""
    repo = zoo_subset(tmp_path / "repo", [gap, healthy], source=source)
    log = tmp_path / "tritonserver.log"
    out: dict[str, Any] = {}
    with EmbeddedServer(ServerOptions(model_repository=repo, log_path=log)) as server:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
        for model in (gap, healthy):
            modes: dict[int, list[int]] = defaultdict(list)
            ms: dict[int, list[float]] = defaultdict(list)
            for k in range(requests):
                for b in BATCHES:
                    x = (np.arange(b * 16, dtype=np.float32).reshape(b, 16) + k).astype(np.float32)
                    inp = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
                    inp.set_data_from_numpy(x)
                    t0 = time.perf_counter()
                    reply = client.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("GRAPH")])
                    ms[b].append((time.perf_counter() - t0) * 1000)
                    graph = reply.as_numpy("GRAPH")
                    assert graph.shape == (b, 4)
                    assert int(graph[0, 3]) == round(float((x.astype(np.float64) * 2 + 1).sum())), (model, b, graph)
                    modes[b].append(int(graph[0, 0]))
            out[model] = {"modes": dict(modes), "p50_ms": {b: float(np.median(v)) for b, v in ms.items()}}
    lines = log.read_text(errors="replace").splitlines()
    configs = {m: load_config_pbtxt(repo / m / "config.pbtxt") for m in (gap, healthy)}
    verdicts = {v.subject: v for v in GraphReplayCheck().evaluate(RunInputs(server_log=lines, configs=configs))}
    for model in (gap, healthy):
        out[model]["verdict"] = verdicts[model]
        out[model]["kinds"] = sorted({ln.rsplit("graphs=", 1)[1].strip('" ') for ln in lines
                                      if f"rmt_graph model={model} " in ln and "graphs=" in ln})
    return out


def assert_gap_vs_twin(result: dict[str, Any], gap: str, healthy: str, kind: str) -> None:
    """The planted gap: batch 4 eager (FAIL), batch 1/2 replayed; the twin replays every batch (PASS)."""
    g, h = result[gap], result[healthy]
    assert g["modes"][4] == [0] * len(g["modes"][4]) and set(g["modes"][1]) == set(g["modes"][2]) == {1}
    assert all(set(h["modes"][b]) == {1} for b in BATCHES)
    assert g["verdict"].status == "fail" and list(g["verdict"].evidence["eager"]) == ["4x16"], g["verdict"]
    assert h["verdict"].status == "pass" and h["verdict"].measured == 0, h["verdict"].explanation
    assert g["kinds"] == [kind] and h["kinds"] == [kind]


@pytest.mark.gpu
@pytest.mark.skipif(nvml_gpu_count() == 0, reason="needs an NVIDIA GPU (NVML finds none)")
def test_cuda_graphs_replayed_after_warmup_and_skipped_shape_runs_eagerly(tmp_path: Path) -> None:
    result = graph_run(tmp_path, GPU_REPOSITORY, "graph_gap_gpu", "graph_gap_gpu_healthy", requests=20)
    for model in ("graph_gap_gpu", "graph_gap_gpu_healthy"):
        v = result[model]["verdict"]
        print(f"{model}: p50 ms by batch {result[model]['p50_ms']}; {v.status}: {v.explanation}")
    assert_gap_vs_twin(result, "graph_gap_gpu", "graph_gap_gpu_healthy", "cuda")
