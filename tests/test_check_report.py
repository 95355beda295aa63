"""Verdict outputs (table, verdicts.json, junit.xml) and the ``rmt check`` exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rmt.check.base import FAIL, PASS, SKIP, Verdict
from rmt.check.data import RunInputs
from rmt.check.memory_checks import LeakCheck
from rmt.check.report import format_table, junit_tree, verdicts_document, write_outputs
from rmt.check.sched_checks import StarvationCheck
from rmt.check.synthetic import memory_series, windows
from rmt.cli import main
from rmt.core.rundir import RunDir


def _verdicts() -> list[Verdict]:
    run = RunInputs(memory=[memory_series(1, leak_bytes_per_request=200.0, name="rss{stub=leak_host}"),
                            memory_series(2, name="rss{stub=healthy}")])
    return LeakCheck().evaluate(run) + StarvationCheck().evaluate(RunInputs())


def test_table_has_one_row_per_verdict_with_measured_and_threshold() -> None:
    text = format_table(_verdicts())
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["CHECK", "SUBJECT", "STATUS", "MEASURED", "THRESHOLD"]
    fail_row = next(line for line in lines if "rss{stub=leak_host}" in line)
    assert "FAIL" in fail_row and "<= 524,288 B" in fail_row
    assert lines[-1] == "1 passed, 1 failed, 1 skipped"


def test_verdicts_json_and_junit_agree(tmp_path: Path) -> None:
    verdicts = _verdicts()
    jpath, xpath = write_outputs(verdicts, tmp_path, run_dir="r", spec={"leak": {}})
    doc = json.loads(jpath.read_text())
    assert doc["passed"] is False and doc["counts"] == {PASS: 1, FAIL: 1, SKIP: 1, "warn": 0, "undecided": 0}
    leak = doc["verdicts"][0]
    assert leak["status"] == FAIL and leak["unit"] == "bytes" and leak["measure"] == "leak_growth_per_10k_bytes"
    assert leak["threshold"] == 524288 and leak["evidence"]["plot"]
    root = ET.parse(xpath).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("rmt.leak", "rss{stub=leak_host}"), ("rmt.leak", "rss{stub=healthy}"), ("rmt.starvation", "-")]
    failure = cases[0].find("failure")
    assert failure is not None and "threshold <= 524,288 B" in (failure.get("message") or "")
    assert json.loads(failure.text or "")["kendall_tau"] > 0
    assert cases[1].find("failure") is None and cases[2].find("skipped") is not None


def test_json_document_has_no_nan() -> None:
    doc = verdicts_document(StarvationCheck(required=True).evaluate(RunInputs()))
    text = json.dumps(doc, allow_nan=False)
    assert '"passed": false' in text


def test_junit_of_all_passing() -> None:
    run = RunInputs(windows=[windows("s", "m", seconds=20, rate_per_s=10)])
    root = junit_tree(StarvationCheck().evaluate(run)).getroot()
    assert root is not None
    assert root.get("failures") == "0" and root.find("testsuite/testcase/system-out") is not None


def _run_dir(tmp_path: Path, checks: dict | None = None) -> Path:
    run = RunDir(tmp_path / "run")
    run.update_manifest(server={"options": {"rate_limit": None}}, **({"scenario": {"checks": checks}} if checks
                                                                      else {}))
    return run.path


def test_cli_exit_0_when_nothing_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    assert main(["check", str(run)]) == 0
    assert (run / "verdicts.json").exists() and (run / "junit.xml").exists()
    assert "skipped" in capsys.readouterr().out


def test_cli_exit_3_and_outputs_when_a_check_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    out = tmp_path / "out"
    assert main(["check", str(run), "--checks", "leak.max_growth=1MiB/10k", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("rmt: error: 1 of") and err.count("\n") == 1
    assert json.loads((out / "verdicts.json").read_text())["passed"] is False


def test_cli_scenario_checks_in_manifest_are_used_and_cli_overrides(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, checks={"warmup": {"max_cold_ratio": 5}})
    assert main(["check", str(run)]) == 3  # asked for by the scenario, no evidence: fails
    assert main(["check", str(run), "--checks", "warmup=off"]) == 0
    doc = json.loads((run / "verdicts.json").read_text())
    assert doc["spec"]["warmup"] == {"max_cold_ratio": 5, "enabled": False}


@pytest.mark.parametrize("argv", [
    ["check", "/nonexistent/run"],
    ["check"],
    ["check", "{run}", "--checks", "leak.max_growth=lots"],
    ["check", "{run}", "--checks-file", "/nonexistent.json"],
])
def test_cli_usage_errors_exit_2_with_one_line(argv: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    assert main([a.replace("{run}", str(run)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rmt: error: ") and err.count("\n") == 1


def test_cli_checks_file(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    f = tmp_path / "checks.json"
    f.write_text(json.dumps({"checks": {"only": "starvation"}}))
    assert main(["check", str(run), "--checks-file", str(f)]) == 3
    f.write_text("{not json")
    assert main(["check", str(run), "--checks-file", str(f)]) == 2


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    assert 'leak.max_growth = \'512KiB/10k\'' in capsys.readouterr().out


def test_undecided_is_a_skipped_testcase_with_its_reason_and_warn_passes_with_a_warning() -> None:
    undecided = Verdict("leak", "rss{stub=short}", "undecided", "leak_growth_per_10k_bytes", None, 524288.0, "<=",
                        "undecided: too few samples after the warm-up")
    warn = Verdict("leak", "rss{stub=creep}", "warn", "leak_growth_per_10k_bytes", 200000.0, 524288.0, "<=",
                   "grows 20 B/request; projected 19 MiB per million requests")
    root = junit_tree([undecided, warn]).getroot()
    assert root is not None
    assert root.get("skipped") == "1" and root.get("failures") == "0"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    skipped = cases["rss{stub=short}"].find("skipped")
    assert skipped is not None and skipped.get("type") == "undecided"
    assert "too few samples" in str(skipped.get("message"))
    err = cases["rss{stub=creep}"].find("system-err")
    assert err is not None and str(err.text).startswith("WARNING: ")
    assert cases["rss{stub=creep}"].find("failure") is None
    assert format_table([undecided, warn]).splitlines()[-1] == "0 passed, 0 failed, 0 skipped, 1 warnings, 1 undecided"
