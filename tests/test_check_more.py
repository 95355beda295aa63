"""Queue, concurrency, rate-limit, warmup, readiness and reload checks: each FAILS on a planted defect and PASSES on
its healthy twin (synthetic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from rmt.check.attribution import FragmentationCheck, LeakAttributionCheck
from rmt.check.base import FAIL, PASS, SKIP, UNDECIDED, WARN, Check
from rmt.check.data import CounterSeries, FailureEvent, MemorySeries, ModelEvent, RunInputs, StreamWindows
from rmt.check.inputs import instance_traces
from rmt.check.lifecycle_checks import (
    CrossDeviceCheck,
    ReadinessCheck,
    ReloadCheck,
    ReloadLimitCheck,
    WarmupExecutedCheck,
)
from rmt.check.memory_checks import LeakCheck
from rmt.check.queue_checks import ConcurrencyCheck, QueuePolicyCheck
from rmt.check.ratelimit import repository_limits
from rmt.check.records import control_events, warmup_lines
from rmt.check.sched_checks import RateLimitCheck
from rmt.check.synthetic import instance_trace, memory_series, windows
from rmt.check.trend import fit_trend
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import MULTI_GPU_REPOSITORY, ZOO_REPOSITORY

ZOO = ZOO_REPOSITORY
MS = 1_000_000


def statuses(check: Check, run: RunInputs) -> list[str]:
    return [v.status for v in check.run(run)]


def configs(*names: str) -> dict[str, Any]:
    return {n: load_config_pbtxt(ZOO / n / "config.pbtxt") for n in names}


def stream(model: str, pattern: str, phases: list[tuple[str, int, int]], rate: float, *, fail_share: float = 0.0,
           priority: int | None = None, **extra: np.ndarray) -> StreamWindows:
    """Windows over ``phases`` (name, first second, seconds), sending ``rate``/s only in phases named ``pattern``
    (or in every phase when the phase name is ``*``)."""
    n = max(s + k for _, s, k in phases)
    t = np.arange(n, dtype=float)
    phase = np.empty(n, dtype=object)
    sent = np.zeros(n)
    for name, s, k in phases:
        phase[s:s + k] = name
        if name in (pattern, "*"):
            sent[s:s + k] = rate
    failed = np.round(sent * fail_share)
    w = StreamWindows(f"{model}/p{priority or 0}/{pattern}", model, t, sent, sent - failed, failed, np.zeros(n),
                      priority, pattern=pattern, phase=phase,
                      failed_by={"server": failed, "timeout": np.zeros(n), "rejected": np.zeros(n),
                                 "client": np.zeros(n)})
    for key, value in extra.items():
        setattr(w, key, value)
    return w


def model_memory(model: str, windows: list[StreamWindows], leak: dict[str, float], seed: int = 0) -> MemorySeries:
    """A 10 Hz memory series of ``model`` that grows ``leak[pattern]`` bytes per request of that pattern."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, len(windows[0].t_s), 0.1)
    per_s = np.sum([w.requests for w in windows], axis=0)
    growth = np.sum([w.requests * leak.get(w.pattern, 0.0) for w in windows], axis=0)
    idx = np.floor(t).astype(int)
    frac = t - idx
    done = np.concatenate([[0], np.cumsum(per_s)])
    grown = np.concatenate([[0], np.cumsum(growth)])
    requests = done[idx] + frac * per_s[idx]
    values = 3e8 + grown[idx] + frac * growth[idx] + rng.normal(0, 32 * 1024, len(t))
    return MemorySeries(f"process_rss_bytes{{model={model}}}", t, requests, values, "memory", model, "host")


PHASES = [("small", 0, 20), ("big", 20, 20)]


