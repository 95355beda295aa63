"""Every check on models that give no zoo-only evidence (no ``TRACE`` output, no ``rmt_*`` log lines), on a real
tritonserver through ``rmt run``: each check judges from black-box evidence (Triton's counters, rmt's own timings,
the configs the load fetched) or says it cannot judge the model — never a pass or a failure for want of zoo output.

One run of ~8 s: a contended rate-limited pair and a warmed model, loaded under readiness polls.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rmt.check.api import evaluate
from rmt.check.base import FAIL, PASS
from rmt.check.spec import CHECKS
from rmt.cli import main
from rmt.core.resources import ZOO_MODEL, ZOO_REPOSITORY

#: Zoo models copied without their TRACE output: (new name, zoo model).
BLACK_BOX = (("bb_high", "rl_high"), ("bb_low", "rl_low"), ("bb_warm", "cold_start_warmed"))
#: Checks whose evidence only the zoo gives: on these models they must say they cannot judge.
ZOO_ONLY = {"readiness", "warmup_executed", "cross_device"}
#: Checks that must judge these models from black-box evidence alone.
BLACK_BOX_JUDGED = {"rate_limit", "concurrency", "weights", "starvation", "fairness", "warmup", "leak"}


def black_box_repository(dest: Path) -> Path:
    """Zoo configs without the TRACE output, each beside a link to the zoo's model implementation."""
    for name, source in BLACK_BOX:
        text = (ZOO_REPOSITORY / source / "config.pbtxt").read_text()
        text = re.sub(r",?\s*\{ name: \"TRACE\"[^}]*\}", "", text)
        assert "TRACE" not in text.split("output", 1)[1].split("]", 1)[0]
        (dest / name / "1").mkdir(parents=True)
        (dest / name / "config.pbtxt").write_text(text)
        (dest / name / "1" / "model.py").symlink_to(ZOO_MODEL)
    return dest


def test_every_check_judges_black_box_models_or_says_it_cannot(tmp_path: Path) -> None:
    repo = black_box_repository(tmp_path / "repo")
    definition = {
        "description": "black-box models: a contended rate-limited pair and a warmed model, no TRACE output",
        "traffic": {"mode": "closed", "patterns": {"small": {"shape": [16]}},
                    "streams": [{"model": "bb_high", "pattern": "small", "users": 3},
                                {"model": "bb_low", "pattern": "small", "users": 3},
                                {"model": "bb_warm", "pattern": "small", "users": 1}]},
        "checks": {},
        "run": {"users": 7, "duration_s": 8,
                "server": {"rate_limit_resources": ["R1:2"], "model_control_mode": "explicit", "load_models": []},
                "actions": [{"kind": "load", "models": [n for n, _ in BLACK_BOX], "poll_ms": 20}]}}
    path = tmp_path / "blackbox.json"
    path.write_text(json.dumps(definition))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--model-repository", str(repo), "--out", str(run_dir)]) in (0, 3)
    assert not (run_dir / "traces.jsonl").exists() or not (run_dir / "traces.jsonl").read_text().strip()

    # every check asked for explicitly: missing zoo evidence must not turn into a failure
    result = evaluate(run_dir, "only = " + ", ".join(sorted(ZOO_ONLY | BLACK_BOX_JUDGED)))
    by_check: dict[str, list] = {}
    for v in result.verdicts:
        by_check.setdefault(v.check, []).append(v)
    for check in ZOO_ONLY:
        assert by_check[check] and all(v.undecided for v in by_check[check]), (check, by_check[check])
        assert all("cannot" in v.explanation or "nothing" in v.explanation for v in by_check[check])
    for check in BLACK_BOX_JUDGED:
        judged = [v for v in by_check[check] if v.status in (PASS, FAIL) and v.measured is not None]
        assert judged, (check, [v.explanation for v in by_check[check]])
    (held,) = by_check["rate_limit"]
    assert held.subject == "R1 (Triton counters)" and held.status == PASS, held.explanation
    assert 0.3 < held.measured <= 2.2 and held.evidence["needs"] == {"bb_high": 2, "bb_low": 2}
    (weights,) = by_check["weights"]  # contended (4 instances asking R1:2, budget 2): the weights decide
    assert weights.evidence["expected_ratio"] == 2.0 and weights.evidence["contention"][0]["wanted"] == 8, \
        weights.explanation
    # the check table is complete: every check of the registry is classified in the README
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in CHECKS:
        assert re.search(rf"^\| `{name}` \|.*\| (black-box|zoo-only|black-box or zoo) ", readme, re.M), name
