"""Report sections on memory: each judged series against completed requests with its fitted trend and threshold,
and the growth of every series per phase (with the request patterns each phase sent)."""

from __future__ import annotations

import math
import warnings
from html import escape
from typing import Any

import numpy as np

from rmt.check.data import MemorySeries
from rmt.check.memory_checks import LeakCheck, PoolGrowthCheck
from rmt.check.quantity import parse_warmup
from rmt.check.trend import PER_REQUESTS, Trend, fit_trend
from rmt.core.fmt import format_bytes
from rmt.report import svg
from rmt.report.common import NS, Raw, RunData, Section, no_data, table, verdict_notes

MAX_CHARTS = 8
"""Memory series drawn as charts (failures first); the rest are listed in the table."""


def _verdicts_by_subject(data: RunData) -> dict[str, dict[str, Any]]:
    doc = data.verdicts or {}
    return {str(v["subject"]): v for v in doc.get("verdicts", []) if v.get("check") in ("leak", "pool")}


def _check_param(data: RunData, check: str, name: str, default: Any) -> Any:
    spec = (data.verdicts or {}).get("spec") or {}
    return (spec.get(check) or {}).get(name, default)


def _trend(data: RunData, s: MemorySeries) -> Trend | None:
    check = "pool" if s.kind == "pool" else "leak"
    fraction, seconds = parse_warmup(_check_param(data, check, "warmup", LeakCheck.params[2].default))
    with warnings.catch_warnings():  # scipy warns on constant series; the trend is still defined (flat)
        warnings.simplefilter("ignore", RuntimeWarning)
        return fit_trend(s.t_s, s.requests, s.values, warmup_fraction=fraction, warmup_s=seconds)


def _threshold_per_10k(data: RunData, s: MemorySeries, verdict: dict[str, Any] | None) -> float:
    if verdict and isinstance(verdict.get("threshold"), int | float):
        return float(verdict["threshold"])
    cls = PoolGrowthCheck if s.kind == "pool" else LeakCheck
    check = cls({k: v for k, v in [("max_growth", _check_param(data, cls.name, "max_growth", None))] if v})
    return float(check.values["max_growth"]) * PER_REQUESTS


def _rank(s: MemorySeries, verdict: dict[str, Any] | None) -> tuple[int, str]:
    status = (verdict or {}).get("status", "")
    return ({"fail": 0, "pass": 1}.get(status, 2), s.name)


def series_chart(s: MemorySeries, trend: Trend | None, threshold_per_10k: float, status: str) -> str:
    """Memory against completed requests: samples, the fitted Theil–Sen trend and the tolerated growth."""
    ok = np.isfinite(s.requests) & np.isfinite(s.values)
    lines = [svg.Line("samples", s.requests[ok].tolist(), s.values[ok].tolist(), color="#555", width=1.0)]
    if trend is not None:
        xs = [trend.requests_first, trend.requests_last]
        fit = [trend.intercept_bytes + trend.slope_bytes_per_request * x for x in xs]
        limit = [fit[0] + threshold_per_10k / PER_REQUESTS * (x - xs[0]) for x in xs]
        lines += [svg.Line(f"fitted trend {format_bytes(trend.growth_per_10k_bytes)}/10k", xs, fit,
                           color="#d62728" if status == "fail" else "#1f77b4", dash="7 4", width=2.2),
                  svg.Line(f"threshold {format_bytes(threshold_per_10k)}/10k", xs, limit, color="#2ca02c",
                           dash="2 3", width=1.8)]
    return svg.line_chart(svg.Chart(lines, svg.Axis("completed requests"), svg.Axis("bytes", unit="bytes"),
                                    title=s.name))


