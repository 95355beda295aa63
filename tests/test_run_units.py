"""Pure parts of ``rmt run``: every ready scenario parses, retargeting, duration scaling, expectations, the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rmt.check.base import FAIL, PASS, SKIP, Verdict
from rmt.check.spec import spec_from_mapping
from rmt.core.errors import ConfigError
from rmt.core.scenario import parse_scenario
from rmt.run.control import set_path
from rmt.run.definition import LOCUSTFILES, available, load_definition, retarget
from rmt.run.orchestrate import scaled
from rmt.run.verdicts import CAUGHT, HEALTHY, SKIPPED, UNEXPECTED, Row, format_rows, rows_for

SCENARIOS = ["memory_growth", "fragmentation", "rate_limit", "weights_plenty", "fairness", "priority",
             "priority_starvation", "warmup", "reconfig", "streaming", "stateful", "cross_device",
             "cross_device_global", "streaming_gpu"]


def test_catalogue_is_complete_and_every_scenario_parses() -> None:
    assert set(available()) == {*SCENARIOS, "campaign", "capacity"}  # capacity is run by rmt capacity
    for name in SCENARIOS:
        d = load_definition(name)
        assert d.locustfile.exists(), name
        assert d.description and d.duration_s > 0
        parse_scenario(d.raw)  # the traffic section is a valid rmt.load scenario
        spec_from_mapping(d.checks)  # the checks are valid check specs
    campaign = load_definition("campaign")
    gpu_only = [n for n in SCENARIOS if load_definition(n).requires_gpus]
    # each needs its own server flags and rmt/zoo/multigpu (streaming_gpu: rmt/zoo/gpu)
    assert gpu_only == ["cross_device", "cross_device_global", "streaming_gpu"]
    assert [n for n, _ in campaign.scenarios] == [n for n in SCENARIOS if n not in gpu_only]
    assert sum(d for _, d in campaign.scenarios) <= 110  # make run stays within 3 minutes on 2 cores


def test_each_locustfile_only_composes() -> None:
    for name in SCENARIOS:
        text = (LOCUSTFILES / f"{name}.py").read_text()
        assert "attach(events, __file__)" in text and len(text.splitlines()) < 30, name


def test_unknown_scenario_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown scenario 'nope': use one of .*memory_growth"):
        load_definition("nope")


def test_retarget_points_streams_at_the_users_models_per_priority() -> None:
    d = retarget(load_definition("priority"), ["a", "b"])
    streams = d.raw["traffic"]["streams"]
    assert streams == [{"model": "a", "priority": 1}, {"model": "a", "priority": 2},
                       {"model": "b", "priority": 1}, {"model": "b", "priority": 2}]
    assert not d.expect  # no planted defects in the user's models
    mg = retarget(load_definition("memory_growth"), ["m"])
    assert all("weights" not in p for p in mg.raw["traffic"]["phases"])
    parse_scenario(mg.raw)
    warm = retarget(load_definition("warmup"), ["m"])
    assert warm.actions[0]["models"] == ["m"]
    with pytest.raises(ConfigError, match="bad --models"):
        retarget(load_definition("priority"), ["a/b"])


def test_scaled_keeps_phase_proportions() -> None:
    d = scaled(load_definition("memory_growth"), 10)
    phases = d.raw["traffic"]["phases"]
    assert sum(p["duration_s"] for p in phases) == pytest.approx(10, abs=0.01)
    assert d.duration_s == 10
    assert load_definition("memory_growth").raw["traffic"]["phases"][0]["duration_s"] == 6  # original untouched


def test_set_path_sets_nested_keys_and_list_items() -> None:
    config: dict[str, Any] = {"instance_group": [{"count": 2, "rate_limiter": {"priority": 2}}]}
    set_path(config, "instance_group.0.rate_limiter.priority", 1)
    set_path(config, "dynamic_batching.max_queue_delay_microseconds", 100)
    assert config["instance_group"][0]["rate_limiter"]["priority"] == 1
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 100}


def _v(check: str, subject: str, status: str) -> Verdict:
    return Verdict(check, subject, status, "leak_growth_per_10k_bytes", 1.0, 2.0, "<=", "because")


def test_expectations_decide_the_outcome() -> None:
    d = load_definition("memory_growth")
    leak = "process_rss_bytes{instance=leak_host_0_0,model=leak_host,name=leak_host_0_0,role=stub}"
    twin = "process_rss_bytes{instance=leak_host_healthy_0_0,model=leak_host_healthy,role=stub}"
    rows = rows_for(d, [_v("leak", leak, FAIL), _v("leak", twin, PASS), _v("leak", "-", SKIP)])
    assert [r.outcome for r in rows] == [CAUGHT, HEALTHY, SKIPPED]
    flipped = rows_for(d, [_v("leak", leak, PASS), _v("leak", twin, FAIL)])  # defect vanished, twin broke
    assert [r.outcome for r in flipped] == [UNEXPECTED, UNEXPECTED]
    text = format_rows(rows)
    assert "EXPECTED" in text and "defect caught: leak_host keeps 1 MiB per request" in text
    assert text.splitlines()[-1].startswith("1 healthy passes, 1 planted defects caught on purpose")
    assert isinstance(rows[0], Row) and rows[0].matches and not flipped[0].matches


def test_definition_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"traffic": {"streams": [{"model": "m"}]}, "run": {"sever": {}}}))
    with pytest.raises(ConfigError, match="unknown run key 'sever'"):
        load_definition(bad)
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_definition(bad)
