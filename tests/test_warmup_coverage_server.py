"""Warmup completeness on the real tritonserver: per-shape cold start and graph replay, planted defects vs twins.

One Locust run sends batch 1/2/4 requests to ``warmup_shapes`` (warmup covers batch 1 only; each new shape costs
600 ms), ``graph_gap`` (graphs for batch 1, 2, 4 captured during warmup only; warmup skips batch 4) and their
healthy twins; the run directory (with the server log) is judged offline by ``shape_warmup`` and ``graph_replay``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rmt.check.api import evaluate
from tests.test_check_zoo import by_subject, load_run
from tests.zoo_client import zoo_subset

MODELS = ["warmup_shapes", "warmup_shapes_healthy", "graph_gap", "graph_gap_healthy"]
PATTERNS = {"b1": {"shape": [16], "data": "zeros"}, "b2": {"shape": [16], "batch_size": 2, "data": "zeros"},
            "b4": {"shape": [16], "batch_size": 4, "data": "zeros"}}
STREAMS = [{"model": m, "pattern": p} for m in MODELS for p in (("b1", "b4") if m.startswith("warmup") else
                                                                   ("b1", "b2", "b4"))]


def test_shape_warmup_and_graph_replay_fail_defects_pass_twins(triton_server_factory: Any, tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", MODELS)
    log = tmp_path / "tritonserver.log"
    server = triton_server_factory(model_repository=repo, log_path=log)
    scenario = {"traffic": {"mode": "closed", "patterns": PATTERNS, "streams": STREAMS}}
    # One closed-loop user: a request queued behind another shape's cold execution would look cold too.
    run_dir = load_run(server, tmp_path, scenario, users=1, run_time_s=8, collect=False)
    shutil.copy(log, run_dir / "tritonserver.log")
    result = evaluate(run_dir, "only = shape_warmup, graph_replay")
    shapes = by_subject(result, "shape_warmup")
    cold = shapes["warmup_shapes b4"]
    assert cold.status == "fail" and cold.evidence["excess_us"] > 400_000, cold.explanation
    for subject in ("warmup_shapes b1", "warmup_shapes_healthy b1", "warmup_shapes_healthy b4",
                    "graph_gap_healthy b4"):
        assert shapes[subject].status == "pass", shapes[subject].explanation
    graphs = by_subject(result, "graph_replay")
    gap, healthy = graphs["graph_gap"], graphs["graph_gap_healthy"]
    assert gap.status == "fail" and list(gap.evidence["eager"]) == ["4x16"], gap.explanation
    assert gap.evidence["captured"] == ["1x16", "2x16"] and gap.evidence["modes"]["1x16"].get("eager", 0) == 0
    assert healthy.status == "pass" and healthy.measured == 0, healthy.explanation
    assert healthy.evidence["captured"] == ["1x16", "2x16", "4x16"] and not healthy.evidence["unseen"]
    assert sum(healthy.evidence["modes"]["4x16"].values()) >= 5  # batch 4 really was served after warmup
