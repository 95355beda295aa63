"""Live state of the RMT web-UI tab: memory history from the collectors, per-stream rate and µs latency.

Pure data structures (no Flask, no Locust) fed by :mod:`rmt.webui.plugin`:

- :class:`LiveMemory` keeps, per memory series, a bounded history of ``(t_s, completed requests, bytes)`` from the
  collectors' latest points, and computes *now*, *Δ since start*, the slope, and a **live verdict preview**: the
  verdict the leak (or pool-growth) check's own judge (:meth:`rmt.check.memory_checks.LeakCheck.judge_series`) gives
  the data so far, so the preview and ``rmt check`` agree on every run, short ones included.
- :class:`LiveStreams` keeps per-second, per-stream counts and µs HDR histograms (from Locust ``request`` events in a
  local run, or from the windows workers ship to the master in a distributed one) and gives rate and p50/p99.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from rmt.check.base import FAIL, PASS, WARN, Verdict
from rmt.check.data import MemorySeries
from rmt.check.inputs import COMPLETED, memory_kind
from rmt.check.memory_checks import LeakCheck, PoolGrowthCheck
from rmt.core.fmt import format_bytes, format_us
from rmt.core.hdr import clamp_us, new_histogram

HISTORY = 3600
"""Samples kept per memory series (older ones are thinned, keeping every other one)."""
RATE_WINDOW_S = 5
LATENCY_WINDOW_S = 10
KEEP_S = 120
"""Seconds of per-stream windows kept for the chart page."""


@dataclass(frozen=True)
class LivePoint:
    """One latest value of a collector series."""

    measure: str
    labels: Mapping[str, str]
    value: float


def series_key(measure: str, labels: Mapping[str, str]) -> str:
    """``measure{label=value,...}`` without the volatile ``pid`` (as :func:`rmt.check.inputs.series_name`)."""
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "pid")
    return f"{measure}{{{shown}}}" if shown else measure


def section_of(measure: str, kind: str) -> str:
    """Which part of the tab a memory series belongs to: ``gpu``, ``pool`` or ``process``."""
    if "gpu" in measure:
        return "gpu"
    return "pool" if kind == "pool" else "process"


class _History:
    """Bounded ``(t_s, requests, bytes)`` history of one series; thinned by half when full."""

    def __init__(self, measure: str, kind: str, model: str | None) -> None:
        self.measure, self.kind, self.model = measure, kind, model
        self.rows: deque[tuple[float, float, float]] = deque()

    def add(self, t_s: float, requests: float, value: float) -> None:
        if len(self.rows) >= HISTORY:
            self.rows = deque(list(self.rows)[::2])
        self.rows.append((t_s, requests, value))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arr = np.array(self.rows, dtype=float).reshape(-1, 3)
        return arr[:, 0], arr[:, 1], arr[:, 2]


class LiveMemory:
    """Memory series of the run so far, judged by the memory checks' own judge (see the module docstring)."""

    def __init__(self, *, leak: LeakCheck | None = None, pool: PoolGrowthCheck | None = None) -> None:
        """``leak``/``pool``: the checks that judge memory and pool series (default parameters unless given)."""
        self.checks: dict[str, LeakCheck] = {"memory": leak or LeakCheck(), "pool": pool or PoolGrowthCheck()}
        self.series: dict[str, _History] = {}
        self._verdicts: dict[str, Verdict] = {}

    def add(self, t_s: float, points: Iterable[LivePoint]) -> None:
        """Record one poll of the collectors' latest points at ``t_s`` (epoch seconds)."""
        points = list(points)
        done: dict[str | None, float] = {}
        for p in points:
            if p.measure in COMPLETED and "model" in p.labels and math.isfinite(p.value):
                done[p.labels["model"]] = done.get(p.labels["model"], 0.0) + p.value
                done[None] = done.get(None, 0.0) + p.value
        for p in points:
            kind = memory_kind(p.measure)
            if kind is None or not math.isfinite(p.value):
                continue
            key = series_key(p.measure, p.labels)
            hist = self.series.get(key)
            if hist is None:
                hist = self.series[key] = _History(p.measure, kind, p.labels.get("model"))
            requests = done.get(hist.model, done.get(None, math.nan))
            hist.add(t_s, requests, p.value)
        self._verdicts.clear()

    def check_of(self, key: str) -> LeakCheck:
        """The check that judges series ``key`` (pool growth for pools, leak otherwise)."""
        return self.checks["pool" if self.series[key].kind == "pool" else "memory"]

    def verdict(self, key: str) -> Verdict:
        """The check's verdict on series ``key`` with the data so far (cached until the next poll)."""
        if key not in self._verdicts:
            hist = self.series[key]
            t, r, v = hist.arrays()
            series = MemorySeries(key, t, r, v, hist.kind, hist.model)
            self._verdicts[key] = self.check_of(key).judge_series(series)
        return self._verdicts[key]

    def rows(self) -> list[dict[str, str]]:
        """Tab rows: section, subject, now, Δ since start, slope, preview; largest growth first per section."""
        ranked: list[tuple[int, float, str, dict[str, str]]] = []
        for key, hist in self.series.items():
            t, _, v = hist.arrays()
            delta = float(v[-1] - v[0])
            verdict = self.verdict(key)
            name = self.check_of(key).name
            measured = verdict.measured
            if measured is not None and math.isfinite(measured):
                slope = f"{format_bytes(measured)}/10k req"
            else:
                span = float(t[-1] - t[0])
                slope = f"{format_bytes(delta / span * 60)}/min" if span > 0 else "-"
            preview = f"{name}: {_preview(verdict)}"
            section = section_of(hist.measure, hist.kind)
            ranked.append(({"gpu": 0, "process": 1, "pool": 2}[section], -abs(delta), key, {
                "section": section, "subject": key, "now": format_bytes(float(v[-1])), "delta": format_bytes(delta),
                "slope": slope, "latency": "", "preview": preview}))
        return [row for *_, row in sorted(ranked, key=lambda r: r[:3])]

    def chart_lines(self, limit: int = 8) -> list[tuple[str, list[float], list[float]]]:
        """``(series, t_s, Δ bytes since start)`` of the ``limit`` series that grew most."""
        growth = []
        for key, hist in self.series.items():
            t, _, v = hist.arrays()
            growth.append((abs(float(v[-1] - v[0])), key, t.tolist(), (v - v[0]).tolist()))
        growth.sort(key=lambda g: -g[0])
        return [(key, t, d) for _, key, t, d in growth[:limit]]