def test_leak_attribution_names_the_leaking_shape() -> None:
    ws = [stream("leak_on_shape", "small", PHASES, 50), stream("leak_on_shape", "big", PHASES, 50)]
    leaky = RunInputs(windows=ws, memory=[model_memory("leak_on_shape", ws, {"big": 256 * 1024})],
                      patterns={"big": "shape [8192]", "small": "shape [16]"})
    by = {v.subject.rsplit(" / ", 1)[1]: v for v in LeakAttributionCheck().evaluate(leaky)}
    assert by["big"].status == FAIL and "shape [8192]" in by["big"].explanation
    assert by["big"].evidence["bytes_per_request"] == pytest.approx(256 * 1024, rel=0.05)
    assert by["small"].status == PASS and abs(by["small"].evidence["bytes_per_request"]) < 2048
    healthy = RunInputs(windows=ws, memory=[model_memory("leak_on_shape", ws, {})])
    assert statuses(LeakAttributionCheck(), healthy) == [PASS, PASS]


def test_leak_attribution_names_the_error_path_and_splits_mixed_phases() -> None:
    phases = [("normal", 0, 20), ("negative", 20, 20), ("*", 40, 20)]
    ws = [stream("leak_on_error", "normal", phases, 40),
          stream("leak_on_error", "negative", phases, 20, fail_share=1.0)]
    run = RunInputs(windows=ws, memory=[model_memory("leak_on_error", ws, {"negative": 100_000})])
    by = {v.subject.rsplit(" / ", 1)[1]: v for v in LeakAttributionCheck().evaluate(run)}
    assert by["negative"].status == FAIL and "error path" in by["negative"].explanation
    assert by["negative"].evidence["error_path"] and by["negative"].evidence["bytes_per_request"] == pytest.approx(
        100_000, rel=0.1)
    assert by["normal"].status == PASS
    assert set(by["negative"].evidence["phases"]) == {"normal", "negative", "*"}


def test_fragmentation_fails_when_enough_memory_was_free() -> None:
    free = {"gpu=0": (np.arange(10.0), np.full(10, 8e9))}
    oom = [FailureEvent(5.5, "m", "CUDA out of memory. Tried to allocate 2.00 GiB", 2 * 2**30, "gpu=0")]
    (v,) = FragmentationCheck().evaluate(RunInputs(failures=oom, free_memory=free))
    assert v.status == FAIL and v.measured == 1 and v.evidence["fragmentation_examples"][0]["free_bytes"] == 8e9
    exhausted = {"gpu=0": (np.arange(10.0), np.full(10, 1e9))}
    assert statuses(FragmentationCheck(), RunInputs(failures=oom, free_memory=exhausted)) == [PASS]
    other = [FailureEvent(5.5, "m", "invalid input shape", 2 * 2**30, "gpu=0")]
    assert statuses(FragmentationCheck(), RunInputs(failures=other, free_memory=free)) == [PASS]


def _qp(rejected: np.ndarray, timeouts: np.ndarray, priority: int, in_flight_max: float, pending: float,
        latency_max_us: float = 30_000.0, timeout_us: int = 0) -> StreamWindows:
    n = len(rejected)
    w = stream("queue_priority", "x", [("*", 0, n)], 20, priority=priority)
    w.failed_by = {"rejected": rejected, "timeout": timeouts, "server": np.zeros(n), "client": np.zeros(n)}
    w.in_flight_max, w.pending = np.full(n, in_flight_max), np.full(n, pending)
    w.latency_max_us, w.timeout_us = np.full(n, latency_max_us), timeout_us
    return w


def test_queue_policy_as_configured_passes_and_each_breach_fails() -> None:
    zero, some = np.zeros(10), np.r_[np.zeros(5), np.ones(5) * 3]
    base: dict[str, Any] = {"configs": configs("queue_priority"), "models": repository_limits(ZOO)}
    healthy = RunInputs(windows=[_qp(some, some, 2, 40, 30, timeout_us=2000), _qp(zero, zero, 1, 12, 10)], **base)
    assert statuses(QueuePolicyCheck(), healthy) == [PASS, PASS]
    cases = {
        "rejected_unbounded": _qp(some, zero, 1, 40, 30),                   # level 1 has no max_queue_size
        "timeout_on_delay": _qp(zero, some, 1, 12, 10),                     # level 1 DELAYs, never rejects
        "rejected_not_full": _qp(some, zero, 2, 6, 4),                      # 6 outstanding < 16: not full
        "never_rejected_full": _qp(zero, zero, 2, 60, 50),                  # 50 waiting > 16 + 8, none rejected
        "late_success": _qp(zero, zero, 2, 12, 10, latency_max_us=3e6, timeout_us=2000),
    }
    for rule, w in cases.items():
        (v,) = QueuePolicyCheck().evaluate(RunInputs(windows=[w], **base))
        assert v.status == FAIL and v.evidence["violations"][rule] > 0, (rule, v.explanation)


