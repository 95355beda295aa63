"""Latency statistics from HDR histograms (µs): percentiles, merges, priority p99 ratio, cold-start ratio."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
"""One hour: the largest latency the histograms hold."""
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty latency histogram (µs, 1 µs to 1 h, 3 significant digits)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def histogram_of(values_us: Iterable[float]) -> HdrHistogram:
    """A histogram of latencies in µs (values below 1 µs count as 1 µs)."""
    hist = new_histogram()
    for v in values_us:
        hist.record_value(min(HIGHEST_US, max(LOWEST_US, round(v))))
    return hist


def merged(histograms: Iterable[Any]) -> HdrHistogram:
    """The exact merge of several histograms."""
    out = new_histogram()
    for h in histograms:
        if h is not None:
            out.add(h)
    return out


def percentile_us(hist: Any, q: float) -> float:
    """The ``q``-th percentile (0–100) in µs, NaN for an empty or missing histogram."""
    if hist is None or hist.get_total_count() == 0:
        return math.nan
    return float(hist.get_value_at_percentile(q))


def p99_ratio(high: Any, low: Any) -> float:
    """p99 of the high-priority stream divided by p99 of the low-priority one (NaN when either is empty)."""
    hi, lo = percentile_us(high, 99.0), percentile_us(low, 99.0)
    if math.isnan(hi) or math.isnan(lo) or lo <= 0:
        return math.nan
    return hi / lo


def cold_ratio(first_us: np.ndarray | Iterable[float], steady: Any) -> float:
    """The slowest of the first requests after READY divided by the steady-state median (NaN without data)."""
    first = np.asarray(list(first_us) if not isinstance(first_us, np.ndarray) else first_us, dtype=float)
    p50 = percentile_us(steady, 50.0)
    if first.size == 0 or math.isnan(p50) or p50 <= 0:
        return math.nan
    return float(np.nanmax(first) / p50)
