"""The run-directory contract: registered files only, torn lines skipped, NaN written as missing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rmt.core.errors import ConfigError
from rmt.core.rundir import FILES, RunDir, register_file


@pytest.fixture(autouse=True)
def _scratch_file() -> None:
    register_file("test_scratch.jsonl", __name__, "dict", "scratch records of the rundir tests")


def test_append_read_roundtrip_and_nan_is_missing(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run") as run:
        run.append("test_scratch.jsonl", [{"a": 1, "b": math.nan}, {"a": 2, "b": 0.5}])
    rows = list(RunDir(tmp_path / "run", create=False).read("test_scratch.jsonl"))
    assert rows == [{"a": 1, "b": None}, {"a": 2, "b": 0.5}]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.append("test_scratch.jsonl", [{"a": 1}], flush=True)
    with (tmp_path / "test_scratch.jsonl").open("a") as fh:
        fh.write('{"a": 2')  # a writer killed mid-line
    assert [r["a"] for r in run.read("test_scratch.jsonl")] == [1]


def test_unregistered_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a registered"):
        RunDir(tmp_path).append("nobody.jsonl", [{}])
    assert "nobody.jsonl" not in FILES


def test_manifest_merges_keys(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.update_manifest(a=1, nested={"x": math.inf})
    run.update_manifest(b=2)
    assert run.manifest() == {"a": 1, "b": 2, "nested": {"x": None}}


def test_missing_run_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RunDir(tmp_path / "absent", create=False)
