"""The leak statistic on synthetic series: sensitivity (100 B/request over 10k requests) and false alarms (≤ 1 %)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmt.check.memory_checks import LeakCheck
from rmt.check.synthetic import memory_series
from rmt.check.trend import (
    LEAK,
    SOUND,
    bin_medians,
    decide,
    fit_trend,
    floor_slope,
    is_leak,
    sustained_growth,
    warmup_mask,
)

SEEDS = range(300)
DEFAULT_LIMIT = LeakCheck().values["max_growth"] * 10_000
ALPHA = LeakCheck().values["alpha"]


def _alarm(series_seed: int, **kw: Any) -> bool:
    """The leak check's rule: the later half's sustained floor growth decisively above the limit."""
    s = memory_series(series_seed, **kw)
    sus = sustained_growth(s.t_s, s.requests, s.values, warmup_fraction=0.1, min_quantum=4096)
    assert sus is not None
    return decide(sus, DEFAULT_LIMIT / 10_000, ALPHA).outcome == LEAK


def _outcome(series_seed: int, **kw: Any) -> str:
    s = memory_series(series_seed, **kw)
    sus = sustained_growth(s.t_s, s.requests, s.values, warmup_fraction=0.1, min_quantum=4096)
    assert sus is not None
    return decide(sus, DEFAULT_LIMIT / 10_000, ALPHA).outcome


def test_planted_100_bytes_per_request_is_detected_and_never_passed() -> None:
    # ~12k requests, 10 % warm-up left out: the later half sees ~5.4k requests under 64 KiB of noise per sample.
    outcomes = [_outcome(seed, leak_bytes_per_request=100.0) for seed in SEEDS]
    assert SOUND not in outcomes  # a miss is "undecided" (run longer), never a pass
    assert outcomes.count(LEAK) / len(SEEDS) >= 0.97


def test_flat_noisy_series_false_alarm_rate_at_most_1_percent() -> None:
    alarms = sum(_alarm(seed, noise_bytes=256 * 1024) for seed in SEEDS)
    assert alarms / len(SEEDS) <= 0.01


def test_gc_like_sawtooth_false_alarm_rate_at_most_1_percent() -> None:
    # 1-8 MiB swings that fall back to the floor, periods well inside a quarter of the run
    alarms = sum(_alarm(seed, sawtooth_bytes=float(np.random.default_rng(seed).uniform(1, 8)) * 2**20)
                 for seed in SEEDS)
    assert alarms / len(SEEDS) <= 0.01


def test_sawtooth_alone_would_fool_slope_and_tau_the_floor_rule_is_what_saves_it() -> None:
    """Without the floor condition some sawtooth seeds would alarm: the third condition is load-bearing."""
    fooled = 0
    for seed in SEEDS:
        s = memory_series(seed, sawtooth_bytes=8 * 2**20)
        t = fit_trend(s.t_s, s.requests, s.values)
        assert t is not None
        if t.growth_per_10k_bytes > DEFAULT_LIMIT and t.tau > 0 and t.p_value < ALPHA:
            fooled += 1
            assert not is_leak(t, max_growth_per_10k_bytes=DEFAULT_LIMIT, alpha=ALPHA)
    assert fooled > 0


def test_trend_reports_bytes_per_request_close_to_the_truth() -> None:
    s = memory_series(7, leak_bytes_per_request=1000.0, requests=20_000)
    t = fit_trend(s.t_s, s.requests, s.values)
    assert t is not None
    assert t.slope_bytes_per_request == pytest.approx(1000.0, rel=0.05)
    assert t.growth_per_10k_bytes == pytest.approx(1e7, rel=0.05)
    assert t.floor_growth_per_10k_bytes == pytest.approx(1e7, rel=0.1)


def test_warmup_is_excluded() -> None:
    # caches filling during the first 30 % of requests (20 MiB), flat afterwards
    s = memory_series(3)
    values = s.values + 20 * 2**20 * np.minimum(1.0, s.requests / (0.3 * s.requests[-1]))
    with_warmup = fit_trend(s.t_s, s.requests, values, warmup_fraction=0.0)
    without = fit_trend(s.t_s, s.requests, values, warmup_fraction=0.35)
    assert with_warmup is not None and without is not None
    assert is_leak(with_warmup, max_growth_per_10k_bytes=DEFAULT_LIMIT, alpha=ALPHA)
    assert not is_leak(without, max_growth_per_10k_bytes=DEFAULT_LIMIT, alpha=ALPHA)


def test_warmup_mask_seconds_and_fraction() -> None:
    t = np.arange(10.0)
    r = np.arange(10.0) * 100
    assert warmup_mask(t, r, seconds=3).tolist() == [False] * 3 + [True] * 7
    assert warmup_mask(t, r, fraction=0.5).tolist() == [False] * 5 + [True] * 5


def test_too_little_data_gives_no_trend() -> None:
    assert fit_trend(np.arange(5.0), np.arange(5.0), np.ones(5)) is None
    assert fit_trend(np.arange(50.0), np.zeros(50), np.arange(50.0)) is None  # no request completed
    nan = np.full(50, np.nan)
    assert fit_trend(np.arange(50.0), np.arange(50.0), nan) is None


def test_long_series_are_binned() -> None:
    s = memory_series(1, samples=86_400, requests=2_000_000, leak_bytes_per_request=10.0)
    t = fit_trend(s.t_s, s.requests, s.values, max_points=400)
    assert t is not None and t.n_points == 400 and t.n_samples > 70_000
    assert t.slope_bytes_per_request == pytest.approx(10.0, rel=0.05)


@settings(max_examples=60, deadline=None)
@given(slope=st.floats(-1e4, 1e4), offset=st.floats(0, 1e10), n=st.integers(8, 200))
def test_noiseless_line_slope_is_exact(slope: float, offset: float, n: int) -> None:
    r = np.arange(n, dtype=float) * 7
    t = fit_trend(np.arange(n, dtype=float), r, offset + slope * r, warmup_fraction=0.0)
    assert t is not None
    assert t.slope_bytes_per_request == pytest.approx(slope, rel=1e-6, abs=1e-6 * max(1.0, offset / n))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1e9, 1e9), min_size=8, max_size=120), shift=st.floats(-1e9, 1e9))
def test_slope_is_shift_invariant_and_tau_bounded(values: list[float], shift: float) -> None:
    v = np.array(values)
    r = np.arange(len(v), dtype=float)
    a = fit_trend(r, r, v, warmup_fraction=0.0)
    b = fit_trend(r, r, v + shift, warmup_fraction=0.0)
    assert a is not None and b is not None
    assert -1.0 <= a.tau <= 1.0 and 0.0 <= a.p_value <= 1.0
    assert b.slope_bytes_per_request == pytest.approx(a.slope_bytes_per_request, abs=1e-3 + 1e-9 * abs(shift))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), points=st.integers(1, 500))
def test_bin_medians_keeps_order_and_count(n: int, points: int) -> None:
    x = np.arange(n, dtype=float)
    bx, by = bin_medians(x, 2 * x, points)
    assert len(bx) == min(n, points)
    assert np.all(np.diff(bx) >= 0)
    assert np.allclose(by, 2 * bx)


def test_floor_slope_ignores_a_full_sawtooth_and_sees_a_ramp() -> None:
    r = np.arange(4000, dtype=float)
    saw = (r % 200) * 1000.0
    assert floor_slope(r, saw) == 0.0
    assert floor_slope(r, 5.0 * r) == pytest.approx(5.0)
