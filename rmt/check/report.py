"""Verdict outputs: the console table, ``verdicts.json`` and ``junit.xml`` (one testcase per check and subject)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rmt.check.base import FAIL, PASS, SKIP, STATUSES, UNDECIDED, WARN, Verdict
from rmt.check.spec import CHECK_MEASURES
from rmt.core.errors import ConfigError
from rmt.core.jsonfile import write_text_atomic
from rmt.core.measures import MEASURES

VERDICTS_JSON = "verdicts.json"
JUNIT_XML = "junit.xml"


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None else str(value)
    if unit == "bytes":
        return f"{value:,.0f} B"
    if unit == "s":
        return f"{value:g} s"
    return f"{value:.4g}"


def _unit(measure: str) -> str:
    m = CHECK_MEASURES.get(measure) or MEASURES.get(measure)
    return m.unit if m else ""


def counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many verdicts have each status (passed, failed, skipped, warned, undecided)."""
    return {s: sum(v.status == s for v in verdicts) for s in STATUSES}


def format_table(verdicts: Sequence[Verdict], width: int = 80) -> str:
    """One row per verdict: check, subject, status, measured, threshold, explanation (cut to ``width``)."""
    header = ("CHECK", "SUBJECT", "STATUS", "MEASURED", "THRESHOLD", "EXPLANATION")
    rows = [header] + [
        (v.check, v.subject, v.status.upper(), _fmt(v.measured, _unit(v.measure)),
         f"{v.comparison} {_fmt(v.threshold, _unit(v.measure))}" if v.threshold is not None else "-",
         v.explanation if len(v.explanation) <= width else v.explanation[: width - 1] + "…")
        for v in verdicts
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip() for r in rows]
    c = counts(verdicts)
    more = (f", {c[WARN]} warnings" if c[WARN] else "") + (f", {c[UNDECIDED]} undecided" if c[UNDECIDED] else "")
    lines.append(f"{c[PASS]} passed, {c[FAIL]} failed, {c[SKIP]} skipped{more}")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def verdicts_document(verdicts: Sequence[Verdict], *, run_dir: str = "", spec: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """The ``verdicts.json`` document: overall result, counts, effective spec, every verdict with its unit."""
    return _jsonable({
        "passed": not any(v.failed for v in verdicts),
        "counts": counts(verdicts),
        "run_dir": run_dir,
        "spec": spec or {},
        "verdicts": [{**asdict(v), "unit": _unit(v.measure)} for v in verdicts],
    })


def junit_tree(verdicts: Sequence[Verdict], suite: str = "rmt.check") -> ET.ElementTree:
    """JUnit XML: one ``testcase`` per verdict (classname ``rmt.<check>``, name the subject)."""
    c = counts(verdicts)
    root = ET.Element("testsuites", name=suite, tests=str(len(verdicts)), failures=str(c[FAIL]),
                      skipped=str(c[SKIP] + c[UNDECIDED]), errors="0")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(verdicts)), failures=str(c[FAIL]),
                       skipped=str(c[SKIP] + c[UNDECIDED]), errors="0")
    for v in verdicts:
        case = ET.SubElement(ts, "testcase", classname=f"rmt.{v.check}", name=v.subject, time="0")
        measured = _fmt(v.measured, _unit(v.measure))
        threshold = _fmt(v.threshold, _unit(v.measure))
        if v.status == FAIL:
            node = ET.SubElement(case, "failure", type=v.measure,
                                 message=f"{v.measure} = {measured}, threshold {v.comparison} {threshold}: "
                                         f"{v.explanation}")
            node.text = json.dumps(_jsonable(v.evidence), indent=1)
        elif v.status == SKIP:
            ET.SubElement(case, "skipped", message=v.explanation)
        elif v.status == UNDECIDED:
            ET.SubElement(case, "skipped", type="undecided", message=f"undecided: {v.explanation}")
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{v.measure} = {measured} ({v.comparison} {threshold}): {v.explanation}"
            if v.status == WARN:
                ET.SubElement(case, "system-err").text = f"WARNING: {v.explanation}"
    ET.indent(root)
    return ET.ElementTree(root)


def write_outputs(verdicts: Sequence[Verdict], out_dir: Path, *, run_dir: str = "",
                  spec: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``verdicts.json`` and ``junit.xml`` into ``out_dir``; returns their paths."""
    jpath, xpath = out_dir / VERDICTS_JSON, out_dir / JUNIT_XML
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        root = junit_tree(verdicts).getroot()
        assert root is not None
        junit = ET.tostring(root, encoding="unicode", xml_declaration=True)
        write_text_atomic(jpath, json.dumps(verdicts_document(verdicts, run_dir=run_dir, spec=spec), indent=2) + "\n")
        write_text_atomic(xpath, junit + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the verdicts into {out_dir} ({exc.strerror or exc}): free space there or "
                          "choose another --out") from exc
    return jpath, xpath
