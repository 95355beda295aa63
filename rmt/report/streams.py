"""Report section on streaming (decoupled) traffic: time-to-first-response CDFs by priority, responses per second,
lifecycle outcome shares and the gaps between responses (µs HDR histograms merged over every worker)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rmt.core.fmt import format_us
from rmt.core.windows import histogram_of
from rmt.report import svg
from rmt.report.common import NS, RunData, Section, no_data, table, verdict_notes
from rmt.report.load import cdf_line

#: Lifecycle outcome → the window counters it sums.
OUTCOMES = (("completed", ("succeeded",)), ("cancelled", ("cancelled",)), ("timed out", ("failed_timeout",)),
            ("error", ("failed_rejected", "failed_server", "failed_client")))


def is_streaming(window: dict[str, Any]) -> bool:
    """Whether a ``windows.jsonl`` record counts streaming requests."""
    return bool(window.get("responses") or window.get("cancelled") or window.get("finals"))


def streaming_section(data: RunData) -> Section:
    """TTFR CDF per model by priority, responses/s per model, outcome shares and response gaps per stream."""
    title = "Streaming"
    windows = [w for w in data.windows if is_streaming(w)]
    if not windows:
        return Section("streaming", title, no_data("no streaming requests",
                                                   "Give a pattern a \"stream\" section and aim it at a decoupled "
                                                   "model."), False)
    by_model: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    per_s: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
    by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for w in windows:
        by_model[str(w["model"])][int(w["priority"])].append(w)
        per_s[str(w["model"])][(int(w["window_start_ns"]) - data.t0_ns) / NS] += int(w.get("responses") or 0)
        by_stream[str(w["stream"])].append(w)
    figures = []
    for model in sorted(by_model):
        lines = [cdf_line(f"priority {p}" if p else "default priority", histogram_of(ws))
                 for p, ws in sorted(by_model[model].items())]
        chart = svg.line_chart(svg.Chart(lines, svg.Axis("time to first response", log=True, unit="us"),
                                         svg.Axis("percentile", lo=0, hi=100, unit="%"),
                                         title=f"{model} time to first response"))
        figures.append(f'<figure class="cdf">{chart}<figcaption>{model}: share of streaming requests whose first '
                       "response came within a time (from the intended send)</figcaption></figure>")
    models = sorted(per_s)
    rate = svg.line_chart(svg.Chart(
        [svg.Line(m, sorted(per_s[m]), [per_s[m][t] for t in sorted(per_s[m])], step=True) for m in models],
        svg.Axis("seconds since load start", unit="s"), svg.Axis("responses / s"), title="responses per second"))
    figures.append(f"<figure>{rate}</figure>")
    rows = []
    for name in sorted(by_stream):
        ws = by_stream[name]
        counts = [sum(int(w.get(f) or 0) for w in ws for f in fields) for _, fields in OUTCOMES]
        ended = max(1, sum(counts))
        first, gaps = histogram_of(ws), histogram_of(ws, "gap_us_hdr")
        rows.append([name, sum(int(w["sent"]) for w in ws), sum(int(w.get("responses") or 0) for w in ws),
                     *(f"{100 * c / ended:.1f}%" for c in counts),
                     format_us(first.get_value_at_percentile(99)) if first.get_total_count() else "-",
                     format_us(gaps.get_value_at_percentile(50)) if gaps.get_total_count() else "-",
                     format_us(gaps.get_value_at_percentile(99)) if gaps.get_total_count() else "-"])
    notes = verdict_notes(data, ("first_response", "stream_completeness", "leak_attribution"))
    return Section("streaming", title, "".join(figures) + table(
        ["stream", "sent", "responses", *(name for name, _ in OUTCOMES), "first response p99", "gap p50",
         "gap p99"], rows, cls="data") + notes)
