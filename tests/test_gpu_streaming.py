"""A decoupled GPU model under streaming + cancellation load: ``rmt run streaming_gpu`` (real Locust, gRPC
ModelStreamInfer, the collector's NVML per-process memory) FAILS the cancellation leak, pinned on the cancelled
requests, and passes its twin. Skipped without a GPU; run on a one-GPU machine as docs/gpu-validation.md shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rmt.core.resources import GPU_REPOSITORY
from rmt.run.orchestrate import gpu_count

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(gpu_count() < 1, reason="needs an NVIDIA GPU")]
MIB = 1024 * 1024


def test_cancelled_streams_leak_device_memory_per_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "rmt", "run", "streaming_gpu", "--model-repository",
                           str(GPU_REPOSITORY), "--out", str(out), "--expected"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    judged = [v for v in verdicts if v["check"] == "leak_attribution"]
    leak = [v for v in judged if "model=stream_leak_on_cancel_gpu," in v["subject"]
            and v["subject"].endswith(" / outcome:cancelled")]
    for v in judged:  # the figures docs/gpu-validation.md records (pytest -rA shows a passed test's output)
        print(f"{v['subject']} {v['status']} {v['evidence'].get('bytes_per_request', float('nan')):.0f} B/request")
    assert len(leak) == 1 and leak[0]["status"] == "fail"
    # 4 MiB of device memory per cancelled request, seen in NVML's per-process figure of the stub.
    assert leak[0]["evidence"]["bytes_per_request"] == pytest.approx(4 * MIB, rel=0.15)
    twin = [v for v in judged if "model=stream_leak_on_cancel_gpu_healthy," in v["subject"]]
    assert twin and {v["status"] for v in twin} == {"pass"}
    assert all(v["subject"].startswith("gpu_process_memory_bytes") for v in leak + twin)
