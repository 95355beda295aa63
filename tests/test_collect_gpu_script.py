"""``benchmarks/gpu_collectors.py`` where there is no GPU: its clear refusal, and its summary on synthetic records."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rmt.collect.nvml import Nvml
from rmt.core.resources import GPU_REPOSITORY
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_collectors.py"
MIB = 2**20


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_collectors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_exits_2_with_one_line(tmp_path: Path) -> None:
    if Nvml().init():
        pytest.skip("this host has a GPU")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "NVML" in done.stderr and "NVIDIA GPU" in done.stderr


def test_leak_size_comes_from_the_zoo_config() -> None:
    script = load_script()
    assert script.leak_bytes_per_request(GPU_REPOSITORY, "leak_gpu") > 0
    assert script.leak_bytes_per_request(GPU_REPOSITORY, "leak_gpu_healthy") == 0


def _write_run(run: RunDir, growth: dict[str, list[float | None]]) -> None:
    series = []
    for i, model in enumerate(growth, start=1):
        series.append({"collector": "local", "id": i, "seq": i, "source": "nvml", "measure": "gpu_process_memory_bytes",
                       "labels": {"gpu": "0", "pid": str(100 + i), "model": model, "instance": f"{model}_0_0",
                       "role": "stub", "name": f"{model}_0_0"}, "t_epoch_ns": 0})
    run.append(SERIES_FILE, series)
    steps = len(next(iter(growth.values())))
    run.append(SAMPLES_FILE, [
        {"collector": "local", "seq": 10 + k, "source": "nvml", "tick": k, "t_mono_ns": k, "t_epoch_ns": k,
         "jitter_us": 0.0, "duration_us": 1.0, "ok": True, "error": None,
         "values": {str(i): vals[k] for i, vals in enumerate(growth.values(), start=1)}} for k in range(steps)],
        flush=True)


@pytest.mark.parametrize("leak_mib, twin_mib, passed", [(160.0, 0.0, True), (0.0, 0.0, False), (160.0, 100.0, False)])
def test_summary_verdict(tmp_path: Path, leak_mib: float, twin_mib: float, passed: bool) -> None:
    script = load_script()
    run = RunDir(tmp_path)
    base = 500 * MIB
    _write_run(run, {"leak_gpu": [base, None, base + leak_mib * MIB],
                     "leak_gpu_healthy": [base, base, base + twin_mib * MIB]})
    summary = script.summarize(run, 10, 16 * MIB)
    assert summary["passed"] is passed and summary["expected_leak_bytes"] == 160 * MIB
    leak = next(s for s in summary["stubs"] if s["model"] == "leak_gpu")
    assert leak["growth_bytes"] == leak_mib * MIB and leak["missing"] == 1
    text = script.format_summary(summary, {"gpus": [{"index": 0, "name": "H100", "uuid": "GPU-x", "memory_api": "v2"}],
                                           "nvml": {"driver_version": "550"}})
    assert "leak_gpu_0_0" in text and ("PASS" in text) is passed
