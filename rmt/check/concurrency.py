"""Concurrency from execution traces: a sweep over start/end events.

Pure functions over arrays of half-open intervals ``[start_ns, end_ns)``: an execution that ends at the instant another
starts does not overlap it. Used for rate-limit accounting (resources held by executing instances never exceed the
budget) and for cross-device independence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Profile:
    """A step function: ``level[i]`` holds from ``t_ns[i]`` until ``t_ns[i + 1]``."""

    t_ns: np.ndarray
    level: np.ndarray

    @property
    def peak(self) -> float:
        """The highest level reached (0 for no events)."""
        return float(self.level.max()) if len(self.level) else 0.0

    def first_above(self, limit: float) -> int | None:
        """Index of the first step whose level exceeds ``limit``, or None."""
        over = np.flatnonzero(self.level > limit)
        return int(over[0]) if len(over) else None

    def time_above_ns(self, limit: float) -> int:
        """Total nanoseconds spent above ``limit``."""
        if len(self.t_ns) < 2:
            return 0
        widths = np.diff(self.t_ns)
        return int(widths[self.level[:-1] > limit].sum())


def profile(start_ns: np.ndarray, end_ns: np.ndarray, weight: np.ndarray | float = 1.0) -> Profile:
    """The total weight of the intervals open at every instant (ends are processed before starts at a tie)."""
    start = np.asarray(start_ns, dtype=np.int64)
    end = np.asarray(end_ns, dtype=np.int64)
    if start.shape != end.shape:
        raise ValueError("start_ns and end_ns must have the same length")
    w = np.broadcast_to(np.asarray(weight, dtype=float), start.shape)
    if len(start) == 0:
        return Profile(np.zeros(0, dtype=np.int64), np.zeros(0))
    times = np.concatenate([end, start])
    deltas = np.concatenate([-w, w])
    # lexsort: by time, then ends (0) before starts (1)
    kinds = np.concatenate([np.zeros(len(end), dtype=np.int8), np.ones(len(start), dtype=np.int8)])
    order = np.lexsort((kinds, times))
    times, deltas = times[order], deltas[order]
    levels = np.cumsum(deltas)
    # keep the last level of each distinct instant
    last = np.r_[times[1:] != times[:-1], True]
    return Profile(times[last], np.round(levels[last], 9))


def open_at(t_ns: int, start_ns: np.ndarray, end_ns: np.ndarray) -> np.ndarray:
    """Boolean mask of the intervals open at instant ``t_ns``."""
    return (np.asarray(start_ns) <= t_ns) & (np.asarray(end_ns) > t_ns)


def busy_fraction_while(busy: Profile, condition: Profile, condition_level: float) -> float:
    """Fraction of the time ``condition`` is at or above ``condition_level`` during which ``busy`` is above 0.

    Cross-device independence: with ``condition`` the concurrency of device 0 and ``condition_level`` its capacity,
    a healthy device 1 keeps executing (fraction near its own utilisation) while device 0 is saturated.
    Returns NaN when the condition never holds.
    """
    if len(condition.t_ns) < 2:
        return float("nan")
    edges = np.union1d(condition.t_ns, busy.t_ns)
    mids = edges[:-1]
    widths = np.diff(edges).astype(float)

    def level_at(p: Profile, t: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(p.t_ns, t, side="right") - 1
        out = np.where(idx >= 0, p.level[np.clip(idx, 0, None)], 0.0) if len(p.t_ns) else np.zeros(len(t))
        return np.asarray(out, dtype=float)

    cond = level_at(condition, mids) >= condition_level
    total = widths[cond].sum()
    if total <= 0:
        return float("nan")
    return float(widths[cond & (level_at(busy, mids) > 0)].sum() / total)
