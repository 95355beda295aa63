"""The report page: header, verdicts with explanations, every section, inline CSS — one offline HTML file, assembled
by the autoescaped template ``rmt/report/templates/page.html.j2`` (the sections render their own charts and tables)."""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import jinja2

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


_PAGES = jinja2.Environment(loader=jinja2.PackageLoader("rmt.report", "templates"), autoescape=True,
                            undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
PAGE_TEMPLATE = "page.html.j2"
"""The page's template (package data: ``rmt/report/templates``)."""


def header_fields(manifest: dict[str, Any]) -> dict[str, str]:
    """The header's text from the run's manifest: scenario name, start time, length of the load, requests."""
    scenario = manifest.get("scenario")
    name = manifest.get("scenario_name") or (scenario.get("name") if isinstance(scenario, dict) else None)
    start, end = manifest.get("load_start_ns"), manifest.get("load_end_ns")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start / 1e9)) if isinstance(start, int) else "-"
    length = f", {(end - start) / 1e9:.0f} s of load" if isinstance(start, int) and isinstance(end, int) else ""
    totals: dict[str, Any] = manifest.get("load_totals") or {}
    sent = f", {totals.get('sent', 0)} requests sent, {totals.get('succeeded', 0)} succeeded" if totals else ""
    return {"scenario": str(name) if name else "", "started": when, "length": length, "sent": sent}


def render(data: RunData) -> str:
    """The whole page as one string (inline CSS and SVG, no script, no external reference)."""
    return _PAGES.get_template(PAGE_TEMPLATE).render(
        sections=[build(data) for build in SECTIONS], notes=data.inputs.notes + data.notes,
        run_path=str(data.run.path), **header_fields(data.manifest))


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
