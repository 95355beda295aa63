"""Verdicts of a scenario run: the checkers as a library, and the table that sets each verdict against what the
scenario expects (planted defects FAIL on purpose, everything else should pass)."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmt.check.api import evaluate
from rmt.check.base import FAIL, PASS, SKIP, UNDECIDED, WARN, Verdict
from rmt.check.completeness import INCOMPLETE as INCOMPLETE_KEY
from rmt.check.completeness import NAME as COMPLETENESS
from rmt.check.completeness import describe
from rmt.check.report import format_table
from rmt.check.spec import merge_specs, parse_spec
from rmt.core.fmt import format_bytes
from rmt.run.definition import ScenarioDef

_SERIES = re.compile(r"^(?P<measure>[\w:]+)\{[^}]*\binstance=(?P<instance>[^,}]+)[^}]*\}(?P<rest>.*)$")
CAUGHT, HEALTHY, SKIPPED, UNEXPECTED = "defect caught", "healthy", "not judged", "UNEXPECTED"
INCOMPLETE = "INCOMPLETE"
"""The outcome of a failing completeness verdict: the run lost data (never a match, whatever was expected)."""


def judge_run(run_dir: Path, checks: Mapping[str, Any] | None = None, extra: Sequence[str] = ()
              ) -> tuple[list[Verdict], list[str]]:
    """Evaluate the checks of a run directory through :func:`rmt.check.api.evaluate` (``extra`` command-line specs >
    the run's scenario checks > ``checks``), write ``verdicts.json`` and ``junit.xml``; (verdicts, notes)."""
    spec = merge_specs(*(parse_spec(text) for text in extra)) if extra else None
    with warnings.catch_warnings():  # scipy's degenerate-sample warnings: the verdicts already say "too few"
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate(run_dir, spec, file_spec=checks)
    result.write()
    return result.verdicts, result.notes


@dataclass(frozen=True)
class Row:
    """One verdict of a run set against its expectation."""

    scenario: str
    verdict: Verdict
    expected: str
    why: str

    @property
    def outcome(self) -> str:
        """``defect caught``, ``healthy``, ``not judged`` or ``UNEXPECTED``. An expectation may name alternatives
        (``fail|undecided``: a defect on a series sampled too rarely to decide in a short run)."""
        status = self.verdict.status
        if self.verdict.check == COMPLETENESS and status == FAIL:
            return INCOMPLETE
        allowed = self.expected.split("|")
        if status == UNDECIDED and UNDECIDED in allowed:
            return SKIPPED
        if status in (SKIP, UNDECIDED):
            return UNEXPECTED if FAIL in allowed else SKIPPED
        if FAIL in allowed and status == FAIL:
            return CAUGHT
        if status == WARN:
            status = PASS
        if status not in allowed:
            return UNEXPECTED
        return CAUGHT if status == FAIL else HEALTHY

    @property
    def matches(self) -> bool:
        """Whether the verdict is what the scenario expects."""
        return self.outcome not in (UNEXPECTED, INCOMPLETE)

    @property
    def note(self) -> str:
        """What the outcome column adds: the planted defect's why, what the run lost, or that the data was partial."""
        if self.outcome == INCOMPLETE:
            return ": " + describe(self.verdict.evidence.get("loss") or {})
        if self.why and self.outcome == CAUGHT:
            return f": {self.why}"
        return " (on incomplete data)" if INCOMPLETE_KEY in self.verdict.evidence else ""


def rows_for(definition: ScenarioDef, verdicts: Sequence[Verdict]) -> list[Row]:
    """Each verdict with the scenario's expectation (pass unless a planted defect is expected to fail)."""
    out = []
    for v in verdicts:
        exp = definition.expectation(v.check, v.subject)
        out.append(Row(definition.name, v, exp.status if exp else PASS, exp.why if exp else ""))
    return out


def _short(subject: str, width: int = 58) -> str:
    """A series subject ``m{instance=i,model=...} / pattern`` as ``m[i] / pattern``; others cut to ``width``."""
    match = _SERIES.match(subject)
    if match:
        subject = f"{match['measure']}[{match['instance']}]{match['rest']}"
    return subject if len(subject) <= width else subject[: width - 1] + "…"


def _value(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "bytes":
        return format_bytes(value)
    return f"{value:.3g}"


def _per(measure: str) -> str:
    return "/10k req" if "per_10k" in measure else ""


def format_rows(rows: Sequence[Row]) -> str:
    """The verdict table a newcomer reads: what was judged, what was expected, and whether it matched."""
    from rmt.check.report import _unit  # the unit of a measure, from the one measures table

    header = ("SCENARIO", "CHECK", "SUBJECT", "STATUS", "EXPECTED", "MEASURED", "THRESHOLD", "OUTCOME")
    table = [header] + [
        (r.scenario, r.verdict.check, _short(r.verdict.subject), r.verdict.status.upper(), r.expected.upper(),
         _value(r.verdict.measured, _unit(r.verdict.measure)) + _per(r.verdict.measure),
         f"{r.verdict.comparison} {_value(r.verdict.threshold, _unit(r.verdict.measure))}{_per(r.verdict.measure)}"
         if r.verdict.threshold is not None else "-",
         r.outcome + r.note)
        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)), line[-1]]).rstrip()
             for line in table]
    caught = sum(r.outcome == CAUGHT for r in rows)
    healthy = sum(r.outcome == HEALTHY for r in rows)
    skipped = sum(r.outcome == SKIPPED for r in rows)
    lost = sum(r.outcome == INCOMPLETE for r in rows)
    bad = sum(not r.matches for r in rows) - lost
    lines.append(f"{healthy} healthy passes, {caught} planted defects caught on purpose, {skipped} not judged, "
                 f"{bad} unexpected" + (f", {lost} loss(es): the run is INCOMPLETE" if lost else ""))
    return "\n".join(lines)


__all__ = ["CAUGHT", "HEALTHY", "INCOMPLETE", "SKIPPED", "UNEXPECTED", "Row", "format_rows", "format_table",
           "judge_run", "rows_for"]
