"""Report sections on the load: throughput and share vs demand per model, latency CDFs by priority (from the µs HDR
histograms), concurrency vs budget (from probe execution traces) and the warmup timeline."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from rmt.check import concurrency
from rmt.check.ratelimit import effective_budgets, parse_flags
from rmt.core.fmt import format_us
from rmt.core.windows import histogram_of
from rmt.report import svg
from rmt.report.common import NS, RunData, Section, no_data, table, verdict_notes

#: Percentiles at which a latency CDF is drawn (dense in the tail).
CDF_PERCENTILES = tuple(np.unique(np.concatenate([np.linspace(0.0, 90.0, 46), 100 - np.logspace(1, -3, 40),
                                                  [100.0]])).tolist())
FAILED = ("failed_timeout", "failed_rejected", "failed_server", "failed_client")


def cdf_line(label: str, hist: Any) -> svg.Line:
    """The CDF of an µs HDR histogram as a step line (x: latency, y: percentile)."""
    xs = [float(hist.get_value_at_percentile(q)) for q in CDF_PERCENTILES]
    return svg.Line(label, xs, list(CDF_PERCENTILES), step=True)


def throughput_section(data: RunData) -> Section:
    """Completed requests per second per model over time, and each model's share of served vs demanded requests."""
    title = "Throughput and share vs demand"
    if not data.windows:
        return Section("throughput", title, no_data("no windows.jsonl", "No rmt.load load ran in this run."),
                       False)
    per_s: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
    sent: dict[str, int] = defaultdict(int)
    done: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    for w in data.windows:
        model = str(w["model"])
        per_s[model][(int(w["window_start_ns"]) - data.t0_ns) / NS] += int(w["succeeded"])
        sent[model] += int(w["sent"]) + int(w.get("dropped_cap") or 0)
        done[model] += int(w["succeeded"])
        failed[model] += sum(int(w.get(f) or 0) for f in FAILED)
    models = sorted(per_s)
    lines = [svg.Line(m, sorted(per_s[m]), [per_s[m][t] for t in sorted(per_s[m])], step=True) for m in models]
    bands = [svg.Band(a, b, p, ("#eef2f7", "#f7f1e8")[i % 2]) for i, (p, a, b) in enumerate(data.phases)]
    rate = svg.line_chart(svg.Chart(lines, svg.Axis("seconds since load start", unit="s"),
                                    svg.Axis("completed requests / s"), bands, title="throughput per model"))
    total_sent, total_done = max(1, sum(sent.values())), max(1, sum(done.values()))
    share = svg.bar_chart(models, [("share of demand (sent)", [100 * sent[m] / total_sent for m in models]),
                                   ("share served (completed)", [100 * done[m] / total_done for m in models])],
                          y=svg.Axis("% of all requests", unit="%"), title="share served vs share demanded")
    duration = max((b for _, _, b in data.phases), default=1.0) - min((a for _, a, _ in data.phases), default=0.0)
    rows = [[m, sent[m], done[m], failed[m], f"{done[m] / max(duration, 1e-9):.1f}",
             f"{100 * sent[m] / total_sent:.1f}%", f"{100 * done[m] / total_done:.1f}%"] for m in models]
    notes = verdict_notes(data, ("fairness", "weights", "starvation"))
    body = (f"<figure>{rate}</figure><figure>{share}</figure>"
            + table(["model", "sent", "completed", "failed", "completed/s", "share of demand", "share served"],
                    rows, cls="data") + notes)
    return Section("throughput", title, body)


def latency_section(data: RunData) -> Section:
    """Latency CDFs (from the intended send time, µs, coordinated-omission-correct) per model and priority."""
    title = "Latency by priority"
    if not data.windows:
        return Section("latency", title, no_data("no windows.jsonl"), False)
    groups: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for w in data.windows:
        if w.get("latency_us_hdr"):
            groups[str(w["model"])][int(w["priority"])].append(w)
    if not groups:
        return Section("latency", title, no_data("no request completed"), False)
    figures, rows = [], []
    for model in sorted(groups):
        lines = []
        for priority in sorted(groups[model]):
            hist = histogram_of(groups[model][priority])
            label = f"priority {priority}" if priority else "default priority"
            lines.append(cdf_line(label, hist))
            rows.append([model, label, hist.get_total_count()] + [format_us(hist.get_value_at_percentile(q))
                                                                  for q in (50, 90, 99, 99.9)]
                        + [format_us(hist.get_max_value())])
        chart = svg.line_chart(svg.Chart(lines, svg.Axis("latency", log=True, unit="us"),
                                         svg.Axis("percentile", lo=0, hi=100, unit="%"), title=f"{model} latency CDF"))
        figures.append(f'<figure class="cdf">{chart}<figcaption>{model}: share of requests answered within a '
                       "latency (µs HDR histograms, merged over every worker)</figcaption></figure>")
    notes = verdict_notes(data, ("priority", "queue_policy"))
    return Section("latency", title, "".join(figures)
                   + table(["model", "priority", "requests", "p50", "p90", "p99", "p99.9", "max"], rows, cls="data")
                   + notes)


