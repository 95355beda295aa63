"""Fairness statistics: Jain's index, (weighted) max-min fair shares, starvation gaps.

Pure functions over plain arrays. Jain's index ``J = (Σx)² / (n·Σx²)`` is 1 when every ``x`` is equal and ``1/n`` when
one party gets everything; here ``x_i`` is a model's served count divided by its max-min fair share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def jain_index(x: Sequence[float] | np.ndarray) -> float:
    """Jain's fairness index of non-negative allocations; NaN for none, 1.0 when all are zero."""
    a = np.asarray(x, dtype=float)
    if a.size == 0:
        return float("nan")
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError("Jain's index needs finite, non-negative allocations")
    sq = float(np.sum(a * a))
    if sq == 0:
        return 1.0
    return float(np.sum(a) ** 2 / (a.size * sq))


def max_min_fair_share(demands: Sequence[float] | np.ndarray, capacity: float,
                       weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Weighted max-min fair allocation of ``capacity`` (progressive filling / water-filling).

    Every party gets ``min(demand, level × weight)`` with the level raised until capacity is used up or every
    demand is met. ``math.inf`` is an unbounded (backlogged) demand. Weights default to 1.
    """
    d = np.asarray(demands, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    if d.shape != w.shape:
        raise ValueError("demands and weights must have the same length")
    if np.any(d < 0) or np.any(w <= 0) or capacity < 0:
        raise ValueError("demands and capacity must be non-negative and weights positive")
    share = np.zeros_like(d)
    left, weight_left = float(capacity), float(w.sum())
    order = np.argsort(d / w, kind="stable")
    for pos, i in enumerate(order.tolist()):
        level = left / weight_left
        if d[i] / w[i] <= level:
            share[i] = d[i]
            left -= d[i]
            weight_left -= w[i]
        else:
            rest = order[pos:]
            share[rest] = level * w[rest]
            break
    return share


def fairness_index(served: Sequence[float], demands: Sequence[float],
                   weights: Sequence[float] | None = None) -> tuple[float, np.ndarray]:
    """Jain's index of served/fair-share over parties with a positive fair share, and the fair shares.

    The capacity is what was served in total, so the index judges how it was divided, not how much there was.
    """
    s = np.asarray(served, dtype=float)
    fair = max_min_fair_share(demands, float(s.sum()), weights)
    mask = fair > 0
    if not mask.any():
        return float("nan"), fair
    return jain_index(s[mask] / fair[mask]), fair


@dataclass(frozen=True)
class Gap:
    """The longest stretch without a completion while requests were pending."""

    length_s: float
    start_s: float
    """Start of the stretch (NaN when there was none)."""


def on_grid(t_s: np.ndarray, served: np.ndarray, pending: np.ndarray, unserved: np.ndarray, window_s: float = 1.0,
            end_s: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stream's windows on a hole-free grid from its first window to ``end_s`` (default: its last window):
    ``(t_s, served, waiting)`` with ``waiting = pending + unserved``.

    A load process writes a window only when something happened in it (a send, a reply), so a second without a
    record is one in which nothing was served and nothing was sent: the requests outstanding at the end of the last
    recorded window are still outstanding. ``unserved`` counts requests answered without service in the window
    (queue timeouts, queue-full rejections): a stream whose every request times out wanted service all along.
    """
    t = np.asarray(t_s, dtype=float)
    if t.size == 0:
        return t, np.zeros(0), np.zeros(0)
    last = t[-1] if end_s is None else max(float(end_s), t[-1])
    grid = t[0] + window_s * np.arange(round((last - t[0]) / window_s) + 1)
    at = np.clip(np.round((t - t[0]) / window_s).astype(int), 0, len(grid) - 1)
    has = np.zeros(len(grid), dtype=bool)
    has[at] = True
    out_served, out_unserved = np.zeros(len(grid)), np.zeros(len(grid))
    np.add.at(out_served, at, np.asarray(served, dtype=float))
    np.add.at(out_unserved, at, np.asarray(unserved, dtype=float))
    recorded = np.zeros(len(grid))
    recorded[at] = np.asarray(pending, dtype=float)
    # carry the last recorded outstanding count into the seconds without a record
    last_seen = np.maximum.accumulate(np.where(has, np.arange(len(grid)), 0))
    return grid, out_served, recorded[last_seen] + out_unserved


def longest_starvation(t_s: np.ndarray, completed: np.ndarray, pending: np.ndarray, window_s: float = 1.0) -> Gap:
    """Longest run of consecutive windows with no completion while requests were pending at the window's end.

    Windows are ``[t_s[i], t_s[i] + window_s)``; a missing window (a hole in ``t_s``) breaks a run.
    """
    t = np.asarray(t_s, dtype=float)
    starving = (np.asarray(completed) == 0) & (np.asarray(pending) > 0)
    if not starving.any():
        return Gap(0.0, math.nan)
    contiguous = np.r_[False, np.diff(t) <= window_s * 1.5]
    prev = np.r_[False, starving[:-1]]
    begins = np.flatnonzero(starving & ~(prev & contiguous))
    nxt = np.r_[starving[1:], False] & np.r_[contiguous[1:], False]
    ends = np.flatnonzero(starving & ~nxt)
    lengths = t[ends] + window_s - t[begins]
    k = int(np.argmax(lengths))
    return Gap(float(lengths[k]), float(t[begins[k]]))
