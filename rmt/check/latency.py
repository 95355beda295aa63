"""Latency statistics from HDR histograms (µs): priority p99 ratio, cold-start ratio.

The histograms and their percentiles and merges are :mod:`rmt.core.hdr`'s (re-exported here for the checks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from rmt.core.hdr import histogram_of_values as histogram_of
from rmt.core.hdr import merged, new_histogram, percentile_us

__all__ = ["cold_ratio", "histogram_of", "merged", "new_histogram", "p99_ratio", "percentile_us"]

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