def _budgets(data: RunData) -> dict[str, tuple[float, str]]:
    """Per model: the concurrency its executions may reach and why (rate-limiter budget or instance count)."""
    out: dict[str, tuple[float, str]] = {}
    inputs = data.inputs
    budgets: dict[Any, int] = {}
    if inputs.rate_limiter_on:
        budgets, _ = effective_budgets(inputs.models.values(), parse_flags(inputs.rate_limit_flags))
    for name, limits in inputs.models.items():
        instances = len(limits.instances)
        caps = []
        for needs in limits.needs.values():
            for need in needs:
                budget = budgets.get((need.name, None if need.global_ else 0))
                if budget and need.count:
                    caps.append((budget // need.count, f"rate-limiter {need.name}: {budget} / {need.count} each"))
        if caps:
            out[name] = min(caps)
        elif instances:
            out[name] = (float(instances), f"{instances} instance(s)")
    return out


def concurrency_section(data: RunData) -> Section:
    """Executions in flight per model over time (probe traces) against the budget they must respect."""
    title = "Concurrency vs budget"
    traces = data.inputs.traces
    if not traces:
        return Section("concurrency", title, no_data("no probe execution traces (traces.jsonl)",
                                                     "Send load to a probe-style model (one that returns TRACE)."),
                       False)
    budgets = _budgets(data)
    by_model: dict[str, list[Any]] = defaultdict(list)
    for t in traces:
        by_model[t.model].append(t)
    figures, rows = [], []
    for model in sorted(by_model):
        starts = np.concatenate([t.start_ns for t in by_model[model]])
        ends = np.concatenate([t.end_ns for t in by_model[model]])
        prof = concurrency.profile(starts, ends)
        xs = ((prof.t_ns - data.t0_ns) / NS).tolist()
        lines = [svg.Line("executing", xs, prof.level.tolist(), step=True)]
        budget, why = budgets.get(model, (math.nan, "unknown (no model config in the manifest)"))
        if math.isfinite(budget) and xs:
            lines.append(svg.Line(f"budget {budget:g}", [xs[0], xs[-1]], [budget, budget], color="#d62728",
                                  dash="6 4"))
        chart = svg.line_chart(svg.Chart(lines, svg.Axis("seconds since load start", unit="s"),
                                         svg.Axis("executions in flight", lo=0), title=f"{model} concurrency"))
        figures.append(f"<figure>{chart}</figure>")
        rows.append([model, len(starts), f"{prof.peak:g}", why,
                     f"{prof.time_above_ns(budget) / 1e6:.1f} ms" if math.isfinite(budget) else "-"])
    notes = verdict_notes(data, ("rate_limit", "concurrency", "cross_device"))
    return Section("concurrency", title, "".join(figures) + table(
        ["model", "executions traced", "peak in flight", "budget", "time above budget"], rows, cls="data") + notes)


def _events(data: RunData) -> dict[str, dict[str, float]]:
    """Per model: lifecycle instants (s since load start) from the manifest's ``model_events`` when a scenario
    recorded them (``[{model, event: load|warmup|ready, t_epoch_ns}]``), then first request and reply from the
    windows and traces."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for e in data.manifest.get("model_events") or []:
        if isinstance(e, dict) and {"model", "event", "t_epoch_ns"} <= set(e):
            out[str(e["model"])][str(e["event"])] = (int(e["t_epoch_ns"]) - data.t0_ns) / NS
    for row in data.traces:
        model = str(row["stream"]).split("/", 1)[0]
        ev = out[model]
        sent, done = (int(row["sent_ns"]) - data.t0_ns) / NS, (int(row["done_ns"]) - data.t0_ns) / NS
        ev["first request"] = min(ev.get("first request", math.inf), sent)
        ev["first reply"] = min(ev.get("first reply", math.inf), done)
    for w in data.windows:
        ev = out[str(w["model"])]
        t = (int(w["window_start_ns"]) - data.t0_ns) / NS
        if int(w["sent"]) and "first request" not in ev:
            ev["first request (window)"] = min(ev.get("first request (window)", math.inf), t)
    return out


COLORS = {"load": "#7f7f7f", "warmup": "#ff7f0e", "ready": "#2ca02c", "first request": "#1f77b4",
          "first request (window)": "#1f77b4", "first reply": "#9467bd", "cold execution": "#d62728"}


def warmup_section(data: RunData) -> Section:
    """Per model: load → warmup → ready → first request → first reply, with cold executions as red bars."""
    title = "Warmup timeline"
    events = _events(data)
    cold: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in data.inputs.traces:
        if t.cold is not None:
            for a, b, c in zip(t.start_ns.tolist(), t.end_ns.tolist(), t.cold.tolist(), strict=True):
                if c:
                    cold[t.model].append(((a - data.t0_ns) / NS, (b - data.t0_ns) / NS))
    models = sorted(m for m in events if events[m] or cold.get(m))
    if not models:
        return Section("warmup", title, no_data("no model lifecycle events, traces or windows"), False)
    rows, table_rows = [], []
    for m in models:
        spans = [svg.Span(t, t, name, COLORS.get(name, "#333")) for name, t in sorted(events[m].items(),
                                                                                     key=lambda kv: kv[1])]
        spans += [svg.Span(a, b, "cold execution", COLORS["cold execution"]) for a, b in cold.get(m, [])]
        rows.append((m, spans))
        ev = events[m]
        table_rows.append([m] + [f"{ev[k]:.3f} s" if k in ev else "-" for k in ("load", "warmup", "ready",
                                                                                 "first request", "first reply")]
                          + [len(cold.get(m, []))])
    has_lifecycle = any({"load", "ready"} & set(events[m]) for m in models)
    note = "" if has_lifecycle else ('<p class="nodata">No load/warmup/ready events in this run (the warmup '
                                     "scenario records them in the manifest's <code>model_events</code>): the "
                                     "timeline shows first request and reply, and cold executions from traces.</p>")
    notes = verdict_notes(data, ("warmup", "warmup_executed", "readiness", "reload", "reload_limit"))
    chart = svg.timeline(rows, x=svg.Axis("seconds since load start", unit="s"), title="model warmup timeline")
    return Section("warmup", title, note + f"<figure>{chart}</figure>" + table(
        ["model", "load", "warmup", "ready", "first request", "first reply", "cold executions"], table_rows,
        cls="data") + notes)