def _counter(model: str, concurrency: float, seconds: int = 20) -> CounterSeries:
    t = np.arange(0, seconds, 0.1)
    return CounterSeries("nv_inference_compute_infer_duration_us", model, t, t * concurrency * 1e6)


def test_blackbox_concurrency_against_instances_and_budget() -> None:
    base: dict[str, Any] = {"configs": configs("rl_high", "rl_low"), "models": repository_limits(ZOO)}
    limited = RunInputs(counters=[_counter("rl_high", 0.6), _counter("rl_low", 0.3)], rate_limiter_on=True, **base)
    assert statuses(ConcurrencyCheck(), limited) == [PASS, PASS, PASS]  # 2×0.6 + 2×0.3 = 1.8 ≤ R1 budget 2
    free = RunInputs(counters=[_counter("rl_high", 1.9), _counter("rl_low", 1.8)], **base)
    assert statuses(ConcurrencyCheck(), free) == [PASS, PASS]  # no limiter: only instances bound (2 each)
    verdicts = ConcurrencyCheck({"budget": "R1:2"}).evaluate(free)
    (res,) = [v for v in verdicts if v.subject == "R1 (rate limiter)"]
    assert res.status == FAIL and res.evidence["peak_held"] == pytest.approx(2 * 3.7, rel=0.01)
    over = RunInputs(counters=[_counter("rl_high", 3.0)], **base)
    assert [v.status for v in ConcurrencyCheck().evaluate(over)] == [FAIL]
    # an ensemble has no instances of its own (its steps execute): judged through its composing models only
    steps = RunInputs(counters=[_counter("ensemble_pair", 0.5), _counter("ens_second", 0.5)],
                      configs=configs("ensemble_pair", "ens_second"), models=repository_limits(ZOO))
    assert [v.subject for v in ConcurrencyCheck().evaluate(steps)] == ["ens_second (instances)"]


def test_rate_limit_without_traces_judges_triton_counters_or_says_it_cannot() -> None:
    base: dict[str, Any] = {"configs": configs("rl_high", "rl_low"), "models": repository_limits(ZOO),
                            "rate_limiter_on": True, "rate_limit_flags": ["R1:2"]}
    traffic = [windows("h", "rl_high", seconds=20, rate_per_s=50), windows("l", "rl_low", seconds=20, rate_per_s=25)]
    ok = RunInputs(counters=[_counter("rl_high", 0.6), _counter("rl_low", 0.3)], windows=traffic, **base)
    (v,) = RateLimitCheck().run(ok)
    assert (v.subject, v.status) == ("R1 (Triton counters)", PASS) and v.measured == pytest.approx(1.8, rel=0.01)
    over = RunInputs(counters=[_counter("rl_high", 1.0), _counter("rl_low", 0.5)], windows=traffic, **base)
    assert statuses(RateLimitCheck(), over) == [FAIL]  # 2×1.0 + 2×0.5 = 3 units held on average, budget 2
    # batched executions: the compute time counts once per request, exec_count/requests brings it back
    t = np.arange(0, 20, 0.1)
    batched = [_counter("rl_high", 4.0), CounterSeries("nv_inference_exec_count", "rl_high", t, t * 100.0),
               CounterSeries("nv_inference_request_success", "rl_high", t, t * 400.0)]
    assert statuses(RateLimitCheck(), RunInputs(counters=batched, windows=traffic, **base)) == [PASS]
    # neither traces nor counters: the models had traffic, the check says it cannot judge them, even when required
    (blind,) = RateLimitCheck(required=True).run(RunInputs(windows=traffic, **base))
    assert blind.status == UNDECIDED and blind.undecided and "rl_high, rl_low" in blind.subject


