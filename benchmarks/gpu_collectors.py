"""GPU proof of the collectors: NVML per-process memory of a GPU-leaking stub grows, its healthy twin's stays flat.

    python benchmarks/gpu_collectors.py --out DIR [--requests 50] [--interval 0.1]

Needs an NVIDIA GPU with its driver, Python 3.12 (or any 3.10-3.12) with torch (or cupy), numpy, nvidia-ml-py, and
rmt installed (tritonclient, psutil, prometheus-client ...); ``RMT_TRITON_HOME`` may point at an unpacked trimmed
tritonserver (else the ``nvidia-pytriton`` wheel is used). It starts the embedded server on ``rmt/zoo/gpu``, runs the
collector (all sources, NVML included), sends N requests to ``leak_gpu`` and N to ``leak_gpu_healthy``, and writes:

- ``DIR/run/``: the run directory (manifest with GPU names/UUIDs/driver/NVML versions, series.jsonl, samples.jsonl);
- ``DIR/summary.json`` and ``DIR/summary.txt``: per stub, its NVML GPU-memory growth against N x the model's
  ``leak_bytes_per_request``, and the verdict.

Exit 0 when the leak grew by >= 0.8 x expected and the twin by < 0.25 x expected, 1 otherwise, 2 when it cannot run
here (no GPU / NVML, server failed): one line naming the fix.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rmt.collect.nvml import Nvml
from rmt.collect.sidecar import Sidecar, SidecarOptions
from rmt.collect.target import ServerTarget
from rmt.core.errors import RmtError
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import GPU_REPOSITORY
from rmt.core.rundir import RunDir
from rmt.core.samples import find_series, load_series
from rmt.server import EmbeddedServer, ServerOptions

LEAK, TWIN = "leak_gpu", "leak_gpu_healthy"


WARMUP_REQUESTS = 3


def leak_bytes_per_request(repository: Path, model: str) -> int:
    """The ``leak_bytes_per_request`` parameter of a zoo model's config (0 when absent)."""
    config = load_config_pbtxt(repository / model / "config.pbtxt")
    param = config.parameters.get("leak_bytes_per_request")
    return int(param.string_value) if param is not None and param.string_value else 0


def summarize(run: RunDir, requests: int, leak_bytes: int, since_ns: int = 0) -> dict[str, Any]:
    """Per stub of the two models: first/last/growth of its NVML GPU-memory series from ``since_ns`` (epoch ns,
    after the warm-up that creates each stub's CUDA context); the verdict."""
    series = load_series(run, measure="gpu_process_memory_bytes")
    expected = requests * leak_bytes
    stubs: list[dict[str, Any]] = []
    for model in (LEAK, TWIN):
        for s in find_series(series, "gpu_process_memory_bytes", model=model):
            window = s.values[s.t_epoch_ns >= since_ns]
            finite = window[np.isfinite(window)]
            first = float(finite[0]) if finite.size else math.nan
            last = float(finite[-1]) if finite.size else math.nan
            stubs.append({"model": model, "instance": s.labels.get("instance"), "pid": s.labels.get("pid"),
                          "gpu": s.labels.get("gpu"), "samples": int(window.size),
                          "missing": int(window.size - finite.size), "first_bytes": first, "last_bytes": last,
                          "growth_bytes": last - first, "expected_growth_bytes": expected if model == LEAK else 0})
    leak = [x["growth_bytes"] for x in stubs if x["model"] == LEAK]
    twin = [x["growth_bytes"] for x in stubs if x["model"] == TWIN]
    ok = bool(leak and twin and sum(leak) >= 0.8 * expected and all(abs(g) < 0.25 * expected for g in twin))
    return {"requests_per_model": requests, "leak_bytes_per_request": leak_bytes, "expected_leak_bytes": expected,
            "stubs": stubs, "passed": ok,
            "verdict": "PASS: the leaking stub's NVML series grew, the twin's stayed flat" if ok else
            "FAIL: see stubs (growth against expected)"}


