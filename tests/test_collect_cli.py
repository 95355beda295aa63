"""``rmt collect`` as a real process: ready line, HTTP API, flush contract under SIGKILL, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rmt.core.samples import SAMPLES_FILE
from rmt.server import EmbeddedServer
from tests.zoo_client import wait_for

RMT = [sys.executable, "-m", "rmt.cli", "collect"]


def test_collect_process_serves_writes_and_loses_at_most_2s_on_sigkill(triton_server: EmbeddedServer,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([*RMT, "--server-url", triton_server.http_url, "--out", str(out), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("collecting api=http://127.0.0.1:"), line
        api = line.split()[1].split("=", 1)[1]
        with urllib.request.urlopen(f"{api}/api/status", timeout=10) as resp:
            status = json.load(resp)
        assert {s["name"] for s in status["sources"] if s["available"]} >= {"process", "triton_metrics", "shm"}

        def records() -> list[dict[str, object]]:
            if not (out / SAMPLES_FILE).exists():
                return []
            return [json.loads(x) for x in (out / SAMPLES_FILE).read_text().splitlines(keepends=True)
                    if x.endswith("\n")]

        wait_for(lambda: len(records()) > 30, 60, "samples on disk")
        time.sleep(1.0)  # let the sidecar run past a flush (the contract: at most 2 s lost)
        killed_ns = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    last_ns = max(int(str(r["t_epoch_ns"])) for r in records())
    assert killed_ns - last_ns <= 2.5e9, f"lost {(killed_ns - last_ns) / 1e9:.2f} s of samples"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["collector"]["interval_s"] == 0.1 and "nvml" in manifest


def test_collect_duration_ends_cleanly_with_a_summary(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    done = subprocess.run([*RMT, "--pid", str(triton_server.pid), "--out", str(tmp_path), "--no-api",
                           "--duration", "1", "--sources", "process,triton_metrics"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "collecting api=- " in done.stdout and "samples/gaps process=" in done.stderr
    counts = dict(item.split("=") for item in done.stderr.split("samples/gaps ")[1].split())
    good_metrics = int(counts["triton_metrics"].split("/")[0])
    assert good_metrics > 0  # the metrics URL was learnt from the server's command line (only --pid given)


@pytest.mark.parametrize("args, message", [
    ([], "pass --pid PID or --server-url"),
    (["--server-url", "nohost"], "write HOST:PORT"),
    (["--pid", "999999999"], "no process with pid"),
    (["--server-url", "127.0.0.1:1", "--interval", "0"], "bad --interval"),
    (["--server-url", "127.0.0.1:1", "--sources", "process,gpu"], "choose from"),
])
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run([*RMT, "--out", str(tmp_path), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*RMT, "--server-url", "127.0.0.1:1", "--out", str(tmp_path), "--port", str(port),
                               "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "Traceback" not in done.stderr
