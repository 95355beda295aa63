"""Server restarts seen in a run's own data, and memory judged per server lifetime.

A restarted tritonserver counts requests from 0 again and is a new process: its memory starts from scratch, so a
series that spans the restart is neither a leak nor healthy. :func:`restart_times` finds each restart from black-box
evidence only: a new server PID, or (where the process is not sampled) every model's request counters going back
together. :func:`per_lifetime` splits
every memory series at those instants into one series per lifetime (``<name> lifetime <k>``), and
:func:`restart_losses` turns them into the run's losses (see :mod:`rmt.check.completeness`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from rmt.check.data import MemorySeries
from rmt.core.samples import Series

RESTART = "server_restart"
SERVER_GAP = "server_samples_gap"
GAP_S = 5.0
"""A longer stretch without the server's RSS is a loss (the collector reads it at every tick, 10 Hz by default)."""
COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count")
MERGE_NS = 5_000_000_000
"""Drops within this span of each other are one restart (the counters of several models reset together)."""


def restart_times(series: Mapping[tuple[str, int], Series]) -> list[int]:
    """Epoch ns at which the server restarted.

    Where the server process was sampled, its PID decides: every server PID after the first is a new lifetime. Only
    without that (a remote server, a fleet) do Triton's counters decide, and then only when *every* model counted
    before and after the drop went back together: an unloaded and reloaded model resets its own counters, the server
    keeps running (a careless reload is not a restart)."""
    pids: dict[str, tuple[int, int]] = {}
    for s in series.values():
        if s.measure == "process_rss_bytes" and s.labels.get("role") == "server" and len(s.t_epoch_ns):
            seen = s.t_epoch_ns[~np.isnan(s.values)]
            if len(seen):
                pids[str(s.labels.get("pid"))] = (int(seen[0]), int(seen[-1]))
    if pids:  # a new lifetime begins right after the previous server's last sample
        lives = sorted(pids.values())
        return _merged([before[1] + 1_000_000 for before in lives[:-1]])  # +1 ms: exact in float seconds too
    drops: dict[str, list[int]] = {}
    spans: dict[str, tuple[int, int]] = {}
    for s in series.values():
        if s.measure not in COUNTERS:
            continue
        ok = ~np.isnan(s.values)
        t, v = s.t_epoch_ns[ok], s.values[ok]
        if not len(t):
            continue
        model = str(s.labels.get("model", ""))
        drops.setdefault(model, []).extend(int(t[i + 1]) for i in np.nonzero(np.diff(v) < 0)[0])
        first, last = spans.get(model, (int(t[0]), int(t[-1])))
        spans[model] = (min(first, int(t[0])), max(last, int(t[-1])))
    restarts = []
    for t in _merged([x for found in drops.values() for x in found]):
        counted = [m for m, (first, last) in spans.items() if first < t <= last]  # counted across the drop
        if counted and all(any(abs(x - t) <= MERGE_NS for x in drops.get(m, ())) for m in counted):
            restarts.append(t)
    return restarts


def _merged(times: list[int]) -> list[int]:
    """Instants within :data:`MERGE_NS` of the previous one folded into it."""
    merged: list[int] = []
    for t in sorted(times):
        if not merged or t - merged[-1] > MERGE_NS:
            merged.append(t)
    return merged


def server_gaps(series: Mapping[tuple[str, int], Series], start_ns: int | None) -> list[dict[str, Any]]:
    """A loss for each stretch of more than :data:`GAP_S` without a sample of the server process's RSS (the server
    ended and was not found again, or could not be read); the collector reads it at every tick."""
    out = []
    for s in series.values():
        if s.measure != "process_rss_bytes" or s.labels.get("role") != "server" or len(s.t_epoch_ns) < 2:
            continue
        good = s.t_epoch_ns[~np.isnan(s.values)]
        if not len(good):
            continue
        edges = np.append(good, s.t_epoch_ns[-1])
        for i in np.nonzero(np.diff(edges) > GAP_S * 1e9)[0]:
            origin = start_ns or int(s.t_epoch_ns[0])
            out.append({"kind": SERVER_GAP, "subject": f"tritonserver pid {s.labels.get('pid')} samples",
                        "from_ns": int(edges[i]), "gap_s": float(edges[i + 1] - edges[i]) / 1e9,
                        "reason": f"no sample of the server process for {(edges[i + 1] - edges[i]) / 1e9:.1f} s "
                                  f"from {(edges[i] - origin) / 1e9:.1f} s on (it ended, restarted or could not be "
                                  "read): its memory is judged on what came before"})
    return out


def per_lifetime(memory: list[MemorySeries], restarts_ns: list[int]) -> list[MemorySeries]:
    """Each series cut at the restarts: one series per lifetime it has samples in, named ``… lifetime K``
    (unchanged without restarts). A process's series (its PID a label the subject leaves out) lives in one lifetime
    and is named by it too, so the old and the new server's stub are two subjects, not one named twice."""
    if not restarts_ns:
        return memory
    edges = np.asarray(restarts_ns, dtype=float) / 1e9
    out: list[MemorySeries] = []
    for m in memory:
        life = np.searchsorted(edges, m.t_s, side="right")
        kept = [k for k in np.unique(life) if np.any(~np.isnan(m.values[life == k]))]
        if not kept:
            out.append(m)
            continue
        for k in kept:
            sel = life == k
            out.append(replace(m, name=f"{m.name} lifetime {k + 1}", t_s=m.t_s[sel], requests=m.requests[sel],
                               values=m.values[sel]))
    return out


def restart_losses(restarts_ns: list[int], start_ns: int | None) -> list[dict[str, Any]]:
    """One loss per restart, saying when it happened and that memory is judged per lifetime."""
    out = []
    for i, t in enumerate(restarts_ns, 1):
        when = f"{(t - start_ns) / 1e9:.1f} s into the load" if start_ns else f"at epoch {t / 1e9:.1f} s"
        out.append({"kind": RESTART, "subject": f"tritonserver restart {i}", "at_ns": t,
                    "reason": f"the server restarted {when} (request counters went back to 0 or a new server "
                              "process appeared): memory is judged per server lifetime, the requests in flight "
                              "failed"})
    return out