def format_summary(summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The text summary."""
    mib = 2**20
    gpus = ", ".join(f"{g['index']}: {g['name']} {g['uuid']} (memory API {g['memory_api']})"
                     for g in manifest.get("gpus", []))
    nvml = manifest.get("nvml", {})
    lines = [f"GPUs: {gpus or '-'}; driver {nvml.get('driver_version', '-')}, NVML {nvml.get('nvml_version', '-')}",
             f"{summary['requests_per_model']} requests per model, leak {summary['leak_bytes_per_request'] / mib:.0f}"
             f" MiB/request: expected leak growth {summary['expected_leak_bytes'] / mib:.0f} MiB",
             f"{'model':18s} {'instance':24s} {'pid':>8s} {'first MiB':>10s} {'last MiB':>10s} {'growth MiB':>11s}"
             f" {'expected':>9s} samples"]
    for s in summary["stubs"]:
        lines.append(f"{s['model']:18s} {s['instance'] or '-':24s} {s['pid'] or '-':>8s} {s['first_bytes'] / mib:10.1f}"
                     f" {s['last_bytes'] / mib:10.1f} {s['growth_bytes'] / mib:11.1f} "
                     f"{s['expected_growth_bytes'] / mib:9.0f} {s['samples']} ({s['missing']} missing)")
    lines.append(summary["verdict"])
    return "\n".join(lines)


def send(url: str, model: str, n: int) -> None:
    """``n`` sequential inferences of a [1, 16] FP32 INPUT0."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, network_timeout=120)
    data = np.ones((1, 16), np.float32)
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=True)
    for _ in range(n):
        client.infer(model, [tensor])
    client.close()


def wait_samples(sidecar: Sidecar, source: str, more: int, timeout_s: float = 60.0) -> None:
    """Poll until ``source`` has ``more`` further good samples."""
    col = sidecar.collector
    target = col.status[source].samples_total + more
    deadline = time.monotonic() + timeout_s
    while col.status[source].samples_total < target:
        if time.monotonic() > deadline:
            raise RmtError(f"the {source} source gave no samples for {timeout_s:.0f} s: "
                           f"{col.status[source].last_error}")
        time.sleep(0.05)


def run(args: argparse.Namespace) -> int:
    """Start, load, collect, summarize."""
    nvml = Nvml()
    if not nvml.init():
        raise RmtError(f"{nvml.reason}: run this on a machine with an NVIDIA GPU and driver")
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = RunDir(args.out / "run")
    with EmbeddedServer(ServerOptions(model_repository=args.model_repository)) as server:
        target = ServerTarget(pid=server.pid, metrics_url=server.metrics_url)
        with Sidecar(target, run_dir, SidecarOptions(interval_s=args.interval, port=None), nvml=nvml) as sidecar:
            for model in (LEAK, TWIN):  # CUDA context and allocator warm-up, outside the measured window
                send(server.http_url, model, WARMUP_REQUESTS)
            wait_samples(sidecar, "nvml", 5)
            since_ns = time.time_ns()
            wait_samples(sidecar, "nvml", 3)
            for model in (LEAK, TWIN):
                send(server.http_url, model, args.requests)
            wait_samples(sidecar, "nvml", 5)
        run_dir.close()
    summary = summarize(run_dir, args.requests, leak_bytes_per_request(args.model_repository, LEAK), since_ns)
    manifest = run_dir.manifest()
    summary["gpus"], summary["nvml"] = manifest.get("gpus"), manifest.get("nvml")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    text = format_summary(summary, manifest)
    (args.out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if summary["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors are one line and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the run directory and the summaries")
    parser.add_argument("--requests", type=int, default=50, help="requests per model (default 50)")
    parser.add_argument("--interval", type=float, default=0.1, help="sampling interval in s (default 0.1)")
    parser.add_argument("--model-repository", type=Path, default=GPU_REPOSITORY, help="default: rmt/zoo/gpu")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    try:
        return run(args)
    except RmtError as exc:
        print(f"gpu_collectors: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
