"""The Locust master plugin in a real ``locust`` process: embedded collector, a polled remote sidecar, web UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rmt.collect.sidecar import Sidecar, SidecarOptions
from rmt.collect.target import ServerTarget
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE
from rmt.server import EmbeddedServer, free_port
from tests.zoo_client import wait_for

LOCUSTFILE = Path(__file__).with_name("locustfile_collect.py")


def test_plugin_stores_embedded_and_remote_samples_and_serves_latest(triton_server: EmbeddedServer,
                                                                       tmp_path: Path) -> None:
    remote_run = RunDir(tmp_path / "remote")
    target = ServerTarget(pid=triton_server.pid, metrics_url=triton_server.metrics_url)
    out = tmp_path / "run"
    web_port = free_port()
    with Sidecar(target, remote_run, SidecarOptions(interval_s=0.2, port=0, sources=["process", "shm"])) as remote:
        assert remote.url is not None
        env = dict(os.environ, LOCUST_RMT_COLLECTOR=remote.url, PYTHONPATH=str(Path(__file__).parent.parent))
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--autostart", "--autoquit", "1", "-u", "1",
             "-r", "1", "-t", "4s", "--web-host", "127.0.0.1", "--web-port", str(web_port),
             "--rmt-collect-server-url", triton_server.http_url, "--rmt-collect-dir", str(out),
             "--rmt-collect-interval", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            def rows() -> list[dict[str, Any]]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/rmt/collector", timeout=5) as resp:
                        data: list[dict[str, Any]] = json.load(resp)["rows"]
                        return data
                except (urllib.error.URLError, ConnectionError):
                    return []

            latest = wait_for(lambda: {r["collector"] for r in rows()} >= {"local", remote.url} and rows(), 60,
                              "latest values of both collectors on the web UI")
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/stats/requests", timeout=5) as resp:
                extended = json.load(resp).get("extended_stats", [])
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0, output[-2000:]
    assert any(r["series"].startswith("process_rss_bytes{") for r in latest)
    assert [e for e in extended if e["key"] == "rmt-resources" and e["data"]]
    run = RunDir(out, create=False)
    collectors = {r["collector"] for r in run.read(SAMPLES_FILE)}
    assert collectors == {"local", remote.url}
    declared = {(r["collector"], r["measure"]) for r in run.read(SERIES_FILE)}
    assert ("local", "nv_inference_count") in declared and (remote.url, "process_rss_bytes") in declared
    assert run.manifest()["collectors"] == {"embedded": True, "remote": [remote.url]}
