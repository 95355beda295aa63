"""The run-directory adapter: which collector series are judged, on which request axis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from checkers.inputs import load_inputs, memory_kind
from collectors.series import SAMPLES_FILE, SERIES_FILE
from rmt.rundir import RunDir


def test_memory_kind_follows_the_measures_table() -> None:
    assert memory_kind("process_rss_bytes") == "memory"
    assert memory_kind("gpu_process_memory_bytes") == "memory"
    assert memory_kind("shm_allocated_bytes") == "pool"
    assert memory_kind("nv_pinned_memory_pool_used_bytes") == "pool"
    assert memory_kind("nv_cpu_memory_used_bytes") is None  # machine-wide
    assert memory_kind("nv_inference_request_success") is None and memory_kind("unknown_bytes") is None


def test_measures_are_registered_without_other_imports() -> None:
    code = "from checkers.inputs import memory_kind; assert memory_kind('process_rss_bytes') == 'memory'"
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
