"""Every check FAILS on a planted defect and PASSES on its healthy twin (synthetic run inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from rmt.check.base import FAIL, PASS, SKIP, UNDECIDED, Check
from rmt.check.data import RunInputs, StreamWindows
from rmt.check.lifecycle_checks import WarmupCheck
from rmt.check.memory_checks import LeakCheck, PoolGrowthCheck
from rmt.check.ratelimit import repository_limits
from rmt.check.sched_checks import (
    FairnessCheck,
    PriorityCheck,
    RateLimitCheck,
    StarvationCheck,
    WeightsCheck,
)
from rmt.check.synthetic import instance_trace, memory_series, windows
from rmt.core.resources import ZOO_REPOSITORY

ZOO = ZOO_REPOSITORY
MS = 1_000_000


def statuses(check: Check, run: RunInputs) -> list[str]:
    return [v.status for v in check.run(run)]


def test_leak_fails_on_planted_slope_passes_on_flat() -> None:
    leak = RunInputs(memory=[memory_series(1, leak_bytes_per_request=100.0, name="rss_bytes{model=leak_host}")])
    healthy = RunInputs(memory=[memory_series(1, name="rss_bytes{model=leak_host_healthy}")])
    (v,) = LeakCheck().evaluate(leak)
    assert v.status == FAIL and v.subject == "rss_bytes{model=leak_host}"
    assert v.measured == pytest.approx(1e6, rel=0.1) and v.threshold == 512 * 1024
    assert v.evidence["bytes_per_request"] == pytest.approx(100, rel=0.1) and v.evidence["plot"]
    assert statuses(LeakCheck(), healthy) == [PASS]
    # a looser threshold lets the same leak pass: the threshold is what decides
    assert statuses(LeakCheck({"max_growth": "2MiB/10k"}), leak) == [PASS]


def test_leak_reports_every_failing_series() -> None:
    run = RunInputs(memory=[memory_series(s, leak_bytes_per_request=300.0, name=f"s{s}") for s in range(3)]
                    + [memory_series(9, name="ok")])
    verdicts = LeakCheck().evaluate(run)
    assert [v.status for v in verdicts] == [FAIL, FAIL, FAIL, PASS]
    assert statuses(LeakCheck({"series": "ok"}), run) == [PASS]


def test_pool_growth_only_judges_pool_series() -> None:
    pool = memory_series(2, leak_bytes_per_request=400.0, kind="pool", name="pinned_pool_bytes")
    flat_pool = memory_series(2, kind="pool", name="pinned_pool_bytes", noise_bytes=0.0)  # an exact counter
    assert statuses(PoolGrowthCheck(), RunInputs(memory=[pool])) == [FAIL]
    assert statuses(PoolGrowthCheck(), RunInputs(memory=[flat_pool])) == [PASS]
    assert statuses(PoolGrowthCheck(), RunInputs(memory=[memory_series(2, leak_bytes_per_request=400.0)])) == [SKIP]


def test_idle_series_are_skipped_and_required_fails_only_when_nothing_was_judged() -> None:
    idle = memory_series(4, name="idle")
    idle.requests[:] = 100.0  # its model completed nothing while sampled
    (v,) = LeakCheck().run(RunInputs(memory=[idle]))
    assert v.status == SKIP and "no request completed" in v.explanation
    assert statuses(LeakCheck(required=True), RunInputs(memory=[idle])) == [SKIP, FAIL]
    assert statuses(LeakCheck(required=True), RunInputs(memory=[idle, memory_series(5)])) == [SKIP, PASS]


def _rl_run(overlap: bool) -> RunInputs:
    """rl_high and rl_low each ask R1:2 per instance; no flag → budget 2 → one execution at a time."""
    starts = np.arange(0, 100 * MS, 10 * MS)
    traces = [
        instance_trace("rl_high", "rl_high_0_0", starts, 4 * MS),
        instance_trace("rl_high", "rl_high_0_1", starts + 5 * MS, 4 * MS),
        instance_trace("rl_low", "rl_low_0_0", starts + (2 * MS if overlap else 4 * MS), 1 * MS),
    ]
    return RunInputs(traces=traces, models=repository_limits(ZOO), rate_limiter_on=True)


def test_rate_limit_fails_when_budget_exceeded_passes_when_respected() -> None:
    verdicts = RateLimitCheck().evaluate(_rl_run(overlap=True))
    assert [(v.subject, v.status) for v in verdicts] == [("R1@device 0", FAIL)]
    v = verdicts[0]
    assert v.measured == 4 and v.threshold == 2
    assert v.evidence["executing"] == ["rl_high_0_0", "rl_low_0_0"]
    assert statuses(RateLimitCheck(), _rl_run(overlap=False)) == [PASS]


def test_rate_limit_uses_the_server_flags_as_budget() -> None:
    run = _rl_run(overlap=True)
    run.rate_limit_flags = ["R1:4"]
    assert statuses(RateLimitCheck(), run) == [PASS]
    run.rate_limiter_on = False
    assert statuses(RateLimitCheck(), run) == [SKIP]


def test_fairness_fails_when_one_model_is_starved_of_share() -> None:
    fair = RunInputs(windows=[windows("a", "a", seconds=60, rate_per_s=50, seed=1, pending=2),
                              windows("b", "b", seconds=60, rate_per_s=50, seed=2, pending=2)])
    unfair = RunInputs(windows=[windows("a", "a", seconds=60, rate_per_s=95, seed=1, pending=2),
                                windows("b", "b", seconds=60, rate_per_s=5, seed=2, pending=2)])
    assert statuses(FairnessCheck(), fair) == [PASS]
    (v,) = FairnessCheck().evaluate(unfair)
    assert v.status == FAIL and v.measured is not None and v.measured < 0.7 and "b" in v.explanation


def test_fairness_weights_follow_the_rate_limiter_priority() -> None:
    models = repository_limits(ZOO)
    two_to_one = [windows("h", "rl_high", seconds=60, rate_per_s=100, seed=1, pending=3),
                  windows("l", "rl_low", seconds=60, rate_per_s=50, seed=2, pending=3)]
    assert statuses(FairnessCheck(), RunInputs(windows=two_to_one, models=models, rate_limiter_on=True)) == [PASS]
    assert statuses(WeightsCheck(), RunInputs(windows=two_to_one, models=models, rate_limiter_on=True)) == [PASS]
    even = [windows("h", "rl_high", seconds=60, rate_per_s=75, seed=1, pending=3),
            windows("l", "rl_low", seconds=60, rate_per_s=75, seed=2, pending=3)]
    (v,) = WeightsCheck().evaluate(RunInputs(windows=even, models=models, rate_limiter_on=True))
    assert v.status == FAIL and v.subject == "rl_high vs rl_low" and v.evidence["expected_ratio"] == 2.0
    assert statuses(WeightsCheck(), RunInputs(windows=even, models=models, rate_limiter_on=False)) == [SKIP]


def test_weights_expect_the_weight_ratio_only_under_contention() -> None:
    """Triton QA's L0_rate_limiter: weights 1 vs 2 complete ~2:1 when R1 is scarce, alike when it is plentiful."""
    models = repository_limits(ZOO)
    def run(high: float, low: float, flags: list[str], hi: str = "rl_high", lo: str = "rl_low") -> RunInputs:
        return RunInputs(windows=[windows("h", hi, seconds=30, rate_per_s=high, seed=1, pending=4),
                                  windows("l", lo, seconds=30, rate_per_s=low, seed=2, pending=4)],
                         models=models, rate_limiter_on=True, rate_limit_flags=flags)
    # 4 instances asking R1:2 each, budget 2: contended, expect 2x
    (scarce,) = WeightsCheck().evaluate(run(100, 50, ["R1:2"]))
    assert scarce.status == PASS and scarce.evidence["expected_ratio"] == 2.0
    assert scarce.evidence["contention"][0]["wanted"] == 8 and "contended" in scarce.explanation
    # budget 8: every instance runs at once, the weights never arbitrate, expect 1x (both ways)
    (plenty,) = WeightsCheck().evaluate(run(75, 75, ["R1:8"]))
    assert plenty.status == PASS and plenty.evidence["expected_ratio"] == 1.0 and "not contended" in plenty.explanation
    assert statuses(WeightsCheck(), run(100, 50, ["R1:8"])) == [FAIL]
    assert statuses(WeightsCheck(), run(50, 100, ["R1:8"])) == [FAIL]
    # the zoo's plentiful pair under the campaign's R1:2: one instance asking R1:1 each
    assert statuses(WeightsCheck(), run(75, 75, ["R1:2"], "rl_plenty_high", "rl_plenty_low")) == [PASS]
    # one request outstanding per model: two R1:2 executions at most, budget 4 holds them
    few = run(75, 75, ["R1:4"])
    for w in few.windows:
        w.pending[:] = 1
    (v,) = WeightsCheck().evaluate(few)
    assert v.status == PASS and v.evidence["contention"][0]["wanted"] == 4
    # declared intent (weights.expect) is judged as declared: the unweighted pair meant 2:1 still fails
    flat = run(75, 75, [], "rl_flat_high", "rl_flat_low")
    (declared,) = WeightsCheck({"expect": "rl_flat_high/rl_flat_low=2"}).evaluate(flat)
    assert declared.status == FAIL and declared.measured == pytest.approx(0.5, rel=0.1)


