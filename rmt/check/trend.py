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


# -- the shape rule: sustained growth of the later part vs the threshold ----------------------------------------------

SUSTAIN_SHARE = 0.5
"""Share of the judged samples, at their end, whose growth must be sustained for a leak."""
FLOOR_WINDOWS = 6
"""Windows the later part is cut into; the fitted floor is each window's minimum (a GC swing shorter than a window
leaves the floor flat)."""
UNDECIDED = "undecided"
LEAK = "leak"
SOUND = "sound"


@dataclass(frozen=True)
class Sustained:
    """The growth of the later part of a series (allocator settling has decayed there; a leak keeps its rate)."""

    slope_bytes_per_request: float
    """Theil–Sen slope of the later part against completed requests: the smaller of the whole later part's and
    its second half's (a rise that stops inside the later part is not sustained)."""
    slope_low: float
    """Lower confidence bound of that slope (one-sided, level ``1 - alpha``)."""
    slope_high: float
    """Upper confidence bound of the whole later part's slope (one-sided, level ``1 - alpha``)."""
    floor_slope_bytes_per_request: float
    """Theil–Sen slope of the later part's floor (window minima): GC-like swings shorter than a window leave it
    flat."""
    tau: float
    """Kendall's τ of the later part's samples against completed requests."""
    p_value: float
    """One-sided p-value of a rising trend in the later part (Mann–Kendall; small: not noise)."""
    noise_bytes: float
    """Robust spread (1.4826 × MAD) of the floor around its fitted line."""
    quantum_bytes: float
    """The series' unit (a 4 KiB page for RSS, 2 MiB for NVML device memory)."""
    requests_span: float
    """Completed requests the later part covers."""
    early_slope_bytes_per_request: float
    """Theil–Sen slope of the earlier part: settling shows early ≫ later, a leak early ≈ later."""


@dataclass(frozen=True)
class Decision:
    """The shape rule's outcome for one series and threshold."""

    outcome: str
    """:data:`LEAK`, :data:`SOUND` or :data:`UNDECIDED`."""
    margin: float
    """Sustained slope / threshold (above 1: grows faster than tolerated)."""
    excess_bytes: float
    """(floor slope − threshold) × the later part's requests: bytes beyond (or within) the tolerated growth."""
    needed_bytes: float
    """|excess| the floor must reach to decide alone: z(alpha) × its noise, at least one quantum."""
    significant: bool
    """A rising trend in the later part with p < alpha."""
    requests_to_decide: float
    """Completed requests the later part would need for the floor's |excess| to reach ``needed_bytes`` at this
    slope (inf when the slope equals the threshold)."""


