"""The report page: header, verdicts with explanations, every section, inline CSS — one offline HTML file."""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from rmt.check.report import VERDICTS_JSON
from rmt.core.errors import ConfigError
from rmt.core.jsonfile import write_text_atomic
from rmt.core.rundir import RunDir, reading
from rmt.report.capacity import capacity_section
from rmt.report.common import Raw, RunData, Section, no_data, table
from rmt.report.load import concurrency_section, latency_section, throughput_section, warmup_section
from rmt.report.memory import memory_section, phase_section
from rmt.report.streams import streaming_section
from rmt.report.svg import fmt_tick

REPORT_HTML = "report.html"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2733;background:#fafbfc}
header{background:#13263a;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header .meta{opacity:.85;font-size:13px}nav{padding:6px 28px;background:#e9eef4;font-size:13px}
nav a{margin-right:14px;color:#13263a}main{padding:8px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;margin:16px 0;padding:4px 18px 14px}
h2{font-size:18px;margin:12px 0 6px}figure{display:inline-block;margin:8px 14px 8px 0;vertical-align:top}
figcaption{font-size:12px;color:#555;max-width:720px}svg.chart{background:#fff;font-size:11px}
svg .tick{fill:#444}svg .axis{fill:#222;font-size:12px}svg .legend{fill:#222}svg .band{fill:#889;font-size:10px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}th,td{border:1px solid #dde3ea;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f1f4f8}td{max-width:720px;overflow-wrap:anywhere}
.st{white-space:nowrap;font-weight:700;padding:1px 6px;border-radius:3px}.st.pass{background:#dff3e4;color:#17612e}
.st.fail{background:#fbe0e0;color:#9b1c1c}.st.skip{background:#eee;color:#555}.nodata{color:#8a6d3b;
background:#fcf8e3;padding:6px 10px;border-radius:4px}.explain{margin:4px 0;font-size:13px}
.summary span{margin-right:16px;font-weight:600}
"""


def verdicts_section(data: RunData) -> Section:
    """Every verdict of ``rmt check``: status, check, subject, measured vs threshold, one-sentence explanation."""
    title = "Verdicts"
    doc = data.verdicts
    if doc is None:
        return Section("verdicts", title, no_data(f"no {VERDICTS_JSON} in the run directory",
                                                  "Run rmt check RUN_DIR, then rmt report RUN_DIR."), False)
    verdicts = doc.get("verdicts") or []
    if not verdicts:
        return Section("verdicts", title, no_data("rmt check produced no verdicts"), False)
    order = {"fail": 0, "pass": 1, "skip": 2}
    rows = []
    for v in sorted(verdicts, key=lambda v: (order.get(str(v.get("status")), 3), str(v.get("check")))):
        unit = str(v.get("unit") or "")
        measured = fmt_tick(v["measured"], unit) if isinstance(v.get("measured"), int | float) else "-"
        threshold = (f"{v.get('comparison', '')} {fmt_tick(v['threshold'], unit)}"
                     if isinstance(v.get("threshold"), int | float) else "-")
        status = str(v.get("status", ""))
        rows.append([Raw(f'<span class="st {escape(status)}">{escape(status.upper())}</span>'), v.get("check", ""),
                     v.get("subject", ""), measured, threshold, v.get("explanation", "")])
    counts = doc.get("counts") or {}
    summary = (f'<p class="summary"><span>{counts.get("pass", 0)} passed</span><span>{counts.get("fail", 0)} '
               f'failed</span><span>{counts.get("skip", 0)} skipped</span>'
               f'<span>overall: {"PASS" if doc.get("passed") else "FAIL"}</span></p>')
    header = ["status", "check", "subject", "measured", "threshold", "explanation"]
    judged = [r for r in rows if "skip" not in r[0]]
    skipped = [r for r in rows if "skip" in r[0]]
    body = summary + (table(header, judged, cls="data verdicts") if judged else no_data("every check was skipped"))
    if skipped:
        body += (f"<details><summary>{len(skipped)} skipped (nothing to judge)</summary>"
                 f"{table(header, skipped, cls='data verdicts')}</details>")
    return Section("verdicts", title, body)


#: The report's sections, in page order (add a section here).
SECTIONS: tuple[Callable[[RunData], Section], ...] = (
    verdicts_section, memory_section, phase_section, throughput_section, latency_section, streaming_section,
    concurrency_section, warmup_section, capacity_section,
)


def _header(data: RunData) -> str:
    m = data.manifest
    scenario = m.get("scenario_name") or (m.get("scenario") or {}).get("name") if isinstance(m.get("scenario"),
                                                                                             dict) else None
    start, end = m.get("load_start_ns"), m.get("load_end_ns")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start / 1e9)) if isinstance(start, int) else "-"
    length = f", {(end - start) / 1e9:.0f} s of load" if isinstance(start, int) and isinstance(end, int) else ""
    totals: dict[str, Any] = m.get("load_totals") or {}
    sent = f", {totals.get('sent', 0)} requests sent, {totals.get('succeeded', 0)} succeeded" if totals else ""
    return (f"<header><h1>rmt report{' — ' + escape(str(scenario)) if scenario else ''}</h1>"
            f'<div class="meta">{escape(str(data.run.path))} · started {escape(when)}{escape(length)}'
            f"{escape(sent)}</div></header>")


def render(data: RunData) -> str:
    """The whole page as one string (inline CSS and SVG, no script, no external reference)."""
    sections = [build(data) for build in SECTIONS]
    nav = "".join(f'<a href="#{s.key}">{escape(s.title)}{"" if s.has_data else " (no data)"}</a>' for s in sections)
    body = "".join(f'<section id="{s.key}" class="{"" if s.has_data else "empty"}"><h2>{escape(s.title)}</h2>'
                   f"{s.body}</section>" for s in sections)
    notes = data.inputs.notes + data.notes
    note_html = (f'<section id="notes"><h2>Notes on the inputs</h2>{table(["note"], [[n] for n in notes])}'
                 "</section>") if notes else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rmt report</title>"
            f"<style>{CSS}</style></head><body>{_header(data)}<nav>{nav}</nav><main>{body}{note_html}</main>"
            "</body></html>\n")


def write_report(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Build ``report.html`` for a run directory (or ``out``); returns its path. ConfigError on a bad run dir."""
    run = RunDir(run_dir, create=False)
    if not (run.path / VERDICTS_JSON).is_file():
        run.require_run()
    with reading(run.path):
        html = render(RunData(run))
    path = Path(out) if out is not None else run.path / REPORT_HTML
    try:
        write_text_atomic(path, html)
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror}): choose another --out") from exc
    return path