def test_starvation_fails_on_a_stall_passes_without() -> None:
    stalled = RunInputs(windows=[windows("low", "m", seconds=60, rate_per_s=20, stall=(20, 32))])
    (v,) = StarvationCheck().evaluate(stalled)
    assert v.status == FAIL and v.measured == 12.0 and v.evidence["start_s"] == 20.0
    assert statuses(StarvationCheck(), RunInputs(windows=[windows("low", "m", seconds=60, rate_per_s=20)])) == [PASS]
    assert statuses(StarvationCheck({"max_gap": "15s"}), stalled) == [PASS]


def _never_served(seconds: int = 20) -> StreamWindows:
    """Priority 2 under strict priority: 2 requests sent at t=0 wait the whole run and time out at its end; the load
    writes no window for the seconds in between (nothing was sent or answered then)."""
    t = np.array([0.0, seconds - 1.0])
    zero = np.zeros(2)
    return StreamWindows("qp/p2", "queue_priority", t, np.array([2.0, 0.0]), zero.copy(), np.array([0.0, 2.0]),
                         np.array([2.0, 0.0]), 2, failed_by={"timeout": np.array([0.0, 2.0]), "rejected": zero})


def test_starvation_counts_successful_service_only() -> None:
    served = windows("qp/p1", "queue_priority", seconds=20, rate_per_s=50, priority=1, pending=8)
    verdicts = StarvationCheck().evaluate(RunInputs(windows=[served, _never_served()]))
    assert [(v.subject, v.status) for v in verdicts] == [("qp/p1", PASS), ("qp/p2", FAIL)]
    starved = verdicts[1]
    assert starved.measured == 20.0 and starved.evidence["served"] == 0 and starved.evidence["unserved"] == 2
    assert "0 of 2 answered requests served" in starved.explanation
    # every request rejected at once (queue full): nothing outstanding at any window's end, still never served
    t = np.arange(10.0)
    rejected = StreamWindows("r", "m", t, np.full(10, 30.0), np.zeros(10), np.full(10, 30.0), np.zeros(10),
                             failed_by={"rejected": np.full(10, 30.0)})
    assert statuses(StarvationCheck(), RunInputs(windows=[rejected])) == [FAIL]
    # error replies from the model itself were served (an error path is not starvation)
    errors = StreamWindows("e", "m", t, np.full(10, 30.0), np.zeros(10), np.full(10, 30.0), np.zeros(10),
                           failed_by={"server": np.full(10, 30.0)})
    assert statuses(StarvationCheck(), RunInputs(windows=[errors])) == [PASS]