def _theil_sen(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(slope, low, high): Theil–Sen with one-sided bounds at level ``1 - alpha`` each."""
    if len(np.unique(x)) < 2:
        return 0.0, -math.inf, math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slope, _, low, high = stats.theilslopes(y, x, alpha=1.0 - 2.0 * alpha)
    return float(slope), float(low) if math.isfinite(low) else -math.inf, \
        float(high) if math.isfinite(high) else math.inf


def _floor_fit(r: np.ndarray, v: np.ndarray, windows: int) -> tuple[float, float]:
    """(Theil–Sen slope, robust residual spread) of the window minima of sorted (r, v)."""
    windows = max(2, min(windows, len(v) // 2))
    edges = np.linspace(0, len(v), windows + 1).astype(int)
    fx, fy = [], []
    for a, b in itertools.pairwise(edges):
        i = a + int(np.argmin(v[a:b]))
        fx.append(float(np.median(r[a:b])))
        fy.append(float(v[i]))
    x, y = np.asarray(fx), np.asarray(fy)
    if len(np.unique(x)) < 2:
        return 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slope, intercept, _, _ = stats.theilslopes(y, x)
    resid = y - (intercept + slope * x)
    return float(slope), float(1.4826 * np.median(np.abs(resid - np.median(resid))))


def quantum(values: np.ndarray, floor: float = 0.0) -> float:
    """The series' unit: the greatest common divisor of its steps between consecutive finite values (a page for
    RSS, NVML's allocation granularity for device memory), at least ``floor`` (the unit a constant series is known
    to move in)."""
    v = np.asarray(values, dtype=float)
    steps = np.abs(np.diff(v[np.isfinite(v)]))
    steps = np.rint(steps[steps > 0]).astype(np.int64)
    unit = int(np.gcd.reduce(steps)) if steps.size else 0
    return float(max(unit, floor))


def sustained_growth(t_s: np.ndarray, requests: np.ndarray, values: np.ndarray, *, warmup_fraction: float = 0.1,
                     warmup_s: float = 0.0, share: float = SUSTAIN_SHARE, windows: int = FLOOR_WINDOWS,
                     min_quantum: float = 0.0, alpha: float = 0.01, max_points: int = 400,
                     to_the_end: bool = True) -> Sustained | None:
    """The growth of the last ``share`` of the judged samples (after the warm-up); None when too little data.

    The later part's samples (reduced to ``max_points`` bin medians) are fitted by Theil–Sen with confidence
    bounds; the sustained slope is the smaller of that fit and the same fit over the later part's second half, so
    a rise that stops inside the later part (a cache that filled, settling that ended) is not sustained
    (``to_the_end=False`` fits the later part as a whole). The floor
    (each of ``windows`` windows' minimum) is fitted too: GC-like swings shorter than a window leave it flat.
    """
    r = np.asarray(requests, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = warmup_mask(np.asarray(t_s, dtype=float), r, fraction=warmup_fraction, seconds=warmup_s) & np.isfinite(v)
    r, v = r[keep], v[keep]
    order = np.argsort(r, kind="stable")
    r, v = r[order], v[order]
    unit = quantum(v, min_quantum)
    r, v = per_request_count(r, v)
    cut = int(len(v) * (1.0 - share))
    lr, lv = r[cut:], v[cut:]
    if len(lv) < MIN_POINTS or lr[-1] <= lr[0]:
        return None
    bx, by = bin_medians(lr, lv, max_points)
    slope, low, high = _theil_sen(bx, by, alpha)
    half = len(bx) // 2
    if to_the_end and len(bx) - half >= MIN_POINTS // 2 and bx[-1] > bx[half]:
        second, second_low, _ = _theil_sen(bx[half:], by[half:], alpha)
        slope, low = min(slope, second), min(low, second_low)
    floor, noise = _floor_fit(lr, lv, windows)
    early = _theil_sen(*bin_medians(r[:cut], v[:cut], max_points), alpha)[0] \
        if cut >= MIN_POINTS and r[cut - 1] > r[0] else slope
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tau, p = stats.kendalltau(bx, by, alternative="greater")
    if not math.isfinite(tau):
        tau, p = 0.0, 1.0
    return Sustained(slope, low, high, floor, float(tau), float(p), noise, unit, float(lr[-1] - lr[0]), early)


def per_request_count(r: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples of sorted ``r`` sharing a completed-request count folded into one (their mean value).

    Samples taken while none of the series' requests completed (a phase without its traffic, the drain at the end)
    say nothing of growth *per request*: kept apart, a stretch of them at the end reads as a rise that stopped."""
    if len(r) < 2:
        return r, v
    starts = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
    if len(starts) == len(r):
        return r, v
    counts = np.diff(np.r_[starts, len(r)])
    return r[starts], np.add.reduceat(v, starts) / counts


def decide(s: Sustained, limit_bytes_per_request: float, alpha: float, settle_bytes: float = 0.0) -> Decision:
    """LEAK when the later part's slope is above the limit at confidence ``1 - alpha`` (its lower bound above it),
    its floor rises faster than the limit too, and the rising trend is significant; SOUND when the slope's upper
    bound is below the limit, or the floor stays decisively below the limit's growth (a GC-like sawtooth:
    |floor − limit| × requests ≥ z(1 − alpha) × the floor's noise, at least one quantum); otherwise UNDECIDED.
    A leak must also outgrow the threshold's growth by ``settle_bytes`` (what allocator settling can add to a
    process in a short run), so a few pages over a hundred requests stay undecided.
    """
    z = float(stats.norm.ppf(1.0 - alpha))
    needed = max(z * s.noise_bytes, s.quantum_bytes, 1.0)
    needed_leak = max(needed, settle_bytes)
    excess = (s.floor_slope_bytes_per_request - limit_bytes_per_request) * s.requests_span
    gap = abs(s.floor_slope_bytes_per_request - limit_bytes_per_request)
    to_decide = (needed_leak if s.floor_slope_bytes_per_request > limit_bytes_per_request else needed) / gap \
        if gap > 0 else math.inf
    significant = s.tau > 0 and s.p_value < alpha
    margin = s.slope_bytes_per_request / limit_bytes_per_request if limit_bytes_per_request > 0 else math.inf
    outcome = UNDECIDED
    if s.slope_low > limit_bytes_per_request and s.floor_slope_bytes_per_request > limit_bytes_per_request \
            and significant and excess >= needed_leak:
        outcome = LEAK
    elif s.slope_high < limit_bytes_per_request or excess <= -needed:
        outcome = SOUND
    return Decision(outcome, margin, excess, needed, significant, to_decide)
