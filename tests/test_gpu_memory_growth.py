"""The shipped ``memory_growth`` scenario on a GPU: a 64 KiB/request device leak FAILS on its GPU series, its twin
passes every GPU series. Skipped without an NVIDIA GPU (CI has none); one GPU is enough.

    .venv/bin/python -m pytest -q -m gpu tests/test_gpu_memory_growth.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rmt.core.resources import GPU_REPOSITORY
from tests.zoo_client import nvml_gpu_count

pynvml = pytest.importorskip("pynvml")
GPU_SERIES = ("gpu_process_memory_bytes", "gpu_tree_memory_bytes", "gpu_memory_used_bytes", "nv_gpu_memory_used_bytes")



pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(nvml_gpu_count() == 0, reason="needs an NVIDIA GPU (NVML finds none)")]


def run_memory_growth(model: str, out: Path) -> list[dict[str, Any]]:
    """``rmt run memory_growth`` (the shipped checks) on the GPU zoo, pointed at ``model`` alone; its leak verdicts."""
    done = subprocess.run([sys.executable, "-m", "rmt", "run", "memory_growth", "--model-repository",
                           str(GPU_REPOSITORY), "--models", model, "--duration", "40", "--out", str(out)],
                          capture_output=True, text=True, timeout=420, check=False)
    assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-2000:]
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    leak = [v for v in verdicts if v["check"] == "leak"]
    for v in leak:  # the figures docs/gpu-validation.md records (pytest -rA shows a passed test's output)
        if v["subject"].startswith(GPU_SERIES):
            print(f"{model}: {v['subject']} {v['status']} "
                  f"{v['evidence'].get('bytes_per_request', float('nan')):.0f} B/request")
    return leak


def test_memory_growth_fails_a_64k_device_leak_on_its_gpu_series_and_passes_the_twin(tmp_path: Path) -> None:
    leak = run_memory_growth("leak_gpu_64k", tmp_path / "leak")
    gpu = {v["subject"]: v for v in leak if v["subject"].startswith(GPU_SERIES)}
    own = [v for s, v in gpu.items() if s.startswith("gpu_process_memory_bytes") and "model=leak_gpu_64k" in s]
    assert own and all(v["status"] == "fail" for v in own), [(v["subject"], v["explanation"]) for v in own]
    assert 32 * 1024 < own[0]["evidence"]["bytes_per_request"] < 128 * 1024, own[0]["explanation"]
    device = [v for s, v in gpu.items() if s.startswith(("gpu_memory_used_bytes", "nv_gpu_memory_used_bytes"))]
    assert device and all(v["status"] == "fail" for v in device), [(v["subject"], v["status"]) for v in device]
    twin = run_memory_growth("leak_gpu_healthy", tmp_path / "twin")
    judged = [v for v in twin if v["subject"].startswith(GPU_SERIES)]
    assert judged, "the twin's run judged its GPU series"
    assert all(v["status"] != "fail" for v in judged), [(v["subject"], v["explanation"]) for v in judged
                                                        if v["status"] == "fail"]
    mine = [v for v in judged if v["subject"].startswith("gpu_process_memory_bytes")
            and "model=leak_gpu_healthy" in v["subject"]]
    assert mine and all(v["status"] == "pass" for v in mine), [(v["subject"], v["explanation"]) for v in mine]
