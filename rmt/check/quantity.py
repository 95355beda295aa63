"""Parsers for the values of check specs: sizes, growth rates, durations, ratios, warm-up lengths.

Each raises :class:`ValueError` with the accepted forms in its message; :mod:`rmt.check.spec` turns that into a
ConfigError naming the spec key.
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
    "k": 1024, "m": 1024**2, "g": 1024**3,
}
_COUNT_SUFFIX = {"": 1, "k": 1000, "m": 1_000_000}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER = r"(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"


def parse_size(text: str) -> float:
    """``"1MiB"`` → 1048576.0; binary (KiB, MiB, GiB; K/M/G alone are binary too) and decimal (kB, MB, GB) units."""
    m = re.fullmatch(_NUMBER + r"\s*(?P<unit>[a-z]*)", text.strip().lower())
    if not m or m.group("unit") not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: write e.g. 100B, 512KiB, 1MiB, 2GB")
    return float(m.group("num")) * _SIZE_UNITS[m.group("unit")]


def parse_count(text: str) -> float:
    """``"10k"`` → 10000.0; ``"request"``/``"req"`` → 1."""
    t = text.strip().lower()
    if t in ("request", "req", "requests"):
        return 1.0
    m = re.fullmatch(_NUMBER + r"\s*(?P<suffix>[km]?)\s*(?:req|requests?)?", t)
    if not m or float(m.group("num")) <= 0:
        raise ValueError(f"{text!r} is not a request count: write e.g. request, 1000, 10k, 1M")
    return float(m.group("num")) * _COUNT_SUFFIX[m.group("suffix")]


def parse_growth(text: str) -> float:
    """A growth rate ``SIZE/COUNT`` (``"1MiB/10k"``, ``"100B/request"``) → bytes per request."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError(f"{text!r} is not a growth rate: write SIZE/REQUESTS, e.g. 1MiB/10k or 100B/request")
    size, count = text.split("/")
    return parse_size(size) / parse_count(count)


def parse_duration(text: str | float) -> float:
    """``"5s"``, ``"500ms"``, ``"2m"``, ``"1h"`` or a plain number of seconds → seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(_NUMBER + r"\s*(?P<unit>[a-z]*)", str(text).strip().lower())
        if not m or m.group("unit") not in _DURATION_UNITS:
            raise ValueError(f"{text!r} is not a duration: write e.g. 5s, 500ms, 2m")
        value = float(m.group("num")) * _DURATION_UNITS[m.group("unit")]
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"{text!r} is not a duration: it must be finite and not negative")
    return value


def parse_number(text: str | float, *, low: float = 0.0, high: float = math.inf, inclusive_low: bool = True) -> float:
    """A plain number within ``[low, high]`` (``(low, high]`` when not ``inclusive_low``)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number") from None
    if isinstance(text, bool) or not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    below = value < low if inclusive_low else value <= low
    if below or value > high:
        bracket = "[" if inclusive_low else "("
        raise ValueError(f"{text!r} is out of range: use a number in {bracket}{low:g}, {high:g}]")
    return value


def parse_warmup(text: str | float) -> tuple[float, float]:
    """A warm-up length: ``"10%"`` (of the run's completed requests) or a duration → ``(fraction, seconds)``."""
    t = str(text).strip()
    if t.endswith("%"):
        fraction = parse_number(t[:-1], high=90.0) / 100.0
        return fraction, 0.0
    try:
        return 0.0, parse_duration(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a warm-up length: write a share of the run (10%) or a duration "
                         "(30s)") from None
