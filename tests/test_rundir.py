"""The run-directory contract: listed files only, torn lines skipped, NaN written as missing."""

from __future__ import annotations

import dataclasses
import importlib
import math
from pathlib import Path

import pytest

from rmt.core.errors import ConfigError
from rmt.core.rundir import FILES, RunDir

SCRATCH = "events.jsonl"


def test_append_read_roundtrip_and_nan_is_missing(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run") as run:
        run.append(SCRATCH, [{"a": 1, "b": math.nan}, {"a": 2, "b": 0.5}])
    rows = list(RunDir(tmp_path / "run", create=False).read(SCRATCH))
    assert rows == [{"a": 1, "b": None}, {"a": 2, "b": 0.5}]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.append(SCRATCH, [{"a": 1}], flush=True)
    with (tmp_path / SCRATCH).open("a") as fh:
        fh.write('{"a": 2')  # a writer killed mid-line
    assert [r["a"] for r in run.read(SCRATCH)] == [1]


def test_unregistered_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a run-directory file"):
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


def test_every_file_names_a_core_record_dataclass() -> None:
    """Each listed file's record type is a dataclass of rmt.core, so every reader finds the format in the core."""
    assert {"windows.jsonl", "traces.jsonl", "samples.jsonl", "series.jsonl", "failures.jsonl"} <= set(FILES)
    for name, entry in FILES.items():
        module, _, cls = entry.record.rpartition(".")
        assert module.startswith("rmt.core."), name
        assert dataclasses.is_dataclass(getattr(importlib.import_module(module), cls)), name
