"""Report section of a capacity sweep: throughput vs p99 (with the knee and the SLO), memory vs load, the per-step
table and the capacity sentence per scope (the same figures as ``rmt capacity`` and the ``slo`` check)."""

from __future__ import annotations

import math
from html import escape

from rmt.check.capacity_analysis import analyse, by_scope
from rmt.check.capacity_checks import cpu_count_of, summary
from rmt.check.capacity_steps import STEPS_CSV, step_figures
from rmt.core.fmt import format_bytes, format_us
from rmt.report.common import RunData, Section, no_data, table
from rmt.report.svg import Axis, Chart, Line, line_chart


def capacity_section(data: RunData) -> Section:
    """Curves and per-step table of the sweep's steps (``step-NN@Rrps`` phases)."""
    title = "Capacity"
    figures = step_figures(data.run.path)
    if not figures:
        return Section("capacity", title, no_data("no capacity steps (step-NN@Rrps phases) in this run",
                                                  "Run rmt capacity (or rmt run capacity)."), False)
    slo_ms = float(((data.manifest.get("capacity") or {}).get("config") or {}).get("slo_p99_ms") or 0)
    scopes = by_scope(figures)
    steps = scopes["all"]
    cap = analyse(steps, slo_p99_ms=slo_ms, cpu_count=cpu_count_of(data.manifest))
    lines = [Line(scope, [s.achieved_per_s for s in rows], [s.latency_p99_us / 1000 for s in rows], points=True)
             for scope, rows in scopes.items()]
    if slo_ms > 0:
        xs = [s.achieved_per_s for s in steps if not math.isnan(s.achieved_per_s)]
        lines.append(Line(f"SLO p99 {slo_ms:g} ms", [min(xs), max(xs)], [slo_ms, slo_ms], dash="4 3"))
    if cap.knee_phase:
        lines.append(Line(f"knee {cap.knee_phase}", [cap.knee_per_s], [cap.knee_p99_us / 1000], points=True))
    curve = line_chart(Chart(lines, Axis("achieved requests/s", lo=0), Axis("p99 latency (ms)", lo=0),
                             title="Throughput vs p99 latency"))
    keys = sorted({k for s in steps for k in s.memory_bytes})
    memory = line_chart(Chart([Line(k, [s.in_flight_mean for s in steps], [s.memory_bytes.get(k, math.nan) / 2**20
                                                                              for s in steps], points=True)
                               for k in keys], Axis("mean requests in flight"), Axis("MiB"),
                              title="Memory vs load")) if keys else ""
    rows = [[s.phase, f"{s.offered_per_s:g}", f"{s.achieved_per_s:.1f}", format_us(s.latency_p50_us),
             format_us(s.latency_p99_us), format_us(s.queue_us), "-" if math.isnan(s.pending_mean) else
             f"{s.pending_mean:.1f}", f"{s.in_flight_mean:.1f}", s.failed,
             format_bytes(s.memory_bytes.get("process_tree_rss_bytes")), s.reason] for s in steps]
    header = ["step", "offered/s", "achieved/s", "p50", "p99", "queue", "pending", "in flight", "failed",
              "tree RSS", "ended"]
    cpus = cpu_count_of(data.manifest)
    sentences = "".join(f'<p class="explain">{escape(summary(analyse(rows_, slo_p99_ms=slo_ms, cpu_count=cpus)))}</p>'
                        for rows_ in scopes.values())
    body = (f"{sentences}<figure>{curve}<figcaption>p99 latency against achieved throughput per step; past the knee "
            f"latency grows faster than throughput.</figcaption></figure>"
            + (f"<figure>{memory}<figcaption>Memory per series against mean requests in flight (Little's law); the "
               "slope is the bytes each in-flight request holds.</figcaption></figure>" if memory else "")
            + table(header, rows, cls="data") + f"<p>Every scope and memory series: <code>{STEPS_CSV}</code> "
            "(written by rmt capacity).</p>")
    return Section("capacity", title, body)
