"""The one HDR-histogram factory of rmt: latencies in µs, 1 µs to 10 min, 3 significant digits.

Every histogram rmt writes (load windows) or builds (checks, capacity steps, the web UI, smoke) comes from
:func:`new_histogram`, so any two merge exactly. Encoded histograms carry their own range: one read back from a
run directory adds into a fresh one whatever range wrote it.

A histogram of hdrh and its encoder refer to each other (``hist.encoder.histogram is hist``), so refcounting alone
never frees one: each (its 21 504 eight-byte counters, 168 KiB) waited for a full collection of the cyclic GC,
which CPython runs by object counts, not bytes, and ever more seldom as a process holds more objects. A Locust master
or worker makes several histograms per stream and second (one window state each), so their RSS kept rising through
a soak (docs/reliability.md, "rmt's own memory"). :func:`new_histogram` breaks that cycle: the encoder refers to its
histogram through a weak proxy, and a histogram is freed the moment its last reference goes.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

from rmt.core.hdrwire import add_encoded

LOWEST_US = 1
HIGHEST_US = 600_000_000
"""Ten minutes: the largest latency a histogram holds (larger values are recorded as this)."""
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty µs histogram with rmt's range and precision, freed by refcounting (no reference cycle: see the
    module docstring)."""
    hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    hist.encoder.histogram = weakref.proxy(hist)  # the encoder only reads it in encode(), while hist is alive
    return hist


def clamp_us(value_us: float) -> int:
    """``value_us`` as a recordable integer: below 1 µs counts as 1 µs, above the range as :data:`HIGHEST_US`."""
    return min(HIGHEST_US, max(LOWEST_US, round(value_us)))


def histogram_of_values(values_us: Iterable[float]) -> HdrHistogram:
    """A histogram of latencies in µs (each clamped by :func:`clamp_us`)."""
    hist = new_histogram()
    for v in values_us:
        hist.record_value(clamp_us(v))
    return hist


def merged(histograms: Iterable[Any]) -> HdrHistogram:
    """The exact merge of several histograms (``None`` entries skipped)."""
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


def encode_histogram(hist: HdrHistogram) -> str:
    """HDR's compressed base64 form as text ('' for an empty histogram)."""
    return hist.encode().decode("ascii") if hist.get_total_count() else ""


def decode_histogram(text: str) -> HdrHistogram:
    """The inverse of :func:`encode_histogram` (into a histogram of rmt's range)."""
    hist = new_histogram()
    add_encoded(hist, text)
    return hist
