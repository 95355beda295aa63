"""Cross-device rate limiting on two real GPUs: ``rmt run cross_device`` (per-device resource R, R:1:0 and R:4:1)
passes, its planted twin ``cross_device_global`` (one global resource G:1) fails ``cross_device`` both ways.

Skipped below two GPUs (CI has none); run on a 2-GPU machine as docs/gpu-validation.md shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rmt.core.resources import MULTI_GPU_REPOSITORY
from rmt.run.orchestrate import gpu_count

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gpu_count() < 2, reason="needs two NVIDIA GPUs")]


def run(name: str, out: Path) -> dict[str, dict]:
    """``rmt run NAME --expected`` on the GPU zoo; the cross_device verdicts by subject (exit 0 asserted)."""
    done = subprocess.run([sys.executable, "-m", "rmt", "run", name, "--model-repository", str(MULTI_GPU_REPOSITORY),
                           "--out", str(out), "--expected"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    return {v["subject"]: v for v in verdicts if v["check"] == "cross_device"}


def test_per_device_resources_keep_gpus_independent_a_global_one_couples_them(tmp_path: Path) -> None:
    healthy = run("cross_device", tmp_path / "healthy")
    assert {v["status"] for v in healthy.values()} == {"pass"} and len(healthy) == 2
    saturated = healthy["device 1 while device 0 saturated"]
    assert saturated["evidence"]["capacity"] == 1 and saturated["measured"] >= 0.8  # GPU 0 held to R:1:0
    planted = run("cross_device_global", tmp_path / "planted")
    assert {v["status"] for v in planted.values()} == {"fail"} and len(planted) == 2
    assert planted["device 1 while device 0 saturated"]["measured"] < 0.1