def test_rate_limit_budget_judges_a_run_without_the_limiter() -> None:
    starts = np.arange(0, 100 * MS, 10 * MS)
    run = RunInputs(traces=[instance_trace("rl_high", "rl_high_0_0", starts, 4 * MS),
                            instance_trace("rl_low", "rl_low_0_0", starts + 2 * MS, 4 * MS)],
                    models=repository_limits(ZOO))
    assert statuses(RateLimitCheck(), run) == [SKIP]
    assert statuses(RateLimitCheck({"budget": "R1:2"}), run) == [FAIL]
    assert statuses(RateLimitCheck({"budget": "R1:4"}), run) == [PASS]


def test_warmup_executed_from_traces_and_the_verbose_log() -> None:
    base: dict[str, Any] = {"configs": configs("cold_start_warmed"), "models": repository_limits(ZOO)}
    warmed = instance_trace("cold_start_warmed", "cold_start_warmed_0_0", np.arange(5) * MS, MS)
    warmed.exec_index, warmed.cold = np.arange(1, 6), np.zeros(5)
    log = ["I0101 00:00:00.1 backend_model_instance.cc:1] model 'cold_start_warmed' instance cold_start_warmed_0_0 "
           "is running warmup sample 'cold_start_sample' for iteration 1"]
    assert warmup_lines(log) == [("cold_start_warmed", "cold_start_warmed_0_0", "cold_start_sample")]
    assert statuses(WarmupExecutedCheck(), RunInputs(traces=[warmed], server_log=log, **base)) == [PASS]
    skipped = instance_trace("cold_start_warmed", "cold_start_warmed_0_0", np.arange(5) * MS, MS)
    skipped.exec_index, skipped.cold = np.arange(5), np.r_[1, np.zeros(4)]
    (v,) = WarmupExecutedCheck().evaluate(RunInputs(traces=[skipped], **base))
    assert v.status == FAIL and v.measured == 2 and "before the 1 warmup executions" in v.explanation
    (v,) = WarmupExecutedCheck().evaluate(RunInputs(traces=[warmed], server_log=["no warmup here"], **base))
    assert v.status == FAIL and "no 'is running warmup sample" in v.explanation


def test_readiness_after_the_last_warmup() -> None:
    events = [ModelEvent(10.0, "m", "warmup_start"), ModelEvent(10.8, "m", "warmup_end")]
    polls = np.array([10.0, 10.5, 10.9, 11.0]), np.array([0.0, 0.0, 1.0, 1.0])
    (ok,) = ReadinessCheck().evaluate(RunInputs(events=events, readiness={"m": polls}))
    assert ok.status == PASS and ok.measured == pytest.approx(0.1)
    early = np.array([10.0, 10.5, 10.9]), np.array([0.0, 1.0, 1.0])
    (bad,) = ReadinessCheck().evaluate(RunInputs(events=events, readiness={"m": early}))
    assert bad.status == FAIL and bad.measured == pytest.approx(-0.3)


def test_reload_failures_and_new_limit_from_model_control_records() -> None:
    rows = [{"model": "probe", "action": "reload", "requested_ns": 20 * 10**9, "returned_ns": 22 * 10**9,
             "ok": True, "first_ready_ns": 22 * 10**9, "last_not_ready_ns": None,
             "config_changes": {"instance_group.0.count": 1}}]
    events, polls = control_events(rows)
    assert [e.event for e in events] == ["reload_start", "reload_end"] and polls == {"probe": [(22.0, 1.0)]}
    ws = stream("probe", "x", [("*", 0, 40)], 50)
    run = RunInputs(windows=[ws], events=events)
    assert statuses(ReloadCheck(), run) == [PASS]
    ws.failed = ws.failed.copy()
    ws.failed[21] = 3
    (v,) = ReloadCheck().evaluate(run)
    assert v.status == FAIL and v.measured == 3
    one = instance_trace("probe", "probe_0_0", np.arange(23, 30) * 10**9, 10**8)
    two = instance_trace("probe", "probe_0_1", np.arange(23, 30) * 10**9 + 5 * 10**7, 10**8)
    assert statuses(ReloadLimitCheck(), RunInputs(traces=[one], events=events)) == [PASS]
    (v,) = ReloadLimitCheck().evaluate(RunInputs(traces=[one, two], events=events))
    assert v.status == FAIL and v.measured == 2


