"""Warmup coverage lint, shape_warmup and graph_replay on synthetic data, and the graph zoo twins on CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rmt.check.data import RunInputs, StreamWindows
from rmt.check.latency import histogram_of
from rmt.check.shape_checks import GraphReplayCheck, ShapeWarmupCheck, graph_executions
from rmt.check.spec import build_checks, parse_spec
from rmt.check.warmup_coverage import coverage_findings, coverage_repository, load_scenario_file
from rmt.cli import main
from rmt.core.errors import ConfigError
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import GPU_REPOSITORY, ZOO_REPOSITORY
from tests.test_gpu_warmup import assert_gap_vs_twin, graph_run

SCENARIO: dict[str, Any] = {"traffic": {"patterns": {"b1": {"shape": [16]}, "b4": {"shape": [16], "batch_size": 4},
                                     "wide": {"shape": {"choice": [[16], [32]]}, "batch_size": 2},
                                     "drawn": {"shape": {"uniform": [1, 64]}, "batch_size": 3}},
                        "streams": [{"model": m, "pattern": p} for m in ("warmup_shapes", "warmup_shapes_healthy")
                                    for p in ("b1", "b4")]}}
HEAD = ('backend: "python"\nmax_batch_size: 8\ninput [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]\n')


def _sample(b: int, d: int = 16) -> str:
    return (f'{{ name: "s{b}_{d}" batch_size: {b} inputs {{ key: "INPUT0" value {{ data_type: TYPE_FP32 '
            f"dims: [ {d} ] zero_data: true }} }} }}")


def _config(tmp_path: Path, body: str) -> object:
    path = tmp_path / "config.pbtxt"
    path.write_text(HEAD + body)
    return load_config_pbtxt(path)


def _scenario(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data))
    return path


# -- static coverage lint ------------------------------------------------------------------------------------------
def test_lint_flags_the_graph_gap_and_passes_its_twin() -> None:
    found = coverage_repository(ZOO_REPOSITORY)
    assert [(f.model, f.problem.split(" (")[0]) for f in found] == [("graph_gap", "batch 4 x INPUT0 [16]")]
    assert "graph_spec" in found[0].problem and 'batch_size: 4' in found[0].fix
    (gpu,) = coverage_repository(GPU_REPOSITORY)
    assert gpu.model == "graph_gap_gpu"


def test_lint_scenario_batch4_uncovered_for_batch1_warmup_twin_covered(tmp_path: Path) -> None:
    scenario = load_scenario_file(_scenario(tmp_path, SCENARIO))
    found = [f for f in coverage_repository(ZOO_REPOSITORY, scenario) if f.model.startswith("warmup_shapes")]
    assert [(f.model, f.problem.split(" (")[0]) for f in found] == [("warmup_shapes", "batch 4 x INPUT0 [16]")]
    assert "scenario pattern 'b4'" in found[0].problem


def test_lint_batcher_sizes_choice_shapes_and_drawn_sizes(tmp_path: Path) -> None:
    config = _config(tmp_path, "dynamic_batching { preferred_batch_size: [ 4 ] }\nmodel_warmup [ " + _sample(1)
                     + ", " + _sample(2, 16) + " ]")
    problems = [f.problem.split(" (")[0] for f in coverage_findings("m", config)]
    assert problems == ["batch 4", "batch 8"]  # preferred_batch_size, max_batch_size; any dims
    scenario = load_scenario_file(_scenario(tmp_path, {"traffic": {**SCENARIO["traffic"], "streams": [
        {"model": "m", "pattern": "wide"}, {"model": "m", "pattern": "drawn"}]}}))
    problems = [f.problem.split(" (")[0] for f in coverage_findings("m", config, scenario)]
    assert problems == ["batch 2 x INPUT0 [32]", "batch 3", "batch 4", "batch 8"]  # [16] at batch 2 is warmed
    warmed = _config(tmp_path, "dynamic_batching { preferred_batch_size: [ 4 ] }\nmodel_warmup [ " + ", ".join(
        _sample(b, d) for b, d in ((2, 16), (2, 32), (3, 1), (4, 16), (8, 16))) + " ]")
    assert coverage_findings("m", warmed, scenario) == []


def test_lint_graphs_without_warmup_and_models_without_warmup(tmp_path: Path) -> None:
    graphs = _config(tmp_path, 'optimization { cuda { graphs: true graph_spec [ { batch_size: 2 input { key: '
                               '"INPUT0" value { dim: [ 8 ] } } } ] } }')
    (f,) = coverage_findings("g", graphs)
    assert f.problem.startswith("batch 2 x INPUT0 [8] (graph_spec)") and "warmed: none" in f.problem
    assert coverage_findings("plain", _config(tmp_path, "dynamic_batching { }")) == []


def test_cli_lint_coverage_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(ZOO_REPOSITORY)]) == 0  # the sample lint alone: the zoo's samples are valid
    assert main(["lint", str(ZOO_REPOSITORY), "--coverage"]) == 3
    assert main(["lint", str(ZOO_REPOSITORY), "--scenario", str(_scenario(tmp_path, SCENARIO))]) == 3
    out = capsys.readouterr().out
    assert "warmup_shapes: warmup coverage: batch 4 x INPUT0 [16] (scenario pattern 'b4')" in out
    assert main(["lint", str(ZOO_REPOSITORY), "--scenario", str(tmp_path / "missing.json")]) == 2
    bad = _scenario(tmp_path, {"traffic": {"streams": []}})
    assert main(["lint", str(ZOO_REPOSITORY), "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("rmt: error: ") for line in err)
    with pytest.raises(ConfigError):
        load_scenario_file(tmp_path / "missing.json")


# -- shape_warmup on synthetic windows -------------------------------------------------------------------------------
def _windows(model: str, pattern: str, first_us: float, p50_us: float) -> StreamWindows:
    rng = np.random.default_rng(0)
    t = np.arange(10.0)
    ones = np.ones(10)
    return StreamWindows(f"{model}/p0/{pattern}", model, t, ones * 100, ones * 100, ones * 0, ones * 0, None,
                         histogram_of(rng.normal(p50_us, p50_us * 0.05, 500).clip(1)), np.array([first_us]),
                         pattern=pattern)


def test_shape_warmup_fails_the_cold_pattern_passes_warm_ones() -> None:
    run = RunInputs(windows=[_windows("m", "b1", 900, 500), _windows("m", "b4", 600_000, 700),
                             _windows("m", "big", 60_000, 30_000), _windows("m", "hiccup", 20_000, 300)],
                    patterns={"b4": "shape [16], batch_size 4"})
    verdicts = {v.subject: v for v in ShapeWarmupCheck().evaluate(run)}
    assert verdicts["m b4"].status == "fail" and "not warmed" in verdicts["m b4"].explanation
    assert "batch_size 4" in verdicts["m b4"].explanation
    assert verdicts["m b1"].status == "pass"
    assert verdicts["m big"].status == "pass"  # 2x its own p50: a large shape is slow, not cold
    assert verdicts["m hiccup"].status == "pass"  # 66x but only 20 ms over: below min_excess
    strict = {v.subject: v for v in build_checks(parse_spec("only = shape_warmup, shape_warmup.min_excess = 1ms"))[0]
              .evaluate(run)}
    assert strict["m hiccup"].status == "fail"
    (skip,) = ShapeWarmupCheck().run(RunInputs())
    assert skip.status == "skip"
    (required,) = ShapeWarmupCheck(required=True).run(RunInputs())
    assert required.status == "fail"


# -- graph_replay on log lines ---------------------------------------------------------------------------------------
def _line(model: str, exec_index: int, shape: str, mode: str, warmup: int, configured: int = 1) -> str:
    return (f'I1125 18:11:55.401561 16125 model.py:277] "rmt_graph model={model} instance=0 exec={exec_index} '
            f'shape={shape} configured={configured} mode={mode} warmup={warmup} graphs=host"')


def test_graph_replay_counts_post_warmup_eager_executions_of_configured_shapes() -> None:
    lines = [_line("gap", 0, "1x16", "capture", 1), _line("gap", 1, "1x16", "replay", 0),
             _line("gap", 2, "4x16", "eager", 0), _line("gap", 3, "4x16", "eager", 0),
             _line("gap", 4, "3x16", "eager", 0, configured=0),  # not a graph shape: eager is right
             _line("ok", 0, "4x16", "capture", 1), _line("ok", 1, "4x16", "replay", 0), "unrelated line"]
    assert len(graph_executions(lines)) == 7
    verdicts = {v.subject: v for v in GraphReplayCheck().evaluate(RunInputs(server_log=lines))}
    assert verdicts["gap"].status == "fail" and verdicts["gap"].measured == 2
    assert verdicts["gap"].evidence["eager"] == {"4x16": 2} and verdicts["gap"].evidence["captured"] == ["1x16"]
    assert verdicts["ok"].status == "pass" and verdicts["ok"].measured == 0
    assert GraphReplayCheck({"max_eager": 2}).evaluate(RunInputs(server_log=lines))[0].status == "pass"
    (skip,) = GraphReplayCheck().run(RunInputs(server_log=["no graph here"]))
    assert skip.status == "skip"


# -- the graph zoo twins on the real server (CPU: same bookkeeping, no CUDA) ---------------------------------------
def test_graph_gap_cpu_twin_replays_warmed_shapes_only(tmp_path: Path) -> None:
    result = graph_run(tmp_path, ZOO_REPOSITORY, "graph_gap", "graph_gap_healthy", requests=5)
    assert_gap_vs_twin(result, "graph_gap", "graph_gap_healthy", "host")


def test_shape_warmup_leaves_single_pattern_models_to_the_warmup_check() -> None:
    run = RunInputs(windows=[_windows("one", "b4", 600_000, 700)])
    (skip,) = ShapeWarmupCheck().evaluate(run)
    assert skip.status == "skip" and "warmup check" in skip.explanation
    (asked,) = [c for c in build_checks(parse_spec("shape_warmup = on")) if c.name == "shape_warmup"]
    assert asked.required and asked.evaluate(run)[0].status == "fail"
