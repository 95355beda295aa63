"""The import contracts of pyproject.toml's ``[tool.importlinter]``: the layers and the offline readers.

``layers``: the application (CLI, commands, run, report, web UI, capacity, fleet, server) over rmt.load, rmt.collect
and rmt.check, which import none of each other, over rmt.core, which imports none of them. ``offline``: the core, the
checkers, the report, capacity comparison, the fleet's judge and the server launcher import neither Locust nor gevent,
directly or through another module — verdicts must be recomputable where a run directory lands (a GPU box without
Locust), and importing Locust monkey-patches the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def test_the_tree_keeps_every_contract() -> None:
    # In a child process: the linter configures logging in-process, which would leak into later tests' caplog.
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _lint_copy(tmp_path: Path, plant: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Lint a copy of the package (Python files only) with ``plant`` (relative path → appended line) added."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "rmt", copy / "rmt", ignore=shutil.ignore_patterns("zoo", "scenarios", "__pycache__"))
    shutil.copy(PYPROJECT, copy / "pyproject.toml")
    for rel, line in plant.items():
        with (copy / rel).open("a") as fh:
            fh.write(f"\n{line}\n")
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_planted_forbidden_import_breaks_its_contract(tmp_path: Path) -> None:
    out = _lint_copy(tmp_path, {
        "rmt/check/trend.py": "from rmt.load import windows as _planted_sibling  # noqa",
        "rmt/core/hdr.py": "import gevent as _planted_gevent  # noqa",
    })
    assert out.returncode != 0, out.stdout
    text = " ".join(out.stdout.split())
    assert "2 broken" in text, out.stdout
    assert "rmt.check.trend -> rmt.load.windows" in text, out.stdout
    assert "rmt.core.hdr -> gevent" in text, out.stdout
