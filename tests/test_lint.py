"""``rmt lint``: warmup samples against model inputs, and the rate-limit pre-flight (offline parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmt.check.lint import lint_model, lint_repository
from rmt.check.ratelimit import Shortfall, effective_budgets, model_limits, parse_flags, preflight, repository_limits
from rmt.cli import main
from rmt.core.errors import ConfigError
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import REFUSED_REPOSITORY, ZOO_REPOSITORY

HEAD = """
backend: "python"
max_batch_size: {mbs}
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, 4 ] }},
       {{ name: "OPT" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }}]
"""


def _model(tmp_path: Path, sample: str, mbs: int = 8, name: str = "m") -> Path:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(HEAD.format(mbs=mbs) + f"model_warmup [{{ name: \"s\" {sample} }}]\n")
    return d


GOOD_INPUT = 'inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 3, 4 ] zero_data: true } }'


def test_zoo_is_clean_and_warmup_bad_is_flagged() -> None:
    models, findings = lint_repository(ZOO_REPOSITORY)
    assert "cold_start_warmed" in models and findings == []
    _, bad = lint_repository(REFUSED_REPOSITORY)
    assert [(f.model, f.problem) for f in bad] == [("warmup_bad", "data_type TYPE_INT32 but the input is TYPE_FP32")]
    assert bad[0].fix == "set data_type: TYPE_FP32" and "mismatched_sample" in bad[0].where


def test_a_correct_sample_passes(tmp_path: Path) -> None:
    assert lint_model(_model(tmp_path, f"batch_size: 8 {GOOD_INPUT}")) == []


@pytest.mark.parametrize(("sample", "mbs", "problem"), [
    (f"batch_size: 0 {GOOD_INPUT}", 8, "batch_size is 0, so Triton skips this sample"),
    (f"batch_size: 9 {GOOD_INPUT}", 8, "batch_size 9 exceeds max_batch_size 8"),
    (f"batch_size: 2 {GOOD_INPUT}", 0, "batch_size 2 for a model without batching"),
    ('batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 12 ] zero_data: true } }', 8,
     "dims [12] have rank 1 but the input's dims [-1, 4] have rank 2"),
    ('batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 3, 5 ] zero_data: true } }', 8,
     "dims [3, 5] do not match the input's dims [-1, 4] at position 1"),
    ('batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ -1, 4 ] zero_data: true } }', 8,
     "dims [-1, 4] leave a dimension unspecified"),
    ('batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 3, 4 ] } }', 8, "no data source"),
    (f'batch_size: 1 {GOOD_INPUT} inputs {{ key: "INPUT9" value {{ data_type: TYPE_FP32 dims: [ 1 ] '
     'zero_data: true } }', 8, "not an input of the model"),
    ('batch_size: 1 inputs { key: "OPT" value { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } }', 8,
     "required input 'INPUT0' is missing"),
    ('batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 3, 4 ] input_data_file: "x" } }',
     8, "input_data_file 'x' not found"),
])
def test_each_rule_flags_its_defect(tmp_path: Path, sample: str, mbs: int, problem: str) -> None:
    findings = lint_model(_model(tmp_path, sample, mbs))
    assert len(findings) == 1 and problem in findings[0].problem, findings


def test_input_data_file_size(tmp_path: Path) -> None:
    sample = ('batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 3, 4 ] '
              'input_data_file: "raw" } }')
    d = _model(tmp_path, sample)
    (d / "warmup").mkdir()
    (d / "warmup" / "raw").write_bytes(b"\0" * 47)
    (f,) = lint_model(d)
    assert "has 47 bytes, the sample needs 48" in f.problem
    (d / "warmup" / "raw").write_bytes(b"\0" * 48)
    assert lint_model(d) == []


def test_unparsable_config_is_a_finding_missing_repo_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.pbtxt").write_text("max_batch_size: [[\n")
    (f,) = lint_model(tmp_path / "broken")
    assert f.where == "config" and "cannot read model config" in f.problem
    with pytest.raises(ConfigError, match="does not exist"):
        lint_repository(tmp_path / "absent")


def test_cli_lint_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(ZOO_REPOSITORY)]) == 0
    assert main(["lint", str(REFUSED_REPOSITORY)]) == 3
    out = capsys.readouterr().out
    assert "warmup_bad: sample 'mismatched_sample' input 'INPUT0': data_type TYPE_INT32" in out
    assert main(["lint", "/nonexistent/repo"]) == 2
    assert main(["lint", str(ZOO_REPOSITORY), "--rate-limit-resource", "R1"]) == 2


# -- rate-limit pre-flight ----------------------------------------------------------------------------------------

def test_preflight_zoo_budgets() -> None:
    assert preflight(ZOO_REPOSITORY, []) == []
    assert preflight(ZOO_REPOSITORY, ["R1:2"]) == []
    (s,) = preflight(ZOO_REPOSITORY, ["R1:1"])
    assert s == Shortfall("R1", 0, 1, 2)
    assert s.message == ('Resource count for "R1" is limited to 1 which will prevent scheduling of one or more '
                         "model instances, the minimum required count is 2")


def test_preflight_follows_tritons_rules(tmp_path: Path) -> None:
    d = tmp_path / "g"
    d.mkdir()
    (d / "config.pbtxt").write_text("""
backend: "python"
instance_group [{ count: 1 kind: KIND_GPU gpus: [0, 1]
  rate_limiter { resources [{ name: "R1" count: 3 }, { name: "G" global: true count: 4 }] priority: 2 } }]
""")
    limits = model_limits("g", load_config_pbtxt(d / "config.pbtxt"))
    assert limits.instances == {"g_0_0": 0, "g_0_1": 1} and limits.priority["g_0_0"] == 2
    # a flag for device 1 only: device 0 has no R1 at all → 0; a global resource takes any flag
    budgets, short = effective_budgets([limits], parse_flags(["R1:3:1", "G:4:1"]))
    assert budgets == {("R1", 0): 0, ("R1", 1): 3, ("G", None): 4}
    assert short == [Shortfall("R1", 0, 0, 3)]
    # a device-less flag serves every device; an unlisted resource is unavailable
    assert effective_budgets([limits], parse_flags(["R1:3"]))[1] == [Shortfall("G", None, 0, 4)]
    # no flags: the budget is the largest single need
    assert effective_budgets([limits], [])[0] == {("R1", 0): 3, ("R1", 1): 3, ("G", None): 4}


def test_cli_preflight_reports_tritons_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(ZOO_REPOSITORY), "--rate-limit-resource", "R1:1"]) == 3
    assert 'Resource count for "R1" is limited to 1' in capsys.readouterr().out
    assert main(["lint", str(ZOO_REPOSITORY), "--rate-limit-resource", "R1:2"]) == 0


def test_repository_limits_of_the_zoo() -> None:
    limits = repository_limits(ZOO_REPOSITORY)
    assert limits["rl_high"].priority == {"rl_high_0_0": 1, "rl_high_0_1": 1}
    assert limits["rl_low"].needs["rl_low_0_1"][0].count == 2