def _device_traces(serialised: bool) -> list:
    rng = np.random.default_rng(3)
    a = [instance_trace("m", f"m_0_{i}", np.arange(0, 1000, 10) * MS + i, 9 * MS, device=0) for i in range(2)]
    a[0].start_ns[50:], a[1].start_ns[50:] = a[0].start_ns[50:] + 500 * MS, a[1].start_ns[50:] + 500 * MS
    a[0].end_ns, a[1].end_ns = a[0].start_ns + 9 * MS, a[1].start_ns + 9 * MS
    starts = np.sort(rng.uniform(0, 2000, 150)).astype(np.int64) * MS
    if serialised:  # device 1 only runs while device 0 is idle (a global lock)
        busy0 = np.zeros(2000, dtype=bool)
        for t in a:
            for s in (t.start_ns // MS).tolist():
                busy0[s:s + 10] = True
        starts = np.array([s for s in starts if not busy0[s // MS:s // MS + 5].any()], dtype=np.int64)
    return [*a, instance_trace("m", "m_1_0", starts, 5 * MS, device=1)]


def test_cross_device_independence() -> None:
    by = {v.subject: v for v in CrossDeviceCheck().evaluate(RunInputs(traces=_device_traces(False)))}
    assert by["device 1 while device 0 saturated"].status == PASS
    by = {v.subject: v for v in CrossDeviceCheck().evaluate(RunInputs(traces=_device_traces(True)))}
    assert by["device 1 while device 0 saturated"].status == FAIL
    assert by["device 1 while device 0 saturated"].measured == pytest.approx(0.0, abs=0.05)


def _budgeted_traces(coupled: bool) -> list:
    """GPU 0: 3 instances under a budget of 1 (back-to-back 20 ms executions, one at a time, the whole 2 s);
    GPU 1: 4 instances under a budget of 4, 10 ms executions every 25 ms each — or, coupled by a global budget of 1,
    only in the 5 ms gaps GPU 0 leaves every 100 ms."""
    g0 = [instance_trace("hog", f"hog_0_{i}", np.arange(i, 100, 3) * 20 * MS, 19 * MS, device=0) for i in range(3)]
    if coupled:
        g0 = [instance_trace("hog", f"hog_0_{i}", np.array([s for s in t.start_ns if (s // MS) % 100 < 80]),
                             19 * MS, device=0) for i, t in enumerate(g0)]
        g1 = [instance_trace("split", "split_1_0", np.arange(0, 2000, 100) * MS + 81 * MS, 4 * MS, device=1)]
    else:
        g1 = [instance_trace("split", f"split_1_{i}", np.arange(0, 2000, 25) * MS + i * 6 * MS, 10 * MS, device=1)
              for i in range(4)]
    return [*g0, *g1]


def test_cross_device_saturation_is_the_devices_budget_not_its_instance_count() -> None:
    by = {v.subject: v for v in CrossDeviceCheck().evaluate(RunInputs(traces=_budgeted_traces(False)))}
    v = by["device 1 while device 0 saturated"]
    assert v.status == PASS and v.evidence["capacity"] == 1 and v.evidence["instances"] == 3
    assert v.evidence["saturated_s"] > 1.5 and v.measured == pytest.approx(1.0)
    assert "peak of 1 executions at once (3 instances)" in v.explanation
    by = {v.subject: v for v in CrossDeviceCheck().evaluate(RunInputs(traces=_budgeted_traces(True)))}
    v = by["device 1 while device 0 saturated"]
    assert v.status == FAIL and v.measured == 0.0
    assert statuses(CrossDeviceCheck({"min_saturated": "5s"}), RunInputs(traces=_budgeted_traces(True))) == [SKIP]


def _shaped(rise: Callable[[np.ndarray], np.ndarray], requests: int = 2_000, seed: int = 7) -> MemorySeries:
    """A 10 Hz, page-rounded RSS series over ``requests`` requests (a default-duration run) shaped by ``rise``."""
    rng = np.random.default_rng(seed)
    done = np.cumsum(rng.poisson(requests / 200, 200)).astype(float)
    values = 150e6 + rise(done) + rng.normal(0.0, 8192, 200)
    return MemorySeries("process_rss_bytes{model=m}", np.arange(200) / 10.0, done, np.floor(values / 4096) * 4096)


def test_the_shape_rule_tells_settling_from_a_sustained_rise_in_a_short_run() -> None:
    """~2 000 requests: a 2 KiB/request leak fails; a decaying rise, a step, a filled cache pass at the same bound."""
    cases = {
        "leak": (lambda r: 2048.0 * r, FAIL),
        "decaying": (lambda r: 4e6 * (1 - np.exp(-r / 250.0)), PASS),  # allocator settling: 4 MB, 250-request scale
        "step": (lambda r: np.where(r > 700, 3e6, 0.0), PASS),
        "cache": (lambda r: 2048.0 * np.minimum(r, 700.0), PASS),  # fills 1.4 MB in 700 requests, then flat
    }
    for name, (rise, want) in cases.items():
        (v,) = LeakCheck().evaluate(RunInputs(memory=[_shaped(rise)]))
        assert v.status == want, (name, v.explanation)
        assert v.threshold == 512 * 1024 and "p_value" in v.evidence and "margin" in v.evidence
    # the same decaying rise judged over its whole span (the old, shapeless statistic) exceeds the bound
    settling = _shaped(cases["decaying"][0])
    whole = fit_trend(settling.t_s, settling.requests, settling.values)
    assert whole is not None and whole.growth_per_10k_bytes > 512 * 1024


def test_samples_without_completed_requests_do_not_read_as_a_stopped_rise() -> None:
    """A model whose traffic ends before the run does (a phase without it, the drain): the idle samples at its last
    request count are one point, so its per-request leak is still sustained to its last request. The shape is the
    campaign's ensemble step keeping 64 KiB per request: 6.5 s of traffic, then 1.7 s of samples at 955 requests (the
    RSS read lagging the request count by a sample)."""
    done = np.r_[np.linspace(0.0, 947.0, 65), np.full(18, 955.0)]
    values = np.floor((45e6 + 65536.0 * np.r_[0.0, done[:-1]]) / 4096) * 4096  # each read sees the request before
    series = MemorySeries("process_rss_bytes{model=m}", np.arange(83) / 10.0, done, values)
    (v,) = LeakCheck({"max_growth": "6KiB/request"}).evaluate(RunInputs(memory=[series]))
    assert v.status == FAIL and v.evidence["bytes_per_request"] == pytest.approx(65536, rel=0.1), v.explanation


def test_too_little_data_is_undecided_and_says_how_much_would_decide() -> None:
    """A threshold-sized growth hidden in the noise of a short run is neither a pass nor a fail."""
    noisy = memory_series(2, requests=600, samples=60, leak_bytes_per_request=52.4, noise_bytes=256 * 1024)
    (v,) = LeakCheck().evaluate(RunInputs(memory=[noisy]))
    assert v.status == UNDECIDED and v.explanation.startswith("undecided")
    assert v.evidence["requests_to_decide"] > v.evidence["requests_sustained"]
    few = memory_series(3, requests=600, samples=5)
    (v,) = LeakCheck().evaluate(RunInputs(memory=[few]))
    assert v.status == UNDECIDED and "too few samples" in v.explanation


def test_significant_growth_below_the_threshold_warns_with_a_projection() -> None:
    creeping = _shaped(lambda r: 20.0 * r, requests=20_000)  # 20 B/request: below 52 B/request, τ ≈ 1
    run = RunInputs(memory=[creeping], free_memory={"host": (np.arange(200) / 10.0, np.full(200, 8e9))})
    (v,) = LeakCheck().evaluate(run)
    assert v.status == WARN and v.evidence["kendall_tau"] > 0.8 and v.evidence["p_value"] < 1e-4
    proj = v.evidence["projection"]
    assert proj["bytes_per_million_requests"] == pytest.approx(20e6, rel=0.15)
    assert proj["seconds_to_exhaust"] == pytest.approx(8e9 / (20.0 * 1000.0), rel=0.2)  # 1 000 requests/s
    assert "per million requests" in v.explanation
    flat = _shaped(lambda r: 0.0 * r, requests=20_000)
    assert statuses(LeakCheck(), RunInputs(memory=[flat])) == [PASS]
    # a stub settling by a few pages over its first 100 requests (600 B/request, τ ≈ 1, far below a 64 KiB/request
    # bound) adds less to the later part than leak.settle: no warning; with settle 0 the same series warns
    done = np.linspace(0.0, 100.0, 200)
    settling = MemorySeries("process_rss_bytes{model=m}", np.arange(200) / 10.0, done,
                            np.floor((150e6 + 600.0 * done) / 4096) * 4096)
    assert statuses(LeakCheck(values={"max_growth": "64KiB/request"}), RunInputs(memory=[settling])) == [PASS]
    assert statuses(LeakCheck(values={"max_growth": "64KiB/request", "settle": "0B"}),
                    RunInputs(memory=[settling])) == [WARN]


@pytest.mark.parametrize("cls", [LeakAttributionCheck, FragmentationCheck, QueuePolicyCheck, ConcurrencyCheck,
                                 WarmupExecutedCheck, ReadinessCheck, ReloadCheck, ReloadLimitCheck,
                                 CrossDeviceCheck])
def test_no_evidence_skips_unless_required(cls: type[Check]) -> None:
    assert statuses(cls(), RunInputs()) == [SKIP]
    assert statuses(cls(required=True), RunInputs()) == [FAIL]


def _xdev_rows(device0_overlap: bool) -> list[dict[str, Any]]:
    """traces.jsonl rows of xdev_split (rmt/zoo/gpu: group 0 = 1 instance on GPU 0, group 1 = 4 on GPU 1) and xdev_hog
    (2 on GPU 0): GPU 0 one execution at a time (or two at once), GPU 1 three at once."""
    rows: list[dict[str, Any]] = []

    def add(model: str, pid: int, index: int, device: int, starts: list[int]) -> None:
        rows.extend({"stream": f"{model}/p0/small", "pid": pid, "instance_index": index, "exec_index": i,
                     "start_ns": s * MS, "end_ns": s * MS + 18 * MS, "device_id": device}
                    for i, s in enumerate(starts))

    add("xdev_hog", 10, 0, 0, list(range(0, 1000, 40)))
    add("xdev_hog", 11, 1, 0, list(range(5 if device0_overlap else 20, 1000, 40)))
    for i in range(3):
        add("xdev_split", 20 + i, i, 1, list(range(i, 1000, 20)))
    return rows


def test_probe_traces_name_instances_of_every_group_and_budgets_hold_per_device() -> None:
    limits = repository_limits(MULTI_GPU_REPOSITORY, gpus=(0, 1))
    traces = instance_traces(_xdev_rows(False), limits)
    assert sorted((t.instance, t.device) for t in traces) == [
        ("xdev_hog_0_0", 0), ("xdev_hog_0_1", 0), ("xdev_split_1_0", 1), ("xdev_split_1_1", 1), ("xdev_split_1_2", 1)]
    run = RunInputs(traces=traces, models=limits, rate_limit_flags=["R:1:0", "R:4:1"], rate_limiter_on=True)
    by = {v.subject: v for v in RateLimitCheck().evaluate(run)}
    assert by["R@device 0"].status == PASS and by["R@device 0"].measured == 1
    assert by["R@device 1"].status == PASS and by["R@device 1"].measured == 3 and by["R@device 1"].threshold == 4
    run.traces = instance_traces(_xdev_rows(True), limits)
    by = {v.subject: v for v in RateLimitCheck().evaluate(run)}
    assert by["R@device 0"].status == FAIL and by["R@device 0"].measured == 2  # R:1:0 broken on GPU 0 alone
    assert by["R@device 1"].status == PASS
