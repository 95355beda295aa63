"""Memory checks: leak (every memory series) and pool growth (pool counters), judged against completed requests.

The rule is the shape rule of :func:`rmt.check.trend.decide`: the floor of the *later* part of the judged samples
must grow decisively faster than the threshold, with a significant rising trend. Allocator settling (a step, or a
rise that decays) has flattened there and passes; a leak keeps its rate and fails; a difference within the series'
noise or resolution over the requests seen is ``undecided`` (more requests decide it: ``requests_to_decide``).
Growth below the threshold that is still significant and sustained is a ``warn`` with a projection.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, ClassVar

import numpy as np

from rmt.check.base import FAIL, PASS, SKIP, UNDECIDED, WARN, Check, Param, Verdict
from rmt.check.data import MemorySeries, RunInputs
from rmt.check.quantity import parse_growth, parse_number, parse_size, parse_warmup
from rmt.check.trend import (
    LEAK,
    MIN_POINTS,
    PER_REQUESTS,
    SOUND,
    Decision,
    Sustained,
    decide,
    fit_trend,
    sustained_growth,
)
from rmt.core.fmt import format_bytes

#: A warning needs a later-part trend at least this monotone (Kendall τ) …
WARN_TAU = 0.8
#: … and this much stronger than the significance level (p ≪ alpha).
WARN_P_FACTOR = 100.0
#: Device memory moves in pages of this size (NVML / the CUDA allocator's granularity).
DEVICE_PAGE = 2 << 20
#: Host process memory moves in pages of this size.
HOST_PAGE = 4096
#: Projections are expressed per this many requests.
PER_MILLION = 1_000_000


def _alpha(value: Any) -> float:
    return parse_number(value, low=0.0, high=0.5, inclusive_low=False)


def _glob(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a series pattern: write a glob such as * or rss_bytes*")
    return value


def is_device_series(s: MemorySeries) -> bool:
    """A GPU series (device memory moves in 2 MiB pages: its own threshold)."""
    return bool(s.device and s.device.startswith("gpu=")) or s.name.startswith(("gpu_", "nv_gpu_"))


class LeakCheck(Check):
    """Sustained memory growth per completed request: the later part's floor against the threshold (shape rule)."""

    name = "leak"
    summary = "memory keeps growing with completed requests (sustained growth per 10k requests)"
    measure = "leak_growth_per_10k_bytes"
    unit = "bytes"
    kind: ClassVar[str] = "memory"
    params: ClassVar[tuple[Param, ...]] = (
        Param("max_growth", "512KiB/10k", parse_growth,
              "largest tolerated sustained growth of host memory, SIZE/REQUESTS (512KiB/10k ≈ 52 B/request: "
              "catches 100 B/request within 10k requests)"),
        Param("gpu_max_growth", "32MiB/10k", parse_growth,
              "largest tolerated sustained growth of a GPU series (device memory moves in 2 MiB pages, so a "
              "finer bound cannot be decided in CI-sized runs)"),
        Param("alpha", 0.01, _alpha, "significance level: trend test and the z of the decision margin"),
        Param("warmup", "10%", parse_warmup,
              "start of the run left out: a share of the completed requests (10%) or a duration (30s)"),
        Param("series", "*", _glob, "glob of the series names to judge"),
        Param("settle", "128KiB", parse_size,
              "growth beyond the threshold's that a leak must add over the later part: allocator settling (arenas, "
              "caches) moves a process by up to this much in a short run; 0 for exact counters"),
        Param("sustain", 0.5, lambda v: parse_number(v, low=0.1, high=0.9),
              "share of the judged samples, at their end, whose growth must be sustained"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per matching series of this check's kind."""
        series = [s for s in run.memory if s.kind == self.kind and fnmatch.fnmatchcase(s.name, self.values["series"])]
        if not series:
            return self.no_evidence(f"{self.kind} series")
        return [self.judge_series(s, run) for s in series]

    def limit_per_request(self, s: MemorySeries) -> float:
        """The threshold of ``s`` in bytes per request."""
        return float(self.values["gpu_max_growth" if is_device_series(s) and "gpu_max_growth" in self.values
                                  else "max_growth"])

    def min_quantum(self, s: MemorySeries) -> float:
        """The unit ``s`` is known to move in even when it did not move: NVML's 2 MiB for device memory, a page for
        process memory, a byte for pool counters."""
        if is_device_series(s):
            return float(DEVICE_PAGE)
        return float(HOST_PAGE) if self.kind == "memory" else 1.0

    def judge_series(self, s: MemorySeries, run: RunInputs | None = None) -> Verdict:
        """The verdict on one series (``run`` gives the headroom for a warning's projection)."""
        fraction, seconds = self.values["warmup"]
        limit = self.limit_per_request(s)
        sus = sustained_growth(s.t_s, s.requests, s.values, warmup_fraction=fraction, warmup_s=seconds,
                               share=self.values["sustain"], min_quantum=self.min_quantum(s),
                               alpha=self.values["alpha"])
        if sus is None:
            finite = s.requests[np.isfinite(s.requests)]
            done = float(finite.max() - finite.min()) if finite.size else 0.0
            if _idle(s, run) or (done <= 0 and finite.size >= MIN_POINTS):  # no traffic: not a subject of this run
                return self.verdict(s.name, float("nan"), limit * PER_REQUESTS,
                                    "no request completed while it was sampled: nothing to judge",
                                    {"samples": len(s.values), "requests_completed": done}, status=SKIP)
            return self.verdict(s.name, float("nan"), limit * PER_REQUESTS,
                                f"undecided: too few samples after the warm-up ({len(s.values)} in all, "
                                f"{done:.0f} requests) to judge a trend: run longer",
                                {"samples": len(s.values), "requests_completed": done}, status=UNDECIDED)
        d = decide(sus, limit, self.values["alpha"], self.values["settle"])
        trend = fit_trend(s.t_s, s.requests, s.values, warmup_fraction=fraction, warmup_s=seconds)
        evidence = self._evidence(sus, d, trend)
        status = {LEAK: FAIL, SOUND: PASS}.get(d.outcome, UNDECIDED)
        why = self._explain(sus, d, limit)
        if status == PASS and self._warns(sus, d):
            status = WARN
            projection = self._projection(s, sus, run)
            evidence["projection"] = projection
            why += "; " + projection["text"]
        return self.verdict(s.name, sus.slope_bytes_per_request * PER_REQUESTS, limit * PER_REQUESTS, why,
                            evidence, status=status)

    def _warns(self, sus: Sustained, d: Decision) -> bool:
        """Below the threshold, yet a monotone, highly significant rise beyond the series' resolution and beyond
        what allocator settling adds in a short run (``settle``: the same bar a leak must clear)."""
        return (sus.tau >= WARN_TAU and sus.p_value < self.values["alpha"] / WARN_P_FACTOR
                and sus.slope_bytes_per_request * sus.requests_span >= max(d.needed_bytes, self.values["settle"]))

    def _projection(self, s: MemorySeries, sus: Sustained, run: RunInputs | None) -> dict[str, Any]:
        """Bytes per million requests, and the time to exhaust the measured headroom at the run's request rate."""
        per_million = sus.slope_bytes_per_request * PER_MILLION
        finite = np.isfinite(s.requests) & np.isfinite(s.t_s)
        r, t = s.requests[finite], s.t_s[finite]
        rate = float((r.max() - r.min()) / (t.max() - t.min())) if r.size > 1 and t.max() > t.min() else 0.0
        headroom = _headroom(s, run)
        out: dict[str, Any] = {"bytes_per_million_requests": per_million, "requests_per_s": rate,
                               "headroom_bytes": headroom, "seconds_to_exhaust": None}
        text = f"projected {format_bytes(per_million)} per million requests"
        if headroom is not None and rate > 0 and sus.slope_bytes_per_request > 0:
            seconds = headroom / (sus.slope_bytes_per_request * rate)
            out["seconds_to_exhaust"] = seconds
            text += (f"; the {format_bytes(headroom)} free would last {seconds / 3600:.3g} h at "
                     f"{rate:.0f} requests/s")
        else:
            text += " (no headroom measured for this series)"
        out["text"] = text
        return out

    def _explain(self, s: Sustained, d: Decision, limit: float) -> str:
        per_10k = format_bytes(s.slope_bytes_per_request * PER_REQUESTS)
        grows = (f"the later {self.values['sustain']:.0%} grows {per_10k}"
                 f" per 10k requests ({s.slope_bytes_per_request:.1f} B/request, earlier part "
                 f"{s.early_slope_bytes_per_request:.1f} B/request, Kendall τ={s.tau:.2f}, p={s.p_value:.2g}) over "
                 f"{s.requests_span:.0f} requests, {d.margin:.2f}× the {format_bytes(limit * PER_REQUESTS)}/10k "
                 "threshold")
        if d.outcome == LEAK:
            return f"{grows}: a sustained rise beyond the threshold — a leak"
        if d.outcome == SOUND:
            return f"{grows}: decisively within it"
        more = "" if math.isinf(d.requests_to_decide) else f"; about {d.requests_to_decide:.0f} requests would decide"
        level = 1.0 - self.values["alpha"]
        return (f"undecided: {grows}; at {level:.0%} confidence it lies between {s.slope_low:.0f} and "
                f"{s.slope_high:.0f} B/request, which holds the threshold (trend "
                f"{'significant' if d.significant else 'not significant'}){more}")

    def _evidence(self, s: Sustained, d: Decision, t: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bytes_per_request": s.slope_bytes_per_request, "early_bytes_per_request": s.early_slope_bytes_per_request,
            "bytes_per_request_bounds": [s.slope_low, s.slope_high],
            "floor_bytes_per_request": s.floor_slope_bytes_per_request,
            "growth_per_10k_mib": s.slope_bytes_per_request * PER_REQUESTS / 2**20,
            "kendall_tau": s.tau, "p_value": s.p_value, "alpha": self.values["alpha"], "margin": d.margin,
            "excess_bytes": d.excess_bytes, "needed_bytes": d.needed_bytes, "noise_bytes": s.noise_bytes,
            "quantum_bytes": s.quantum_bytes, "requests_sustained": s.requests_span,
            "requests_to_decide": d.requests_to_decide,
        }
        if t is not None:
            out.update({"whole_bytes_per_request": t.slope_bytes_per_request, "whole_kendall_tau": t.tau,
                        "samples": t.n_samples, "points_fitted": t.n_points,
                        "requests_range": [t.requests_first, t.requests_last],
                        "time_range_s": [t.t_first_s, t.t_last_s], "plot": [list(p) for p in t.points]})
        return out


def _idle(s: MemorySeries, run: RunInputs | None) -> bool:
    """The series belongs to a model that answered no request in the run's windows."""
    if run is None or s.model is None or not run.windows:
        return False
    return not any(w.model == s.model and float(np.sum(w.requests)) > 0 for w in run.windows)


def _headroom(s: MemorySeries, run: RunInputs | None) -> float | None:
    """The free bytes last measured on the series' device (None when the run has none)."""
    if run is None:
        return None
    key = s.device if s.device in run.free_memory else ("host" if not is_device_series(s) else None)
    free = run.free_memory.get(key) if key else None
    if free is None or not len(free[1]) or not np.isfinite(free[1]).any():
        return None
    return float(free[1][np.isfinite(free[1])][-1])


class PoolGrowthCheck(LeakCheck):
    """Pool counters (pinned pool, stub shm) that keep rising under steady load: exact counters, a fine bound."""

    name = "pool"
    summary = "a memory pool keeps growing under steady load (sustained growth per 10k requests)"
    measure = "pool_growth_per_10k_bytes"
    unit = "bytes"
    kind = "pool"
    params: ClassVar[tuple[Param, ...]] = (
        Param("max_growth", "64KiB/10k", parse_growth,
              "largest tolerated sustained pool growth, SIZE/REQUESTS (≈ 6.5 B/request: pool counters are exact, "
              "resolved to a 4 KiB page)"),
        *(p for p in LeakCheck.params[2:] if p.name != "settle"),
        Param("settle", "0B", parse_size, "growth beyond the threshold's that a pool must add (0: exact counters)"),
    )
