"""Memory growth against completed requests: warm-up exclusion, Theil–Sen slope, Mann–Kendall (Kendall τ) test.

Pure functions over plain arrays. A memory series is sampled over time together with the number of requests the
server had completed at each sample; the leak statistic is the robust slope of memory against completed requests
(bytes per request), which does not depend on the request rate and ignores idle stretches.

Long series (a 24 h soak at 1 Hz has 86 400 samples) are reduced to at most ``max_points`` equal-count bins
(median request count, median value) before fitting: Theil–Sen is O(n²) in pairs, and bin medians also damp
short, GC-like sawtooth swings without hiding a steady rise.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Requests the projected growth is expressed per (``MiB per 10k requests``).
PER_REQUESTS = 10_000
MIN_POINTS = 8
"""Fewer usable samples than this after warm-up exclusion: no trend can be judged."""


@dataclass(frozen=True)
class Trend:
    """The fitted trend of one memory series (after warm-up exclusion and binning)."""

    slope_bytes_per_request: float
    """Theil–Sen slope of memory against completed requests."""
    intercept_bytes: float
    tau: float
    """Kendall's τ between completed requests and memory (Mann–Kendall trend statistic)."""
    p_value: float
    """Two-sided p-value of τ; small means a monotone trend is unlikely to be noise."""
    n_samples: int
    """Samples used (after warm-up exclusion, before binning)."""
    n_points: int
    """Points fitted (bins)."""
    requests_first: float
    requests_last: float
    t_first_s: float
    t_last_s: float
    floor_slope_bytes_per_request: float
    """Rise of the series' floor: (minimum of the last quarter − minimum of the first quarter) divided by the
    completed requests between the quarters' starts. A GC-like sawtooth does not raise it; a leak does."""
    points: tuple[tuple[float, float], ...]
    """The fitted (requests, bytes) points: plot data for the evidence."""

    @property
    def growth_per_10k_bytes(self) -> float:
        """Projected growth over :data:`PER_REQUESTS` completed requests."""
        return self.slope_bytes_per_request * PER_REQUESTS

    @property
    def floor_growth_per_10k_bytes(self) -> float:
        """Projected floor growth over :data:`PER_REQUESTS` completed requests."""
        return self.floor_slope_bytes_per_request * PER_REQUESTS

    @property
    def requests_span(self) -> float:
        """Completed requests covered by the fitted samples."""
        return self.requests_last - self.requests_first


def warmup_mask(t_s: np.ndarray, requests: np.ndarray, *, fraction: float = 0.0, seconds: float = 0.0,
                requests_min: float = 0.0) -> np.ndarray:
    """Boolean mask of the samples *after* warm-up.

    A sample is kept when it comes at least ``seconds`` after the first sample, after ``requests_min`` completed
    requests, and past ``fraction`` of the series' completed-request range (0.1 drops the first 10 %).
    """
    t = np.asarray(t_s, dtype=float)
    r = np.asarray(requests, dtype=float)
    keep = np.isfinite(t) & np.isfinite(r)
    if not keep.any():
        return keep
    t0 = np.nanmin(t[keep])
    r0, r1 = np.nanmin(r[keep]), np.nanmax(r[keep])
    keep &= t >= t0 + seconds
    keep &= r >= max(requests_min, r0 + fraction * (r1 - r0))
    return keep


def bin_medians(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce (x, y), sorted by x, to at most ``max_points`` equal-count bins of (median x, median y)."""
    n = len(x)
    if n <= max_points:
        return x, y
    edges = np.linspace(0, n, max_points + 1).astype(int)
    size = int(np.min(np.diff(edges)))
    if n % max_points == 0:
        return np.median(x.reshape(max_points, size), axis=1), np.median(y.reshape(max_points, size), axis=1)
    bx = np.array([np.median(x[a:b]) for a, b in itertools.pairwise(edges)])
    by = np.array([np.median(y[a:b]) for a, b in itertools.pairwise(edges)])
    return bx, by


def fit_trend(t_s: np.ndarray, requests: np.ndarray, values: np.ndarray, *, warmup_fraction: float = 0.1,
              warmup_s: float = 0.0, max_points: int = 400) -> Trend | None:
    """Fit memory (``values``, bytes) against completed ``requests``; None when there is too little data.

    Samples with a missing (NaN) value are dropped; so is the warm-up (see :func:`warmup_mask`). Returns None when
    fewer than :data:`MIN_POINTS` samples remain or the completed-request count did not advance.
    """
    t = np.asarray(t_s, dtype=float)
    r = np.asarray(requests, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = warmup_mask(t, r, fraction=warmup_fraction, seconds=warmup_s) & np.isfinite(v)
    t, r, v = t[keep], r[keep], v[keep]
    if len(v) < MIN_POINTS:
        return None
    order = np.argsort(r, kind="stable")
    t, r, v = t[order], r[order], v[order]
    if r[-1] <= r[0]:
        return None
    bx, by = bin_medians(r, v, max_points)
    if len(np.unique(bx)) < 2:
        return None
    with warnings.catch_warnings():  # degenerate (e.g. all-equal) points: the confidence interval is NaN, not needed
        warnings.simplefilter("ignore", RuntimeWarning)
        slope, intercept, _, _ = stats.theilslopes(by, bx)
        tau, p_value = stats.kendalltau(bx, by)
    if not math.isfinite(tau):  # a constant series: no trend at all
        tau, p_value = 0.0, 1.0
    return Trend(
        floor_slope_bytes_per_request=floor_slope(r, v),
        slope_bytes_per_request=float(slope), intercept_bytes=float(intercept), tau=float(tau),
        p_value=float(p_value), n_samples=len(v), n_points=len(bx), requests_first=float(r[0]),
        requests_last=float(r[-1]), t_first_s=float(np.min(t)), t_last_s=float(np.max(t)),
        points=tuple(zip(bx.tolist(), by.tolist(), strict=True)),
    )


def floor_slope(requests: np.ndarray, values: np.ndarray) -> float:
    """Slope of the floor: min of the last quarter minus min of the first, per request between the quarters' starts.

    ``requests`` must be sorted. Swings that return to the same floor (garbage collection, pools that shrink)
    give ≈ 0 as long as each quarter holds at least one full swing; a steady leak gives its slope.
    """
    n = len(values)
    q = max(1, n // 4)
    span = requests[n - q] - requests[0]
    if span <= 0:
        return 0.0
    return float((np.min(values[n - q:]) - np.min(values[:q])) / span)


def is_leak(trend: Trend, *, max_growth_per_10k_bytes: float, alpha: float) -> bool:
    """The leak rule: projected growth per 10k requests above the threshold, a significant rising trend
    (Kendall τ > 0 with p < ``alpha``), and a floor that rose by more than the threshold too."""
    return (trend.growth_per_10k_bytes > max_growth_per_10k_bytes and trend.tau > 0 and trend.p_value < alpha
            and trend.floor_growth_per_10k_bytes > max_growth_per_10k_bytes)
