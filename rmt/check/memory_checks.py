"""Memory checks: leak (every memory series) and pool growth (pool counters), judged against completed requests."""

from __future__ import annotations

import fnmatch
from typing import Any, ClassVar

import numpy as np

from rmt.check.base import FAIL, PASS, SKIP, Check, Param, Verdict
from rmt.check.data import MemorySeries, RunInputs
from rmt.check.quantity import parse_count, parse_growth, parse_number, parse_warmup
from rmt.check.trend import PER_REQUESTS, Trend, fit_trend, is_leak
from rmt.core.fmt import format_bytes


def _alpha(value: Any) -> float:
    return parse_number(value, low=0.0, high=0.5, inclusive_low=False)


def _glob(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a series pattern: write a glob such as * or rss_bytes*")
    return value


class LeakCheck(Check):
    """Memory growth per completed request: Theil–Sen slope, Kendall τ significance, rising floor."""

    name = "leak"
    summary = "memory grows with completed requests (projected growth per 10k requests)"
    measure = "leak_growth_per_10k_bytes"
    unit = "bytes"
    kind: ClassVar[str] = "memory"
    params = (
        Param("max_growth", "512KiB/10k", parse_growth,
              "largest tolerated growth, SIZE/REQUESTS (e.g. 1MiB/10k, 100B/request); the default catches "
              "100 B/request"),
        Param("alpha", 0.01, _alpha, "significance level of the Mann–Kendall trend test (Kendall τ p-value)"),
        Param("warmup", "10%", parse_warmup,
              "start of the run left out: a share of the completed requests (10%) or a duration (30s)"),
        Param("series", "*", _glob, "glob of the series names to judge"),
        Param("short_run", "10k", lambda v: parse_count(str(v)),
              "a fit spanning fewer completed requests is a short (CI-sized) run, judged by short_max_growth"),
        Param("short_max_growth", "4KiB/request", parse_growth,
              "threshold of short runs: allocator settling (~100–350 B/request over a few thousand requests) "
              "passes, a gross leak (KiB per request) fails; soaks keep max_growth"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per matching series of this check's kind."""
        series = [s for s in run.memory if s.kind == self.kind and fnmatch.fnmatchcase(s.name, self.values["series"])]
        if not series:
            return self.no_evidence(f"{self.kind} series")
        return [self.judge_series(s) for s in series]

    def judge_series(self, s: MemorySeries) -> Verdict:
        """The verdict on one series."""
        fraction, seconds = self.values["warmup"]
        trend = fit_trend(s.t_s, s.requests, s.values, warmup_fraction=fraction, warmup_s=seconds)
        short = trend is not None and trend.requests_span < self.values["short_run"]
        limit_per_10k = self.values["short_max_growth" if short else "max_growth"] * PER_REQUESTS
        if trend is None:
            finite = s.requests[np.isfinite(s.requests)]
            done = float(finite.max() - finite.min()) if finite.size else 0.0
            why = ("no request completed while it was sampled" if done <= 0 else
                   f"too few samples after the warm-up ({len(s.values)} in all) to fit a trend")
            return self.verdict(s.name, float("nan"), limit_per_10k, why,
                                {"samples": len(s.values), "requests_completed": done}, status=SKIP)
        leaking = is_leak(trend, max_growth_per_10k_bytes=limit_per_10k, alpha=self.values["alpha"])
        return self.verdict(s.name, trend.growth_per_10k_bytes, limit_per_10k,
                            self._explain(trend, leaking, limit_per_10k, short),
                            {**self._evidence(trend), "short_run": short}, status=FAIL if leaking else PASS)

    def _explain(self, t: Trend, leaking: bool, limit_per_10k: float, short: bool) -> str:
        grows = (f"grows {format_bytes(t.growth_per_10k_bytes)} per 10k requests "
                 f"({t.slope_bytes_per_request:.1f} B/request, Kendall τ={t.tau:.2f}, p={t.p_value:.2g}, "
                 f"floor {format_bytes(t.floor_growth_per_10k_bytes)}/10k) over {t.requests_span:.0f} requests")
        limit = format_bytes(limit_per_10k)
        if short:
            grows += (f" (a short run: under {self.values['short_run']:.0f} requests the short-run threshold "
                      "applies)")
        if leaking:
            return f"{grows}: above {limit}/10k with a significant trend and a rising floor — a leak"
        return f"{grows}: within {limit}/10k, or not a significant, floor-raising trend"

    def _evidence(self, t: Trend) -> dict[str, Any]:
        return {
            "bytes_per_request": t.slope_bytes_per_request,
            "growth_per_10k_mib": t.growth_per_10k_bytes / 2**20,
            "floor_growth_per_10k_bytes": t.floor_growth_per_10k_bytes,
            "kendall_tau": t.tau, "p_value": t.p_value, "alpha": self.values["alpha"],
            "samples": t.n_samples, "points_fitted": t.n_points,
            "requests_range": [t.requests_first, t.requests_last], "time_range_s": [t.t_first_s, t.t_last_s],
            "plot": [list(p) for p in t.points],
        }


class PoolGrowthCheck(LeakCheck):
    """Pool counters (pinned pool, stub shm) that keep rising under steady load."""

    name = "pool"
    summary = "a memory pool keeps growing under steady load (projected growth per 10k requests)"
    measure = "pool_growth_per_10k_bytes"
    unit = "bytes"
    kind = "pool"
    params = (
        Param("max_growth", "1MiB/10k", parse_growth, "largest tolerated pool growth, SIZE/REQUESTS"),
        *LeakCheck.params[1:],
    )

