"""Bad input, hypothesis-generated (a few examples each here; ``benchmarks/fuzz_inputs.py`` runs thousands): scenario
files, ``--checks`` specs, ``config.pbtxt`` for ``rmt lint``, command-line arguments and damaged run directories
each end in exit 0/3/4 or one ``rmt: error:`` line with exit 2 — never a traceback, never a partly written output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_cases import PROPERTIES, SEED_RUN, cli

#: Examples per property in make test (CI time); the benchmark runs >= 1000.
EXAMPLES = {"scenario files": 40, "check specs": 15, "config.pbtxt": 30, "CLI arguments": 60,
            "corrupt run directories": 12}


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_bad_input_is_one_line(name: str) -> None:
    strategy, check = PROPERTIES[name]

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example: Any) -> None:
        check(example)

    run()


def test_empty_and_foreign_folders_are_no_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a run\n")
    (tmp_path / "foreign" / "manifest.json").write_text("{}")
    for folder in ("empty", "foreign"):
        for argv in (["check", str(tmp_path / folder)], ["report", str(tmp_path / folder)]):
            code, _, err = cli(argv)
            assert code == 2, (argv, err)
            assert err.startswith("rmt: error: ") and "holds no run" in err and err.count("\n") == 1
        assert not (tmp_path / folder / "verdicts.json").exists()


def test_corrupt_manifest_and_binary_scenario(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"scenario": ')
    for argv in (["check", str(run)], ["report", str(run)]):
        code, _, err = cli(argv)
        assert code == 2 and "manifest.json is not valid JSON" in err and err.count("\n") == 1, err
    binary = tmp_path / "mine.json"
    binary.write_bytes(bytes(range(256)))
    code, _, err = cli(["run", str(binary)])
    assert code == 2 and "is not UTF-8 text" in err and err.count("\n") == 1, err


def test_a_damaged_record_line_names_the_file(tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(SEED_RUN, run)
    lines = (run / "windows.jsonl").read_text().splitlines(keepends=True)
    lines[2] = '{"window_start_ns": \n'
    (run / "windows.jsonl").write_text("".join(lines))
    code, _, err = cli(["check", str(run), "--out", str(tmp_path / "out")])
    assert code == 2 and "windows.jsonl line 3 is not a JSON record" in err, err
    assert not (tmp_path / "out" / "verdicts.json").exists()
