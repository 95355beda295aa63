"""Statistics of the checkers: Jain's index, max-min fair share, starvation gaps, concurrency sweep, latency ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rmt.check.concurrency import busy_fraction_while, open_at, profile
from rmt.check.fairness import fairness_index, jain_index, longest_starvation, max_min_fair_share
from rmt.check.latency import cold_ratio, histogram_of, merged, p99_ratio, percentile_us

alloc = st.lists(st.floats(0, 1e6), min_size=1, max_size=30)


@given(alloc)
def test_jain_is_between_1_over_n_and_1(x: list[float]) -> None:
    j = jain_index(x)
    assert 1.0 / len(x) - 1e-9 <= j <= 1.0 + 1e-9


@given(st.floats(0.001, 1e6), st.integers(1, 30))
def test_jain_is_1_for_equal_and_1_over_n_for_one_winner(v: float, n: int) -> None:
    assert jain_index([v] * n) == pytest.approx(1.0)
    assert jain_index([v] + [0.0] * (n - 1)) == pytest.approx(1.0 / n)


@given(alloc, st.floats(0.01, 100))
def test_jain_is_scale_invariant(x: list[float], k: float) -> None:
    assume(sum(x) > 1e-3)
    assert jain_index([k * v for v in x]) == pytest.approx(jain_index(x), rel=1e-6)


def test_jain_rejects_negative() -> None:
    with pytest.raises(ValueError):
        jain_index([1.0, -1.0])
    assert math.isnan(jain_index([]))


demands = st.lists(st.one_of(st.floats(0, 1e4), st.just(math.inf)), min_size=1, max_size=12)


@settings(max_examples=200)
@given(demands, st.floats(0, 1e5), st.data())
def test_max_min_share_is_feasible_and_saturating(d: list[float], capacity: float, data: st.DataObject) -> None:
    w = data.draw(st.lists(st.floats(0.1, 10), min_size=len(d), max_size=len(d)))
    share = max_min_fair_share(d, capacity, w)
    assert np.all(share >= -1e-9)
    assert np.all(share <= np.array(d) + 1e-6 * (1 + np.where(np.isinf(d), 0, d)))
    assert share.sum() <= capacity * (1 + 1e-9) + 1e-9
    # Pareto: either capacity is used up or every demand is met
    met = np.all(share >= np.array(d) - 1e-6 * (1 + np.where(np.isinf(d), 0, d)))
    assert met or share.sum() == pytest.approx(capacity, rel=1e-6, abs=1e-6)


@given(demands, st.floats(0, 1e5))
def test_max_min_no_unsatisfied_party_gets_less_than_a_richer_one(d: list[float], capacity: float) -> None:
    share = max_min_fair_share(d, capacity)
    dem = np.array(d)
    unsatisfied = share < dem - 1e-6
    if unsatisfied.any():
        assert np.all(share <= share[unsatisfied].min() + 1e-6 * (1 + capacity))


def test_max_min_known_values() -> None:
    assert max_min_fair_share([1, 5, math.inf], 9).tolist() == [1, 4, 4]
    assert max_min_fair_share([math.inf, math.inf], 9, [2, 1]).tolist() == [6, 3]


def test_fairness_index_weighted_2_to_1_is_fair_and_equal_split_is_not() -> None:
    j, fair = fairness_index([200, 100], [math.inf, math.inf], [1.0, 0.5])
    assert j == pytest.approx(1.0) and fair.tolist() == pytest.approx([200, 100])
    assert fairness_index([150, 150], [math.inf, math.inf], [1.0, 0.5])[0] < 0.95
    assert fairness_index([300, 0], [math.inf, math.inf])[0] == pytest.approx(0.5)


def test_starvation_gap_runs_and_holes() -> None:
    t = np.arange(10.0)
    g = longest_starvation(t, np.array([1, 0, 0, 0, 1, 0, 0, 1, 0, 0]), np.ones(10))
    assert (g.length_s, g.start_s) == (3.0, 1.0)
    # nothing pending: idle, not starving
    assert longest_starvation(t, np.zeros(10), np.zeros(10)).length_s == 0.0
    # a hole in the windows breaks a run
    assert longest_starvation(np.array([0, 1, 2, 5, 6.0]), np.zeros(5), np.ones(5)).length_s == 3.0


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_starvation_gap_matches_a_naive_scan(flags: list[tuple[bool, bool]]) -> None:
    done = np.array([0 if idle else 1 for idle, _ in flags])
    pend = np.array([1 if p else 0 for _, p in flags])
    best = run = 0
    for c, p in zip(done, pend, strict=True):
        run = run + 1 if (c == 0 and p > 0) else 0
        best = max(best, run)
    assert longest_starvation(np.arange(len(flags), dtype=float), done, pend).length_s == best


intervals = st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 100)), min_size=1, max_size=60)


@given(intervals)
def test_sweep_peak_equals_brute_force(iv: list[tuple[int, int]]) -> None:
    s = np.array([a for a, _ in iv])
    e = np.array([a + d for a, d in iv])
    brute = max(int(open_at(t, s, e).sum()) for t in range(0, 1101))
    assert profile(s, e).peak == brute


def test_touching_intervals_do_not_overlap_and_weights_add() -> None:
    p = profile(np.array([0, 10]), np.array([10, 20]))
    assert p.peak == 1
    p2 = profile(np.array([0, 5]), np.array([10, 20]), np.array([2.0, 3.0]))
    assert p2.peak == 5 and p2.first_above(4) is not None and p2.time_above_ns(4) == 5
    assert profile(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).peak == 0


def test_cross_device_busy_fraction() -> None:
    dev0 = profile(np.array([0, 0]), np.array([100, 100]))  # saturated (2 instances) all along
    independent = profile(np.arange(0, 100, 10), np.arange(0, 100, 10) + 8)
    blocked = profile(np.array([100]), np.array([150]))
    assert busy_fraction_while(independent, dev0, 2) == pytest.approx(0.8)
    assert busy_fraction_while(blocked, dev0, 2) == 0.0


def test_latency_percentiles_and_ratios() -> None:
    fast = histogram_of(np.full(1000, 1000.0))
    slow = histogram_of(np.full(1000, 5000.0))
    assert percentile_us(fast, 99) == pytest.approx(1000, rel=1e-3)
    assert p99_ratio(fast, slow) == pytest.approx(0.2, rel=1e-2)
    assert merged([fast, slow]).get_total_count() == 2000
    assert cold_ratio([800_000.0, 1000.0], fast) == pytest.approx(800, rel=1e-2)
    assert math.isnan(cold_ratio([], fast)) and math.isnan(p99_ratio(None, slow))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1, 1e7), min_size=1, max_size=200), st.lists(st.floats(1, 1e7), min_size=1, max_size=200))
def test_merged_histogram_equals_histogram_of_all(a: list[float], b: list[float]) -> None:
    m = merged([histogram_of(a), histogram_of(b)])
    whole = histogram_of(a + b)
    for q in (50, 90, 99, 100):
        assert percentile_us(m, q) == percentile_us(whole, q)