def test_priority_is_undecided_on_a_level_that_was_never_served() -> None:
    served = windows("qp/p1", "queue_priority", seconds=20, rate_per_s=50, priority=1, pending=8)
    (v,) = PriorityCheck(required=True).run(RunInputs(windows=[served, _never_served()]))
    assert v.status == UNDECIDED and v.undecided and "priority 2 had 0 of 2 answered requests served" in v.explanation
    # enough of both levels served: judged again
    low = windows("qp/p2", "queue_priority", seconds=20, rate_per_s=5, priority=2, latency_us=50_000, seed=4)
    (judged,) = PriorityCheck().evaluate(RunInputs(windows=[served, low]))
    assert judged.status == PASS and judged.evidence["served"]["2"] == float(np.sum(low.completed))


def test_priority_fails_when_high_priority_is_slower() -> None:
    def run(high_us: float, low_us: float) -> RunInputs:
        return RunInputs(windows=[windows("hi", "queue_priority", seconds=10, rate_per_s=5, priority=1,
                                          latency_us=high_us),
                                  windows("lo", "queue_priority", seconds=10, rate_per_s=5, priority=2,
                                          latency_us=low_us, seed=3)])
    (ok,) = PriorityCheck().evaluate(run(2_000, 20_000))
    assert ok.status == PASS and ok.measured is not None and ok.measured < 0.2
    assert statuses(PriorityCheck(), run(20_000, 2_000)) == [FAIL]


