"""perf_analyzer's stability rule and the decision taken at the end of each step (pure functions, no Locust).

A step is *stable* when its last ``n`` measurement windows agree within ± ``tolerance`` of their mean, in
throughput and in mean latency (perf_analyzer: "the last 3 measurements within 10 %"). Once stable — or when the
step reached ``max_step_s`` without stabilising — it is judged: *saturated* when it achieved less than the offered
rate by more than the margin or lost too many requests, *SLO breach* when its p99 exceeds the SLO. Either stops the
sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rmt.capacity.ladder import SweepConfig


@dataclass(frozen=True)
class Window:
    """One measurement window of a step: completions by reply time."""

    succeeded: int
    failed: int
    latency_sum_us: float
    """Sum of the succeeded requests' latencies (µs)."""
    seconds: float

    @property
    def throughput(self) -> float:
        """Succeeded requests per second."""
        return self.succeeded / self.seconds

    @property
    def mean_latency_us(self) -> float:
        """Mean latency (µs), NaN without a success."""
        return self.latency_sum_us / self.succeeded if self.succeeded else math.nan


def within(values: Sequence[float], tolerance: float) -> bool:
    """Every value within ± ``tolerance`` × their mean of that mean (False for NaN or a zero mean)."""
    if not values or any(math.isnan(v) for v in values):
        return False
    mean = sum(values) / len(values)
    return mean > 0 and all(abs(v - mean) <= tolerance * mean for v in values)


def is_stable(windows: Sequence[Window], n: int, tolerance: float) -> bool:
    """perf_analyzer's rule on the last ``n`` windows: throughput and mean latency within ± tolerance."""
    if len(windows) < n:
        return False
    last = windows[-n:]
    return within([w.throughput for w in last], tolerance) and within([w.mean_latency_us for w in last], tolerance)


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended and what the sweep does next."""

    achieved_per_s: float
    """Mean throughput over the judged windows (succeeded requests/s)."""
    failure_ratio: float
    saturated: bool
    slo_breach: bool
    stable: bool

    @property
    def stop(self) -> bool:
        """Whether the sweep ends after this step."""
        return self.saturated or self.slo_breach

    @property
    def reason(self) -> str:
        """``saturated``, ``slo``, ``stable`` or ``unstable`` (held for max_step_s, not saturated)."""
        if self.saturated:
            return "saturated"
        if self.slo_breach:
            return "slo"
        return "stable" if self.stable else "unstable"


def judge_step(windows: Sequence[Window], offered_per_s: float, p99_us: float, config: SweepConfig,
               stable: bool) -> StepOutcome:
    """The outcome of a step from its windows (the last ``stable_windows`` of them when stable, else all)."""
    judged = list(windows[-config.stable_windows:] if stable else windows)
    seconds = sum(w.seconds for w in judged)
    ok = sum(w.succeeded for w in judged)
    failed = sum(w.failed for w in judged)
    achieved = ok / seconds if seconds else 0.0
    # Offered but neither answered nor failed (dropped by the client, or still queued) counts as lost.
    expected = offered_per_s * seconds
    failure_ratio = (failed + max(0.0, expected - ok - failed)) / expected if expected else math.nan
    saturated = achieved < offered_per_s * (1 - config.saturation_margin) or (
        not math.isnan(failure_ratio) and failed / max(1, ok + failed) > config.max_failure_ratio)
    breach = config.slo_p99_ms > 0 and not math.isnan(p99_us) and p99_us > config.slo_p99_ms * 1000
    return StepOutcome(achieved, failure_ratio, saturated, breach, stable)
