"""The one byte formatter and the one duration formatter of rmt (reports, web UI, verdict explanations, tables).

Both keep the sign, pick the largest unit that keeps the number's magnitude ≥ 1, and write ``-`` for a missing value
(None, NaN, inf). ``spec`` is the number's format spec (``.2f`` for table cells, ``.4g`` for chart ticks).
"""

from __future__ import annotations

import math

MISSING = "-"
_BINARY = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
_DURATION_US = ((1e6, "s"), (1e3, "ms"))


def _scaled(value: float | None, units: tuple[tuple[float, str], ...], base: str, spec: str, base_spec: str) -> str:
    """``value`` divided by the first of ``units`` its magnitude reaches, else in ``base`` (``base_spec``)."""
    if value is None or not math.isfinite(value):
        return MISSING
    for div, suffix in units:
        if abs(value) >= div:
            return f"{value / div:{spec}} {suffix}"
    return f"{value:{base_spec}} {base}"


def format_bytes(value: float | None, spec: str = ".2f") -> str:
    """Bytes with a binary prefix: ``1.50 MiB``, ``-3.00 KiB``, ``512 B``."""
    return _scaled(value, _BINARY, "B", spec, ".0f" if spec.endswith("f") else spec)


def format_us(value: float | None, spec: str = ".3g") -> str:
    """A duration given in µs as s, ms or µs: ``1.5 ms``, ``2.25 s``, ``840 µs``."""
    return _scaled(value, _DURATION_US, "µs", spec, spec)
