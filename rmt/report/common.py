"""What every report section shares: the run it reads (loaded once), the section type, small HTML helpers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from html import escape
from typing import Any

from rmt.check.data import RunInputs
from rmt.check.inputs import TRACES_FILE, WINDOWS_FILE, load_inputs
from rmt.check.report import VERDICTS_JSON
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, Series, load_series

NS = 1e9


@dataclass
class Section:
    """One section of the report: an anchor id, a title, its HTML body, and whether it had data."""

    key: str
    title: str
    body: str
    has_data: bool = True


@dataclass
class RunData:
    """One run directory, read once through the project's adapters (:mod:`rmt.check.inputs`, ``load_series``)."""

    run: RunDir
    notes: list[str] = field(default_factory=list)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """``manifest.json`` (empty when missing)."""
        return self.run.manifest()

    @cached_property
    def inputs(self) -> RunInputs:
        """The checkers' view of the run (memory series vs completed requests, windows, traces, budgets)."""
        return load_inputs(self.run)

    @cached_property
    def series(self) -> dict[tuple[str, int], Series]:
        """Every collector series (empty without ``samples.jsonl``)."""
        return load_series(self.run) if (self.run.path / SAMPLES_FILE).exists() else {}

    @cached_property
    def windows(self) -> list[dict[str, Any]]:
        """Raw ``windows.jsonl`` records (µs histograms, phases, patterns, failures by reason)."""
        return list(self.run.read(WINDOWS_FILE))

    @cached_property
    def traces(self) -> list[dict[str, Any]]:
        """Raw ``traces.jsonl`` rows."""
        return list(self.run.read(TRACES_FILE))

    @cached_property
    def verdicts(self) -> dict[str, Any] | None:
        """``verdicts.json`` as written by ``rmt check`` (None when the run was not checked)."""
        path = self.run.path / VERDICTS_JSON
        if not path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            self.notes.append(f"{VERDICTS_JSON} unreadable ({exc.msg}): rerun rmt check")
            return None
        return data

    @cached_property
    def t0_ns(self) -> int:
        """The run's time origin (epoch ns): load start, else the collector's start, else the first window."""
        m = self.manifest
        for value in (m.get("load_start_ns"), (m.get("collector") or {}).get("start_epoch_ns")):
            if isinstance(value, int | float) and value > 0:
                return int(value)
        if self.windows:
            return min(int(w["window_start_ns"]) for w in self.windows)
        starts = [int(s.t_epoch_ns[0]) for s in self.series.values() if len(s.t_epoch_ns)]
        return min(starts) if starts else 0

    @cached_property
    def phases(self) -> list[tuple[str, float, float]]:
        """``(phase, start_s, end_s)`` relative to :attr:`t0_ns`, from the windows, in order of start."""
        spans: dict[str, list[float]] = {}
        for w in self.windows:
            t = (int(w["window_start_ns"]) - self.t0_ns) / NS
            s = spans.setdefault(str(w["phase"]), [t, t + float(w.get("window_s") or 1.0)])
            s[0], s[1] = min(s[0], t), max(s[1], t + float(w.get("window_s") or 1.0))
        return sorted(((p, a, b) for p, (a, b) in spans.items()), key=lambda x: x[1])


def verdict_notes(data: RunData, checks: tuple[str, ...]) -> str:
    """One paragraph per verdict of ``checks`` (pass and fail; skips left out): its status and explanation."""
    return "".join(f'<p class="explain"><b>{escape(str(v.get("check")))}</b> '
                   f'<span class="st {escape(str(v.get("status")))}">{escape(str(v.get("status")).upper())}</span> '
                   f'{escape(str(v.get("subject")))}: {escape(str(v.get("explanation")))}</p>'
                   for v in (data.verdicts or {}).get("verdicts", [])
                   if v.get("check") in checks and v.get("status") != "skip")


def no_data(what: str, how: str = "") -> str:
    """The paragraph a section shows when the run holds nothing for it."""
    return f'<p class="nodata">No data: {escape(what)}.{" " + escape(how) if how else ""}</p>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, cls: str = "") -> str:
    """An HTML table; cells are escaped unless they are :class:`Raw`."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Raw(str):
    """A table cell that is already HTML."""
