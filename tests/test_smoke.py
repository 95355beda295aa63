"""`rmt smoke` (today's `make run` job): a real server, a short load per model, a table that shows the defects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from rmt.server import free_port
from tests.zoo_client import zoo_subset

RMT = [sys.executable, "-m", "rmt"]  # the `rmt` console script, without needing it on PATH


def _rows(table: str) -> dict[str, list[str]]:
    lines = [line for line in table.splitlines() if line and not line.startswith("ready ")]
    assert lines[0].split()[:3] == ["MODEL", "STATE", "OK/SENT"], lines[0]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_smoke_table_shows_leak_and_cold_start(tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", ["leak_host", "leak_host_healthy", "cold_start", "cold_start_warmed",
                                          "stream_cold_start"])
    out = subprocess.run([*RMT, "smoke", "--requests", "40", "--model-repository", str(repo)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert re.match(r"^ready http=127\.0\.0\.1:\d+ ", out.stdout)
    rows = _rows(out.stdout)
    assert set(rows) == {"leak_host", "leak_host_healthy", "cold_start", "cold_start_warmed", "stream_cold_start"}
    assert all(r[1] == "READY" and r[2] == "40/40" for r in rows.values()), rows
    assert float(rows["leak_host"][6]) >= 30, "40 requests x 1 MiB kept"
    assert float(rows["leak_host_healthy"][6]) < 10
    assert float(rows["cold_start"][3]) >= 750, "first request paid the 800 ms cold start"
    assert float(rows["cold_start_warmed"][3]) < 300
    assert float(rows["stream_cold_start"][3]) >= 750, "a decoupled model streamed to: its first stream paid it"


def test_smoke_against_unreachable_url_is_one_line_error() -> None:
    port = free_port()
    out = subprocess.run([*RMT, "smoke", "--url", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("rmt: error: cannot reach tritonserver") and out.stderr.count("\n") == 1, out.stderr
