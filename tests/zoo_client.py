"""Small helpers the foundation tests share: a sub-repository of zoo models, inference, stub memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from rmt.core.procs import triton_processes
from rmt.core.resources import ZOO_REPOSITORY
from rmt.server import EmbeddedServer


def zoo_subset(dest: Path, names: list[str], source: Path = ZOO_REPOSITORY) -> Path:
    """A model repository in ``dest`` holding only ``names`` (links to the zoo's model folders)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / name).symlink_to(source / name, target_is_directory=True)
    return dest


def infer(client: Any, model: str, data: np.ndarray, **kwargs: Any) -> Any:
    """One inference with INPUT0 = ``data`` (already batched); returns the InferResult."""
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data.astype(np.float32), binary_data=True)
    return client.infer(model, [tensor], **kwargs)


def infer_all(url: str, jobs: list[tuple[str, np.ndarray, dict[str, Any]]], concurrency: int = 8) -> list[Any]:
    """Send all ``(model, data, kwargs)`` jobs from ``concurrency`` threads (one client each: tritonclient.http is
    gevent-based and not thread-safe); return, in order, each InferResult or the InferenceServerException."""
    local = threading.local()
    clients: list[Any] = []

    def one(job: tuple[str, np.ndarray, dict[str, Any]]) -> Any:
        if not hasattr(local, "client"):
            local.client = httpclient.InferenceServerClient(url, network_timeout=60)
            clients.append(local.client)
        try:
            return infer(local.client, job[0], job[1], **job[2])
        except InferenceServerException as exc:
            return exc

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, jobs))
    for client in clients:
        client.close()
    return results


def model_stub_rss(server: EmbeddedServer, model: str) -> int:
    """Total RSS in bytes of the stubs serving ``model``."""
    total = 0
    for proc in triton_processes(server.pid):
        if proc.role == "stub" and proc.model == model:
            total += psutil.Process(proc.pid).memory_info().rss
    return total


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def nvml_gpu_count() -> int:
    """GPUs NVML finds (0 without the library, the driver or a GPU): the gpu-marked tests' skip condition."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    return int(pynvml.nvmlDeviceGetCount())


STATE_LOCUSTFILE = str(Path(__file__).resolve().parent / "locustfile_state.py")


def run_state_locust(user_class: str, host: str, run_dir: Path, scenario: dict[str, Any], *, users: int,
                     seconds: int, timeout_s: float) -> tuple[int, str]:
    """``locust --headless`` (``python -m locust``: also where only the module is installed) on the stateful test
    locustfile with ``scenario`` beside ``run_dir``; (exit code, stderr). The whole process group is killed if it
    outlives ``timeout_s``."""
    path = run_dir.parent / f"{run_dir.name}.json"
    path.write_text(json.dumps(scenario))
    args = [sys.executable, "-m", "locust", "-f", STATE_LOCUSTFILE, "--headless", "-u", str(users), "-r", "100",
            "-t", f"{seconds}s", "--host", host, "--rmt-scenario", str(path), "--rmt-run-dir", str(run_dir),
            "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "0", user_class]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
