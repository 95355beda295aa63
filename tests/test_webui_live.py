"""The RMT tab's live data on synthetic inputs: memory rows with the leak preview, stream rate and µs latency."""

from __future__ import annotations

from typing import Any

from rmt.check.base import FAIL
from rmt.check.data import MemorySeries
from rmt.check.memory_checks import LeakCheck
from rmt.core.windows import WindowState
from rmt.webui.live import LiveMemory, LivePoint, LiveStreams
from rmt.webui.plugin import RmtWebUI


def _points(requests: float, leak_bytes: float, flat_bytes: float) -> list[LivePoint]:
    return [LivePoint("nv_inference_request_success", {"model": "leaky"}, requests),
            LivePoint("nv_inference_request_success", {"model": "flat"}, requests),
            LivePoint("process_rss_bytes", {"model": "leaky", "name": "leaky_0_0", "pid": "7"}, leak_bytes),
            LivePoint("process_rss_bytes", {"model": "flat", "name": "flat_0_0", "pid": "8"}, flat_bytes),
            LivePoint("gpu_memory_used_bytes", {"gpu": "0"}, 2.0**30)]


def test_leak_preview_flags_the_planted_leak_and_not_its_twin() -> None:
    memory = LiveMemory()
    for i in range(60):
        memory.add(1000.0 + i, _points(20.0 * i, 50e6 + 2**20 * 20 * i, 50e6 + (i % 3) * 4096))
    rows = {r["subject"]: r for r in memory.rows()}
    assert next(iter(rows)) == "gpu_memory_used_bytes{gpu=0}"
    assert rows["gpu_memory_used_bytes{gpu=0}"]["section"] == "gpu"
    leaky = rows["process_rss_bytes{model=leaky,name=leaky_0_0}"]
    flat = rows["process_rss_bytes{model=flat,name=flat_0_0}"]
    assert leaky["preview"].startswith("leak: LEAK?") and leaky["slope"] == "9.77 GiB/10k req"
    assert flat["preview"].startswith("leak: ok")
    assert leaky["delta"] == "1.15 GiB" and flat["now"] == "47.69 MiB"


def test_leak_preview_is_the_leak_checks_verdict_on_a_short_run() -> None:
    """400 B/request sustained over 2 000 requests: a leak by the check's shape rule (one threshold, 512 KiB/10k, for
    short runs and soaks) — the preview says what ``rmt check`` says."""
    memory = LiveMemory()
    for i in range(60):
        memory.add(float(i), _points(34.0 * i, 50e6 + 400 * 34.0 * i, 50e6))
    key = "process_rss_bytes{model=leaky,name=leaky_0_0}"
    t, r, v = memory.series[key].arrays()
    judged = LeakCheck().judge_series(MemorySeries(key, t, r, v, "memory", "leaky"))
    assert judged.status == FAIL and judged.measured is not None and judged.measured > 512 * 1024
    row = next(r for r in memory.rows() if r["subject"] == key)
    assert row["preview"].startswith("leak: LEAK? (limit 512.00 KiB/10k"), row["preview"]


def test_leak_preview_is_undecided_without_enough_samples() -> None:
    memory = LiveMemory()
    for i in range(3):
        memory.add(float(i), _points(10.0 * i, 1e6 * i, 1e6))
    previews = [r["preview"] for r in memory.rows() if r["section"] == "process"]
    assert previews and all(p.startswith("leak: undecided (") for p in previews)


def test_streams_from_request_events_and_worker_windows() -> None:
    now = [100.5]
    ui = RmtWebUI(clock=lambda: now[0])
    for i in range(50):
        now[0] = 95.0 + i * 0.1
        ui.on_request("HTTP", "probe/p0/small", response_time=0.25, exception=None)
    ui.on_request("HTTP", "probe/p0/small", response_time=3.0, exception=RuntimeError("x"))
    state = WindowState()
    state.counts[1] = 30  # succeeded
    state.counts[3] = 2  # failed_timeout
    for _ in range(30):
        state.latency.record_value(1500)
    report: dict[str, Any] = {"rmt": {"windows": [[[97 * 10**9, "http", "qp/p1/small", "main"], state.to_wire()]]}}
    ui.on_worker_report("worker-1", report)
    now[0] = 101.2
    rows = {r["subject"]: r for r in ui.refresh() if r["section"] == "stream"}
    assert rows["probe/p0/small"]["delta"] == "50 ok, 1 failed"
    assert rows["probe/p0/small"]["latency"] == "250 µs / 250 µs"
    assert rows["qp/p1/small"]["now"] == "6.0 req/s" and rows["qp/p1/small"]["latency"] == "1.5 ms / 1.5 ms"


def test_refresh_without_collectors_says_why() -> None:
    rows = RmtWebUI(clock=lambda: 10.0).refresh()
    assert any(r["section"] == "memory" and "no collector" in r["subject"] for r in rows)
    assert rows[-1]["section"] == "charts"
    assert LiveStreams().rows(10.0) == []