def memory_section(data: RunData) -> Section:
    """Memory series with fitted trend and threshold (the leak and pool checks' view)."""
    memory = [s for s in data.inputs.memory if np.isfinite(s.values).any()]
    if not memory:
        why = "; ".join(n for n in data.inputs.notes if "memory" in n or "samples" in n) or "no memory series"
        return Section("memory", "Memory vs completed requests", no_data(why, "Run a collector beside the load "
                                                                        "(rmt.collect.locust_plugin or rmt collect)."),
                       False)
    verdicts = _verdicts_by_subject(data)
    memory.sort(key=lambda s: _rank(s, verdicts.get(s.name)))
    charts: list[str] = []
    rows: list[list[Any]] = []
    for s in memory:
        verdict = verdicts.get(s.name)
        status = str((verdict or {}).get("status", "-"))
        trend = _trend(data, s)
        threshold = _threshold_per_10k(data, s, verdict)
        finite = s.values[np.isfinite(s.values)]
        growth = trend.growth_per_10k_bytes if trend else math.nan
        rows.append([s.name, s.kind, Raw(f'<span class="st {status}">{escape(status.upper())}</span>'),
                     format_bytes(float(finite[-1] - finite[0])), format_bytes(growth) + "/10k" if trend else "-",
                     format_bytes(threshold) + "/10k", f"{trend.tau:.2f} / {trend.p_value:.2g}" if trend else "-"])
        if len(charts) < MAX_CHARTS and trend is not None:
            charts.append(f'<figure class="mem">{series_chart(s, trend, threshold, status)}<figcaption>'
                          f"{escape(s.name)} — {escape(str((verdict or {}).get('explanation', '')))}"
                          "</figcaption></figure>")
    intro = ("<p>Memory is judged against <em>completed requests</em>, not time: the dashed line is the robust "
             "(Theil–Sen) trend fitted after the warm-up, the dotted green line the largest growth the check "
             "tolerates from the same start. A leak is a significant trend (Kendall τ) above the threshold with a "
             "rising floor.</p>")
    summary = table(["series", "kind", "verdict", "Δ over run", "fitted growth", "threshold", "τ / p"], rows,
                    cls="data")
    body = intro + ("".join(charts) or no_data("no series had enough samples to fit a trend")) + summary
    return Section("memory", "Memory vs completed requests", body)


def _at(t: np.ndarray, v: np.ndarray, when: float) -> float:
    ok = np.isfinite(v)
    if not ok.any() or when < t[ok][0] - 1.0 or when > t[ok][-1] + 1.0:
        return math.nan
    return float(np.interp(when, t[ok], v[ok]))


def _patterns(data: RunData) -> dict[str, list[str]]:
    sent: dict[str, dict[str, int]] = {}
    for w in data.windows:
        bucket = sent.setdefault(str(w["phase"]), {})
        bucket[str(w["stream"])] = bucket.get(str(w["stream"]), 0) + int(w["sent"])
    return {p: [f"{k} ({n})" for k, n in sorted(v.items()) if n] for p, v in sent.items()}


def phase_section(data: RunData) -> Section:
    """Growth of every memory series in each phase (Δ bytes and bytes per completed request), with the phases'
    request patterns."""
    title = "Memory growth per phase and pattern"
    memory = [s for s in data.inputs.memory if np.isfinite(s.values).any()]
    if not data.phases:
        return Section("phases", title, no_data("no request windows, so no phases",
                                                "Phases come from windows.jsonl (rmt.load)."), False)
    if not memory:
        return Section("phases", title, no_data("no memory series"), False)
    t0 = data.t0_ns / NS
    verdicts = _verdicts_by_subject(data)
    memory.sort(key=lambda s: _rank(s, verdicts.get(s.name)))
    header = ["series"] + [f"{p} ({a:.0f}–{b:.0f} s)" for p, a, b in data.phases]
    rows = []
    for s in memory:
        cells: list[Any] = [s.name]
        for _, a, b in data.phases:
            dv = _at(s.t_s, s.values, t0 + b) - _at(s.t_s, s.values, t0 + a)
            dr = _at(s.t_s, s.requests, t0 + b) - _at(s.t_s, s.requests, t0 + a)
            per = f", {dv / dr:.0f} B/req" if math.isfinite(dv) and math.isfinite(dr) and dr > 0 else ""
            cells.append(format_bytes(dv) + per)
        rows.append(cells)
    lines = []
    for s in memory[:MAX_CHARTS]:
        ok = np.isfinite(s.values)
        base = float(s.values[ok][0])
        lines.append(svg.Line(s.name.split("{")[0] + "{" + s.name.split("{", 1)[-1][:48] if "{" in s.name
                              else s.name, (s.t_s[ok] - t0).tolist(), (s.values[ok] - base).tolist()))
    bands = [svg.Band(a, b, p, ("#eef2f7", "#f7f1e8")[i % 2]) for i, (p, a, b) in enumerate(data.phases)]
    chart = svg.line_chart(svg.Chart(lines, svg.Axis("seconds since load start", unit="s"),
                                     svg.Axis("Δ bytes since first sample", unit="bytes"), bands,
                                     title="memory growth over time, by phase"))
    patterns = _patterns(data)
    ptable = table(["phase", "streams sent (requests)"], [[p, ", ".join(patterns.get(p, [])) or "-"]
                                                         for p, _, _ in data.phases], cls="data")
    notes = verdict_notes(data, ("leak_attribution", "fragmentation"))
    return Section("phases", title, f"<figure>{chart}</figure>{ptable}{table(header, rows, cls='data')}{notes}")
