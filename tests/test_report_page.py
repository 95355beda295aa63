"""The page assembly of ``report.html`` (the autoescaped template): the header names the scenario from the manifest,
every value is escaped as text while the sections' own HTML stays HTML, and every section has its anchor."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rmt.core.rundir import RunDir
from rmt.report import SECTIONS, write_report


def _page(tmp_path: Path, **manifest: Any) -> str:
    run = RunDir(tmp_path / "run")
    run.update_manifest(**manifest)
    run.close()
    return write_report(run.path).read_text(encoding="utf-8")


@pytest.mark.parametrize(("manifest", "title"), [
    ({"scenario_name": "memory_growth"}, "memory_growth"),  # no "scenario" mapping beside it
    ({"scenario_name": "mine", "scenario": "a path"}, "mine"),
    ({"scenario": {"name": "from_the_mapping"}}, "from_the_mapping"),
])
def test_header_names_the_scenario(tmp_path: Path, manifest: dict[str, Any], title: str) -> None:
    assert f"<h1>rmt report — {title}</h1>" in _page(tmp_path, **manifest)


def test_values_are_text_and_sections_are_html(tmp_path: Path) -> None:
    html = _page(tmp_path, scenario_name="<script>alert(1)</script> & co", load_start_ns=1_700_000_000_000_000_000,
                 load_end_ns=1_700_000_012_000_000_000, load_totals={"sent": 12, "succeeded": 11})
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>\n")
    assert "<script" not in html
    assert "<h1>rmt report — &lt;script&gt;alert(1)&lt;/script&gt; &amp; co</h1>" in html
    assert ", 12 s of load, 12 requests sent, 11 succeeded</div>" in html
    anchors = re.findall(r'<a href="#([a-z_]+)">', html)
    assert len(anchors) == len(SECTIONS) == len(set(anchors))
    assert re.findall(r'<section id="([a-z_]+)"', html) == [*anchors, "notes"]  # the notes list no-data inputs
    assert '<p class="nodata">No data: ' in html  # a section's own markup, not escaped
