"""``report.html`` and ``rmt report``: built from a real short run (real tritonserver, a real headless Locust
process with rmt.load + the collector plugin), then checked as HTML: every section with non-empty SVG data for the
leak series and the latency CDFs, no external reference (opens offline), and one-line errors."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmt.report import REPORT_HTML, svg, write_report
from rmt.server import EmbeddedServer
from tests.test_webui import LOCUSTFILE, ROOT, SCENARIO

LOCUST = str(Path(sys.executable).parent / "locust")


@pytest.fixture(scope="module")
def checked_run(triton_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of an 8-second headless run with two phases, checked by ``rmt check``."""
    root = tmp_path_factory.mktemp("report")
    run_dir = root / "run"
    scenario = json.loads(json.dumps(SCENARIO))
    scenario["traffic"]["phases"] = [{"name": "warm", "duration_s": 3, "rate_per_s": 60},
                                     {"name": "steady", "duration_s": 60}]
    (root / "scenario.json").write_text(json.dumps(scenario))
    proc = subprocess.run(
        [LOCUST, "-f", str(LOCUSTFILE), "--headless", "-u", "8", "-r", "100", "-t", "8s", "--host",
         triton_server.http_url, "--rmt-scenario", str(root / "scenario.json"), "--rmt-run-dir", str(run_dir),
         "--rmt-collect-dir", str(run_dir), "--rmt-collect-server-url", triton_server.http_url,
         "--rmt-collect-interval", "0.2", "--only-summary", "--stop-timeout", "5", "HttpTraffic"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "rmt", "check", str(run_dir)], capture_output=True, text=True,
                           timeout=120)
    assert check.returncode in (0, 3), check.stderr[-2000:]
    return run_dir


def _section(html: str, key: str) -> str:
    match = re.search(rf'<section id="{key}"[^>]*>(.*?)</section>', html, re.S)
    assert match, f"no section {key}"
    return match.group(1)


def _paths(fragment: str) -> list[str]:
    """The ``d`` of every drawn series, with at least two points."""
    return [d for d in re.findall(r'<path class="series"[^>]* d="([^"]*)"', fragment) if d.count("L") >= 1]


def test_report_has_every_section_with_data(checked_run: Path) -> None:
    path = write_report(checked_run)
    assert path == checked_run / REPORT_HTML
    html = path.read_text()
    verdicts = _section(html, "verdicts")
    assert 'class="st fail"' in verdicts and "leak_host_0_0" in verdicts
    memory = _section(html, "memory")
    leak_chart = re.search(r'<figure class="mem"><svg[^>]*aria-label="([^"]*leak_host_0_0[^"]*)".*?</svg>', memory,
                           re.S)
    assert leak_chart, "no chart of leak_host's stub memory"
    labels = re.findall(r'data-label="([^"]*)"', leak_chart.group(0))
    assert labels[0] == "samples" and any(x.startswith("fitted trend") for x in labels) and any(
        x.startswith("threshold") for x in labels)
    assert all(len(d.split("L")) >= 2 for d in _paths(leak_chart.group(0)))
    assert len(_paths(leak_chart.group(0))[0].split("L")) >= 8  # the samples line has real data
    latency = _section(html, "latency")
    cdf = re.search(r'<svg[^>]*aria-label="queue_priority latency CDF".*?</svg>', latency, re.S)
    assert cdf and set(re.findall(r'data-label="([^"]*)"', cdf.group(0))) == {"priority 1", "priority 2"}
    assert all(len(d.split("L")) > 20 for d in _paths(cdf.group(0)))
    phases = _section(html, "phases")
    assert "warm (" in phases and "steady (" in phases and _paths(phases)
    throughput = _section(html, "throughput")
    assert len(re.findall(r'<rect class="bar"', throughput)) >= 8
    assert _paths(_section(html, "concurrency"))  # probe traces
    assert "probe" in _section(html, "warmup")


def test_report_opens_offline(checked_run: Path) -> None:
    html = write_report(checked_run).read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)
    assert refs and all(r.startswith("#") for r in refs), [r for r in refs if not r.startswith("#")]
    assert "xmlns" not in html


def test_sections_without_data_say_so(checked_run: Path, tmp_path: Path) -> None:
    partial = tmp_path / "only-windows"
    partial.mkdir()
    shutil.copy(checked_run / "windows.jsonl", partial / "windows.jsonl")
    html = write_report(partial).read_text()
    for key in ("verdicts", "memory", "concurrency"):
        assert 'class="nodata"' in _section(html, key), key
    assert _paths(_section(html, "latency"))


def test_rmt_report_cli(checked_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    ok = subprocess.run([sys.executable, "-m", "rmt", "report", str(checked_run), "--out", str(out)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip() == str(out) and out.stat().st_size > 10_000
    for bad in (tmp_path / "missing", tmp_path):
        res = subprocess.run([sys.executable, "-m", "rmt", "report", str(bad)], capture_output=True, text=True,
                             timeout=60)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("rmt: error: "), res.stderr


def test_svg_line_breaks_at_missing_values_and_handles_empty_data() -> None:
    chart = svg.line_chart(svg.Chart([svg.Line("a", [0, 1, 2, 3, 4], [1.0, 2.0, math.nan, 4.0, 5.0])]))
    d = re.search(r' d="([^"]*)"', chart)
    assert d and d.group(1).count("M") == 2 and d.group(1).count("L") == 2
    empty = svg.line_chart(svg.Chart([svg.Line("none", [], [])], y=svg.Axis(log=True)))
    assert empty.startswith("<svg") and 'class="series"' not in empty
    log = svg.line_chart(svg.Chart([svg.Line("cdf", [10, 100, 1000], [0, 50, 100])], svg.Axis(log=True, unit="us")))
    assert "100 µs" in log and "1 ms" in log
    bars = svg.bar_chart(["m1", "m2"], [("x", [1.0, math.nan])])
    assert bars.count('class="bar"') == 1
    assert svg.fmt_tick(3 * 2**20, "bytes") == "3 MiB" and svg.fmt_tick(1500, "us") == "1.5 ms"