def test_warmup_cold_start_fails_passes_on_warmed_twin() -> None:
    cold = RunInputs(windows=[windows("c", "cold_start", seconds=10, rate_per_s=5, first_us=[802_000.0])])
    warm = RunInputs(windows=[windows("w", "cold_start_warmed", seconds=10, rate_per_s=5, first_us=[2_500.0])])
    (v,) = WarmupCheck().evaluate(cold)
    assert v.status == FAIL and v.measured is not None and v.measured > 100
    assert v.evidence["steady_windows"] == 0 and "steady p99" in v.explanation  # no window maxima: the p99
    assert statuses(WarmupCheck(), warm) == [PASS]


def test_warmup_compares_the_first_window_with_typical_steady_windows() -> None:
    """A contended model (rate-limited: replies of 1 ms to 100 ms) has a 100 ms slowest reply every second: its first
    window's 108 ms is no cold start, though 4x its p50; 800 ms is."""
    def run(first_ms: float) -> RunInputs:
        w = windows("h", "rl_high", seconds=12, rate_per_s=50, latency_us=28_000, first_us=[first_ms * 1000])
        w.latency_max_us = np.random.default_rng(5).uniform(80_000, 120_000, 12)
        return RunInputs(windows=[w])
    (busy,) = WarmupCheck().evaluate(run(108))
    assert busy.status == PASS and busy.measured is not None and busy.measured < 1.5
    assert busy.evidence["steady_windows"] == 9 and busy.evidence["steady_p50_us"] < 30_000
    (cold,) = WarmupCheck().evaluate(run(900))
    assert cold.status == FAIL and cold.measured is not None and cold.measured > 7
    assert statuses(WarmupCheck({"min_excess": "900ms"}), run(900)) == [PASS]  # the excess bound decides too


@pytest.mark.parametrize("cls", [LeakCheck, PoolGrowthCheck, RateLimitCheck, FairnessCheck, StarvationCheck,
                                 WeightsCheck, PriorityCheck, WarmupCheck])
def test_no_evidence_skips_unless_required(cls: type[Check]) -> None:
    assert statuses(cls(), RunInputs()) == [SKIP]
    assert statuses(cls(required=True), RunInputs()) == [FAIL]
