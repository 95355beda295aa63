"""The run-directory adapter: which collector series are judged, on which request axis."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from rmt.check.inputs import load_inputs, memory_kind
from rmt.check.spec import build_checks
from rmt.core.hdr import new_histogram
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE
from rmt.core.windows import LoadWindow, ProbeTrace


def test_memory_kind_follows_the_measures_table() -> None:
    assert memory_kind("process_rss_bytes") == "memory"
    assert memory_kind("gpu_process_memory_bytes") == "memory"
    assert memory_kind("shm_allocated_bytes") == "pool"
    assert memory_kind("nv_pinned_memory_pool_used_bytes") == "pool"
    assert memory_kind("nv_cpu_memory_used_bytes") is None  # machine-wide
    assert memory_kind("nv_inference_request_success") is None and memory_kind("unknown_bytes") is None


def test_measures_are_registered_without_other_imports() -> None:
    code = "from rmt.check.inputs import memory_kind; assert memory_kind('process_rss_bytes') == 'memory'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _write(run: RunDir, n: int) -> None:
    decl = [("process_rss_bytes", {"pid": "7", "model": "m", "instance": "m_0_0", "role": "stub"}),
            ("nv_inference_request_success", {"model": "m", "version": "1"}),
            ("nv_inference_request_failure", {"model": "m", "version": "1", "reason": "BACKEND"}),
            ("nv_cpu_memory_used_bytes", {})]
    run.append(SERIES_FILE, [{"collector": "local", "id": i + 1, "seq": i + 1, "source": "x", "measure": m,
                              "labels": lab, "t_epoch_ns": 0} for i, (m, lab) in enumerate(decl)])
    rows = []
    for k in range(n):
        ok, failed = 30 * k, 10 * k
        rows.append({"collector": "local", "seq": 10 + k, "source": "x", "tick": k, "t_mono_ns": k * 10**9,
                     "t_epoch_ns": k * 10**9, "jitter_us": 0.0, "duration_us": 1.0, "ok": True, "error": None,
                     "values": {"1": 1e8 + 1000.0 * (ok + failed), "2": ok, "3": failed, "4": 5e9}})
    run.append(SAMPLES_FILE, rows, flush=True)


def test_adapter_reads_collector_series_against_completed_requests(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.update_manifest(server={"options": {"rate_limit_resources": ["R1:4"]}})
    _write(run, 40)
    inputs = load_inputs(run)
    assert inputs.rate_limiter_on and inputs.rate_limit_flags == ["R1:4"]
    (s,) = inputs.memory
    assert s.name == "process_rss_bytes{instance=m_0_0,model=m,role=stub}" and s.kind == "memory"
    assert s.requests.tolist() == pytest.approx([40.0 * k for k in range(40)])  # failures count as completed
    assert np.allclose(np.diff(s.values) / np.diff(s.requests), 1000.0)


def test_adapter_notes_what_is_missing(tmp_path: Path) -> None:
    inputs = load_inputs(RunDir(tmp_path))
    assert inputs.memory == [] and any("no manifest.json" in n for n in inputs.notes)
    assert any(SAMPLES_FILE in n for n in inputs.notes)


def _window(t: int, stream: str, model: str, priority: int, ok: int, lat_us: float, in_flight: int = 0,
            protocol: str = "http") -> dict:
    h = new_histogram()  # the load side's histogram
    for _ in range(ok):
        h.record_value(int(lat_us))
    return {"window_start_ns": t * 10**9, "window_s": 1.0, "protocol": protocol, "stream": stream, "model": model,
            "priority": priority, "pattern": "p", "phase": "main", "sent": ok, "succeeded": ok, "inferences": ok,
            "failed_timeout": 0, "failed_rejected": 1, "failed_server": 0, "failed_client": 0, "dropped_cap": 0,
            "delayed_cap": 0, "in_flight": in_flight, "in_flight_max": in_flight,
            "latency_us_hdr": h.encode().decode("ascii") if ok else "", "service_us_hdr": "",
            "latency_p50_us": lat_us, "latency_p99_us": lat_us, "latency_max_us": lat_us if ok else None,
            "service_p50_us": lat_us, "service_p99_us": lat_us, "traced": 0, "processes": 1}


def test_adapter_reads_windows_and_traces(tmp_path: Path) -> None:
    rows = [_window(t, "queue_priority/p1/x", "queue_priority", 1, 5, 900_000.0 if t == 0 else 2_000.0)
            for t in range(30)]
    rows += [_window(t, "queue_priority/p1/x", "queue_priority", 1, 1, 2_000.0, in_flight=2, protocol="grpc")
             for t in range(30)]
    rows += [_window(t, "queue_priority/p2/x", "queue_priority", 2, 5, 40_000.0) for t in range(30)]
    rows = [asdict(LoadWindow(**r)) for r in rows]  # the load side's record: a field drift fails here
    (tmp_path / "windows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    traces = [asdict(ProbeTrace(protocol="http", stream="rl_high/p0/x", phase="main", request_id=f"{i}.{k}",
                                intended_ns=0, sent_ns=0, done_ns=0, instance_index=i, device_id=0, pid=10 + i,
                                exec_index=k, row=row, start_ns=k * 10_000 + i * 5_000,
                                end_ns=k * 10_000 + i * 5_000 + 4_000, cold=0))
              for i in (0, 1) for k in range(20) for row in (0, 1)]
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in traces))
    inputs = load_inputs(RunDir(tmp_path))
    hi, lo = inputs.windows
    assert (hi.stream, hi.priority, lo.priority) == ("queue_priority/p1/x", 1, 2)
    assert hi.completed.tolist() == [6.0] * 30 and hi.failed.tolist() == [2.0] * 30 and hi.pending[0] == 2
    assert hi.latency_first_us is not None and hi.latency_first_us.tolist() == [900_000.0]
    # a 29 s stream counts as steady after 20 % of its span (5.8 s), a long one after 10 s
    assert hi.latency_steady is not None and hi.latency_steady.get_total_count() == 24 * 6
    assert hi.failed_by["rejected"].tolist() == [2.0] * 30 and hi.failed_by["timeout"].sum() == 0
    assert hi.pattern == "p" and hi.phase is not None and set(hi.phase.tolist()) == {"main"}
    assert hi.in_flight_max is not None and hi.in_flight_max[0] == 2
    assert hi.latency_max_us is not None and hi.latency_max_us[0] == 900_000.0
    verdicts = {v.check: v for c in build_checks({}) for v in c.run(inputs)}
    assert verdicts["priority"].status == "pass" and verdicts["warmup"].status == "fail"
    t0, t1 = inputs.traces
    assert (t0.instance, t1.instance, len(t0.start_ns)) == ("rl_high_0_0", "rl_high_0_1", 20)
    assert t0.exec_index is not None and t0.exec_index.tolist() == list(range(20))
