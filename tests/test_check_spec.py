"""Declarative check specs: grammar, quantities, precedence, defaults, and errors that name the fix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmt.check.memory_checks import LeakCheck
from rmt.check.quantity import parse_count, parse_duration, parse_growth, parse_size, parse_warmup
from rmt.check.spec import (
    CHECK_MEASURES,
    CHECKS,
    build_checks,
    describe_checks,
    merge_specs,
    parse_spec,
    spec_from_mapping,
)
from rmt.core.errors import ConfigError
from rmt.core.measures import MEASURES


def by_name(spec: dict) -> dict:
    return {c.name: c for c in build_checks(spec)}


def test_growth_rates() -> None:
    assert parse_growth("1MiB/10k") == pytest.approx(2**20 / 10_000)
    assert parse_growth("100B/request") == 100.0
    assert parse_growth("1 GB / 1M") == pytest.approx(1000.0)
    assert parse_growth("512KiB/10k") * 10_000 == 512 * 1024
    for bad in ("1MiB", "1XB/10k", "1MiB/0", "1MiB/ten", "/10k"):
        with pytest.raises(ValueError, match="write"):
            parse_growth(bad)


@given(st.floats(0, 1e6), st.sampled_from(["B", "KiB", "MiB", "GiB", "kB", "MB"]))
def test_sizes_scale_by_their_unit(n: float, unit: str) -> None:
    factor = {"B": 1, "KiB": 1024, "MiB": 2**20, "GiB": 2**30, "kB": 1000, "MB": 10**6}[unit]
    assert parse_size(f"{n!r}{unit}") == pytest.approx(n * factor)


def test_durations_counts_warmups() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120 and parse_duration(3) == 3.0
    assert parse_count("10k") == 10_000 and parse_count("request") == 1
    assert parse_warmup("10%") == (0.1, 0.0) and parse_warmup("30s") == (0.0, 30.0)
    for bad in ("-1s", "soon"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match="warm-up"):
        parse_warmup("lots")


def test_command_line_grammar() -> None:
    spec = parse_spec('leak.max_growth = "1MiB/10k", fairness.min_jain=0.9; warmup.max_cold_ratio=3\npriority=off')
    assert spec == {"leak": {"max_growth": "1MiB/10k"}, "fairness": {"min_jain": "0.9"},
                    "warmup": {"max_cold_ratio": "3"}, "priority": {"enabled": False}}
    checks = by_name(spec)
    assert "priority" not in checks
    assert checks["leak"].values["max_growth"] == pytest.approx(2**20 / 10_000)
    assert checks["fairness"].values["min_jain"] == 0.9 and checks["warmup"].values["max_cold_ratio"] == 3.0
    assert checks["leak"].required and not checks["starvation"].required


def test_only_selects_checks() -> None:
    checks = build_checks(parse_spec("only = leak, warmup, leak.alpha=0.05"))
    assert [c.name for c in checks] == ["leak", "warmup", "completeness"]  # what the run lost is always judged
    assert checks[0].values["alpha"] == 0.05


def test_defaults_are_documented_and_every_check_has_its_measure() -> None:
    checks = by_name({})
    assert set(checks) == set(CHECKS)
    assert checks["leak"].values["max_growth"] * 10_000 == 512 * 1024
    assert checks["fairness"].values["min_jain"] == 0.9
    text = describe_checks()
    for name, cls in CHECKS.items():
        assert CHECK_MEASURES[cls.measure].unit == cls.unit and cls.measure not in MEASURES
        for p in cls.params:
            assert f"{name}.{p.name} = {p.default!r}" in text


def test_mapping_nested_or_flat_and_precedence() -> None:
    nested = spec_from_mapping({"leak": {"max_growth": "2MiB/10k", "alpha": 0.05}, "priority": False})
    flat = spec_from_mapping({"leak.max_growth": "4MiB/10k"})
    assert nested["priority"] == {"enabled": False}
    merged = merge_specs(nested, flat, parse_spec("leak.alpha=0.001"))
    leak = by_name(merged)["leak"]
    assert leak.raw == {"max_growth": "4MiB/10k", "gpu_max_growth": "32MiB/10k", "alpha": "0.001", "warmup": "10%",
                        "series": "*", "settle": "128KiB", "sustain": 0.5}


@pytest.mark.parametrize(("text", "fix"), [
    ("leek.max_growth=1MiB/10k", "unknown check 'leek': use one of leak"),
    ("leak.max_grow=1MiB/10k", "leak has no parameter 'max_grow': use one of alpha, gpu_max_growth, max_growth"),
    ("leak.max_growth", "write CHECK.PARAM = VALUE"),
    ("priority=maybe", "write priority = on or priority = off"),
    ("leak.max_growth=1MiB", "check leak: max_growth: '1MiB' is not a growth rate: write SIZE/REQUESTS"),
    ("fairness.min_jain=1.5", "check fairness: min_jain: '1.5' is out of range"),
    ("leak.alpha=0", "check leak: alpha"),
    ("only = leak, nope", "unknown check 'nope'"),
])
def test_bad_specs_are_one_line_config_errors_naming_the_fix(text: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_checks(parse_spec(text))
    assert fix in str(err.value) and "\n" not in str(err.value)


def test_unknown_parameter_in_constructor() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'bogus'"):
        LeakCheck({"bogus": 1})
