"""rmt as a user installs it: the wheel (``pip wheel . --no-deps``), installed non-editable into a fresh venv, runs
from a folder that is not the checkout — ``rmt run ./mine.json --workers 2`` with the embedded server and the shipped
zoo, then
plain Locust on the installed locustfile of a ready scenario, found with ``rmt scenarios --path``.

The fresh venv reaches the test venv's installed dependencies through a ``.pth`` line (a path only: the test venv's
own ``.pth`` hooks, the editable ``rmt`` among them, are not run there), so only the wheel is installed. Every step
asserts that the installed copy, not the checkout, is what runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import rmt
from rmt.core.rundir import RunDir

CHECKOUT = Path(rmt.__file__).resolve().parent.parent
READY = re.compile(r"^ready http=(\S+) ")
#: What the wheel is built from (the Dockerfile copies the same, tests/test_compose.py holds them together).
SOURCES = ("pyproject.toml", "README.md", "rmt")


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                          start_new_session=True)
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed (no editable hook); returns the venv's folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # the tracked sources as a clone holds them (zoo model.py symlinks kept as symlinks)
    src.mkdir()
    for name in SOURCES:
        if (CHECKOUT / name).is_dir():
            shutil.copytree(CHECKOUT / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy(CHECKOUT / name, src / name)
    assert (src / "rmt/zoo/models/probe/1/model.py").is_symlink()
    dist = root / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                  "-w", str(dist)], root, timeout=180)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("triton_rmt-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        model = zf.getinfo("rmt/zoo/models/probe/1/model.py")
        assert model.external_attr >> 28 != 0o12, "the zoo's model.py is a symlink in the wheel"  # S_IFLNK
        assert zf.read("rmt/zoo/models/probe/1/model.py") == (CHECKOUT / "rmt/zoo/zoo_model.py").read_bytes()
    assert {"rmt/scenarios/memory_growth.json", "rmt/scenarios/memory_growth.py", "rmt/scenarios/any.py",
            "rmt/zoo/models/probe/config.pbtxt", "rmt/zoo/gpu/leak_gpu/config.pbtxt",
            "rmt/zoo/refused/warmup_bad/config.pbtxt", "rmt/report/templates/page.html.j2",
            "rmt/zoo/zoo_state.py", "rmt/zoo/models/ensemble_pair/1/README.md"} <= names
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    asked = "import sysconfig; print(sysconfig.get_paths()['purelib'])"  # the venv's own scheme (distributions differ)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c", asked], capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "rmt_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    done = _run([str(venv / "bin/python"), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                 "-q", str(wheel)], root)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """An empty folder outside the checkout, as a user's working directory."""
    folder = tmp_path / "user"
    folder.mkdir()
    return folder


def _rmt(venv: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run([str(venv / "bin/rmt"), *args], cwd, timeout)


@pytest.fixture
def installed_server(installed: Path, user_folder: Path) -> Iterator[str]:
    """``rmt server start`` of the installed copy, the shipped zoo with only ``probe`` loaded; yields its HTTP URL."""
    log = (user_folder / "server.out").open("w")
    proc = subprocess.Popen([str(installed / "bin/rmt"), "server", "start", "--model-control-mode", "explicit",
                             "--load-model", "probe"], cwd=user_folder, stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the one ready line (or EOF when the server did not start)
        match = READY.match(line)
        assert match, line + (user_folder / "server.out").read_text()[-2000:]
        yield match.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        log.close()


def test_the_installed_copy_runs_from_any_folder(installed: Path, user_folder: Path) -> None:
    where = _run([str(installed / "bin/python"), "-c", "import rmt, rmt.core.resources as r; "
                  "print(rmt.__file__); print(r.ZOO_REPOSITORY)"], user_folder)
    module, zoo = where.stdout.split()
    assert Path(module).is_relative_to(installed) and Path(zoo).is_relative_to(installed), where.stdout
    definition = Path(_rmt(installed, "scenarios", "--path", "fairness.json", cwd=user_folder).stdout.strip())
    assert definition.is_relative_to(installed) and definition.is_file()
    mine = json.loads(definition.read_text())  # a user's scenario, copied from a shipped one and cut down
    mine["traffic"]["streams"] = [{"model": "probe", "pattern": "small"}]
    mine["run"] = {"users": 4, "duration_s": 3, "server": {"model_control_mode": "explicit", "load_models": ["probe"]}}
    mine["checks"] = {"only": "starvation", "starvation": {"max_gap": "3s"}}
    (user_folder / "mine.json").write_text(json.dumps(mine))
    done = _rmt(installed, "run", "./mine.json", "--workers", "2", "--out", "run", cwd=user_folder, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    run = RunDir(user_folder / "run", create=False)
    manifest = run.manifest()
    assert manifest["scenario_name"] == "mine" and manifest["server"]["embedded"]
    assert Path(manifest["server"]["options"]["model_repository"]).is_relative_to(installed)
    windows = list(run.read("windows.jsonl"))  # sent by both workers, through the installed any.py
    assert sum(w["succeeded"] for w in windows) > 0 and max(w["processes"] for w in windows) == 2
    verdicts = json.loads((user_folder / "run/verdicts.json").read_text())["verdicts"]
    assert sorted((v["check"], v["status"]) for v in verdicts) == [("completeness", "pass"), ("starvation", "pass")]
    assert (user_folder / "run/report.html").is_file()


def test_plain_locust_runs_the_installed_locustfile(installed: Path, installed_server: str, user_folder: Path) -> None:
    locustfile = Path(_rmt(installed, "scenarios", "--path", "memory_growth", cwd=user_folder).stdout.strip())
    assert locustfile.is_relative_to(installed) and locustfile.name == "memory_growth.py"
    done = _run([str(installed / "bin/python"), "-m", "locust", "-f", str(locustfile), "--host", installed_server,
                 "--headless", "-u", "4", "-t", "3s", "--only-summary", "--stop-timeout", "5", "--rmt-models", "probe",
                 "--rmt-run-dir", "mg", "--rmt-checks", "only=starvation"], user_folder)
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDir(user_folder / "mg", create=False)
    assert run.manifest()["scenario_name"] == "memory_growth"
    assert {w["model"] for w in run.read("windows.jsonl")} == {"probe"}
    assert {w["phase"] for w in run.read("windows.jsonl")} <= {"baseline", "big_shapes", "error_path"}
    verdicts = json.loads((user_folder / "mg/verdicts.json").read_text())["verdicts"]
    judged = [v for v in verdicts if v["status"] != "skip"]
    assert sorted((v["check"], v["status"]) for v in judged) == [("completeness", "pass"), ("starvation", "pass")]
