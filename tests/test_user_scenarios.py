"""A user's own scenario in the user's own folder: ``rmt run ./mine.json`` (a definition copied from a shipped one,
no locustfile beside it: it runs through ``rmt/scenarios/any.py``) and plain Locust on the user's three-line
locustfile beside its definition (alone, and with two worker processes under ``rmt run``), from a folder that is not
the checkout; and
``rmt scenarios``, which tells an installed user where the ready ones are."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from locust import events

from rmt.cli import main
from rmt.core.resources import SCENARIOS
from rmt.core.rundir import RunDir
from rmt.run.compose import attach
from rmt.run.definition import ANY_LOCUSTFILE, load_definition
from rmt.server import EmbeddedServer

BIN = Path(sys.executable).parent
USER_LOCUSTFILE = '''from locust import events
from rmt.load import TritonHttpUser
from rmt.run.compose import attach
attach(events, __file__)


class Mine(TritonHttpUser):
    """My traffic."""
'''


def _copy_priority(folder: Path, name: str) -> Path:
    """The user's definition: the shipped priority scenario, judged on whether any stream starves (a verdict that
    holds on any server, under any load of the box)."""
    data = json.loads((SCENARIOS / "priority.json").read_text())
    data["checks"] = {"only": "starvation", "starvation": {"max_gap": "3s"}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _one_run_dir(folder: Path, name: str) -> RunDir:
    """The run directory the run wrote under ``folder/runs`` (the default, relative to the working folder)."""
    found = sorted((folder / "runs").glob(f"{name}-*"))
    assert len(found) == 1, found
    return RunDir(found[0], create=False)


def _judged(run: RunDir) -> dict[str, str]:
    doc = json.loads((run.path / "verdicts.json").read_text())
    return {f"{v['check']} {v['subject']}": v["status"] for v in doc["verdicts"] if v["status"] != "skip"}


def test_locustfile_of_a_users_definition_is_the_one_beside_it_else_any(tmp_path: Path) -> None:
    mine = _copy_priority(tmp_path, "mine")
    assert load_definition(mine).locustfile == ANY_LOCUSTFILE
    assert load_definition(mine).name == "mine"
    (tmp_path / "mine.py").write_text(USER_LOCUSTFILE)
    assert load_definition(mine).locustfile == (tmp_path / "mine.py").resolve()
    assert load_definition(tmp_path / "mine.py").path == mine.resolve()
    assert load_definition("priority").locustfile == SCENARIOS / "priority.py"


def test_rmt_run_a_users_locustfile_from_its_folder_with_two_workers(triton_server: EmbeddedServer,
                                                                     tmp_path: Path) -> None:
    _copy_priority(tmp_path, "mine")
    (tmp_path / "mine.py").write_text(USER_LOCUSTFILE)  # rmt run takes the locustfile beside the definition
    done = subprocess.run([str(BIN / "rmt"), "run", "./mine.json", "--host", triton_server.http_url, "--workers", "2",
                           "--duration", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    run = _one_run_dir(tmp_path, "mine")
    assert run.manifest()["scenario_name"] == "mine"
    windows = list(run.read("windows.jsonl"))
    assert max(w["processes"] for w in windows) == 2  # both workers sent the user's traffic
    assert {w["stream"] for w in windows} == {"queue_priority/p1/small", "queue_priority/p2/small"}
    assert _judged(run) == {"starvation queue_priority/p1/small": "pass", "starvation queue_priority/p2/small": "pass",
                            "completeness run": "pass"}, _judged(run)


def test_plain_locust_on_a_users_locustfile_from_its_folder(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    _copy_priority(tmp_path, "own")
    (tmp_path / "own.py").write_text(USER_LOCUSTFILE)
    done = subprocess.run([str(BIN / "locust"), "-f", "./own.py", "--headless", "-u", "8", "-r", "100", "-t", "3s",
                           "--host", triton_server.http_url, "--only-summary", "--stop-timeout", "5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = _one_run_dir(tmp_path, "own")
    assert run.manifest()["scenario_name"] == "own"
    assert sum(w["succeeded"] for w in run.read("windows.jsonl")) > 0
    assert _judged(run) == {"starvation queue_priority/p1/small": "pass", "starvation queue_priority/p2/small": "pass",
                            "completeness run": "pass"}, _judged(run)


def test_a_locustfile_without_a_definition_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LOCUST_RMT_DEFINITION", raising=False)
    monkeypatch.setattr(sys, "argv", ["locust", "-f", str(tmp_path / "lonely.py")])
    with pytest.raises(SystemExit) as stop:
        attach(events, tmp_path / "lonely.py")
    assert stop.value.code == 2
    assert capsys.readouterr().err == (f"rmt: error: no scenario definition for {tmp_path / 'lonely.py'}: put "
                                       "lonely.json beside it or pass --rmt-definition FILE\n")


def test_rmt_scenarios_lists_installed_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    listing = capsys.readouterr().out
    for name in ("memory_growth", "priority", "campaign"):
        assert f"{name}: {load_definition(name).description}" in listing
        assert f"  definition  {SCENARIOS / name}.json" in listing
    assert f"  locustfile  {SCENARIOS / 'memory_growth.py'}" in listing
    assert f"  locustfile  {SCENARIOS / 'campaign.py'}" not in listing
    for asked, printed in (("memory_growth", SCENARIOS / "memory_growth.py"), ("any", ANY_LOCUSTFILE),
                           ("priority.json", SCENARIOS / "priority.json")):
        assert main(["scenarios", "--path", asked]) == 0
        assert capsys.readouterr().out == f"{printed}\n"
    for asked, why in (("campaign", "campaign has no locustfile"), ("nope", "unknown scenario 'nope'")):
        with contextlib.redirect_stderr(sys.stdout):
            assert main(["scenarios", "--path", asked]) == 2
        out = capsys.readouterr().out
        assert out.startswith("rmt: error: ") and why in out and len(out.splitlines()) == 1