def _preview(verdict: Verdict) -> str:
    """The preview of one verdict: ``LEAK?``/``ok`` with the threshold and trend test, or why it is undecided."""
    if verdict.status not in (PASS, FAIL, WARN):
        return f"undecided ({verdict.explanation})"
    word = {FAIL: "LEAK?", WARN: "ok, growing"}.get(verdict.status, "ok")
    tau, p_value = verdict.evidence.get("kendall_tau"), verdict.evidence.get("p_value")
    test = f", τ={tau:.2f}, p={p_value:.1g}" if isinstance(tau, float) and isinstance(p_value, float) else ""
    return f"{word} (limit {format_bytes(verdict.threshold)}/10k{test})"


class LiveStreams:
    """Per-second, per-stream completed/failed counts and µs latency histograms (see the module docstring)."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[int, tuple[list[int], HdrHistogram]]] = {}
        self.totals: dict[str, list[int]] = {}
        self.streaming: dict[str, dict[int, list[int]]] = {}
        """Streaming streams: second → [responses, cancelled] (latency there is the time to first response)."""
        self.stream_totals: dict[str, list[int]] = {}
        """Streaming streams: [responses, cancelled] of the whole run."""

    def _streamed(self, stream: str, second: int, responses: int, cancelled: int) -> None:
        per = self.streaming.setdefault(stream, {})
        slot = per.setdefault(second, [0, 0])
        slot[0] += responses
        slot[1] += cancelled
        for old in [s for s in per if s < second - KEEP_S]:
            del per[old]
        total = self.stream_totals.setdefault(stream, [0, 0])
        total[0] += responses
        total[1] += cancelled

    def _slot(self, stream: str, second: int) -> tuple[list[int], HdrHistogram]:
        per = self.seconds.setdefault(stream, {})
        slot = per.get(second)
        if slot is None:
            slot = per[second] = ([0, 0], new_histogram())
            for old in [s for s in per if s < second - KEEP_S]:
                del per[old]
        return slot

    def on_request(self, stream: str, t_s: float, latency_us: float, ok: bool,
                   streamed: tuple[int, bool] | None = None) -> None:
        """One request outcome (a Locust ``request`` event: ``response_time`` ms × 1000 = µs); ``streamed``:
        (responses, cancelled) of a streaming request, whose ``latency_us`` is then its time to first response."""
        if streamed is not None:
            self._streamed(stream, int(t_s), streamed[0], int(streamed[1]))
            if streamed[1]:
                return
        counts, hist = self._slot(stream, int(t_s))
        counts[0 if ok else 1] += 1
        total = self.totals.setdefault(stream, [0, 0])
        total[0 if ok else 1] += 1
        if ok:
            hist.record_value(clamp_us(latency_us))

    def on_window(self, stream: str, second: int, succeeded: int, failed: int, latency: HdrHistogram,
                  streamed: tuple[int, int] | None = None) -> None:
        """A worker's window of one stream (merged exactly: counts add, histograms add); ``streamed``:
        (responses, cancelled) when the window counts streaming requests."""
        if streamed is not None:
            self._streamed(stream, second, *streamed)
        counts, hist = self._slot(stream, second)
        counts[0] += succeeded
        counts[1] += failed
        total = self.totals.setdefault(stream, [0, 0])
        total[0] += succeeded
        total[1] += failed
        hist.add(latency)

    def rows(self, now_s: float) -> list[dict[str, str]]:
        """Tab rows: rate over the last complete seconds, totals, failures, p50/p99 µs over the last seconds."""
        out = []
        current = int(now_s)
        for stream in sorted(self.seconds):
            per = self.seconds[stream]
            recent = [per[s] for s in range(current - RATE_WINDOW_S, current) if s in per]
            rate = sum(c[0] for c, _ in recent) / RATE_WINDOW_S
            hist = new_histogram()
            for s in range(current - LATENCY_WINDOW_S, current + 1):
                if s in per:
                    hist.add(per[s][1])
            ok, failed = self.totals.get(stream, [0, 0])
            p50 = format_us(hist.get_value_at_percentile(50)) if hist.get_total_count() else "-"
            p99 = format_us(hist.get_value_at_percentile(99)) if hist.get_total_count() else "-"
            row = {"section": "stream", "subject": stream, "now": f"{rate:.1f} req/s",
                   "delta": f"{ok} ok, {failed} failed", "slope": "", "latency": f"{p50} / {p99}", "preview": ""}
            extra = self.streaming.get(stream)
            if extra is not None:  # a streaming stream: responses, cancellations, latency = time to first response
                responses = sum(extra[s][0] for s in range(current - RATE_WINDOW_S, current) if s in extra)
                row["now"] += f", {responses / RATE_WINDOW_S:.1f} responses/s"
                total = self.stream_totals[stream]
                row["delta"] = f"{ok} completed, {total[1]} cancelled, {failed} failed, {total[0]} responses"
                row["latency"] = f"first response {p50} / {p99}"
            out.append(row)
        return out

    def chart_lines(self, now_s: float) -> dict[str, list[tuple[str, list[float], list[float]]]]:
        """Per stream over the kept seconds: ``rate`` (completed/s) and ``p99`` (µs) lines."""
        rate, p99 = [], []
        for stream in sorted(self.seconds):
            per = self.seconds[stream]
            secs = sorted(s for s in per if s < int(now_s))
            rate.append((stream, [float(s) for s in secs], [float(per[s][0][0]) for s in secs]))
            p99.append((stream, [float(s) for s in secs],
                        [float(per[s][1].get_value_at_percentile(99)) if per[s][1].get_total_count() else math.nan
                         for s in secs]))
        return {"rate": rate, "p99": p99}


def summary_row(section: str, subject: str, note: str) -> dict[str, Any]:
    """A row that only says something (e.g. where the chart page is, or why a section is empty)."""
    return {"section": section, "subject": f"{subject}: {note}", "now": "", "delta": "", "slope": "",
            "latency": "", "preview": ""}
