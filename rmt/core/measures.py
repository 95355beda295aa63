"""The one table of measurement kinds: name, unit, source and which direction is better.

Every series rmt records (a collector sample field, a load-window field, a derived figure) is a :class:`Measure`
registered here by the module that produces it; reports and checkers look units and directions up here instead
of keeping their own lists. Names carry their unit (``*_bytes``, ``*_us``, ``*_ns``, ``*_total``).
"""

from __future__ import annotations

from dataclasses import dataclass

UNITS = ("bytes", "us", "ns", "s", "count", "ratio", "percent", "per_s", "info", "watts", "joules")
BETTER = ("lower", "higher", "none")


@dataclass(frozen=True)
class Measure:
    """One kind of measurement."""

    name: str
    unit: str
    """One of :data:`UNITS`."""
    source: str
    """Where it comes from, e.g. ``nvml``, ``process``, ``triton_metrics``, ``locust``."""
    better: str
    """``lower``, ``higher`` or ``none`` (informational)."""
    doc: str


MEASURES: dict[str, Measure] = {}


def register_measure(name: str, unit: str, source: str, better: str, doc: str) -> Measure:
    """Register a measurement kind; re-registering the identical definition is a no-op."""
    if unit not in UNITS:
        raise ValueError(f"measure {name}: unit {unit!r} is not one of {UNITS}")
    if better not in BETTER:
        raise ValueError(f"measure {name}: better {better!r} is not one of {BETTER}")
    measure = Measure(name, unit, source, better, doc)
    existing = MEASURES.get(name)
    if existing is not None and existing != measure:
        raise ValueError(f"measure {name} registered twice with different definitions")
    MEASURES[name] = measure
    return measure
