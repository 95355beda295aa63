"""``rmt fleet`` against a real Prometheus scraping two real tritonservers and their ``rmt collect`` processes.

Server ``a`` serves zoo ``leak_host`` (1 MiB kept per request), server ``b`` its twin ``leak_host_healthy``. Debian's
``prometheus`` runs on 127.0.0.1 with a generated config (0.5 s scrape interval; every target of a server carries
the label ``server``). Traffic goes in rounds; after each, the test polls Prometheus until a scrape of both Triton
pages and both collectors shows the round, so the range holds many samples spread over the completed requests.
Then ``rmt fleet`` must name ``a`` as leaking and clear ``b``, with the same leak verdicts as ``rmt check`` on each
collector's own run directory. Without the binary the test skips off CI and fails on CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rmt.check.trend import MIN_POINTS
from rmt.cli import main
from rmt.core.errors import SourceUnavailable
from rmt.fleet.prometheus import PrometheusClient
from rmt.server import EmbeddedServer
from tests.zoo_client import infer_all, wait_for, zoo_subset

ROUNDS = 5 * MIN_POINTS
"""Prometheus sees about one completed-request count per round, and the leak check folds samples sharing a count:
after the 10% warm-up, the later half of the rounds must hold ``MIN_POINTS`` counts. 5× leaves 18 for 8, so a few
rounds a scrape missed cannot leave a healthy series undecided."""
PER_ROUND = 2
SPEC = "only = leak, leak.max_growth = 64KiB/request, leak.series = process_rss_bytes*"
"""As tests/test_check_server.py: a CI-sized run, 64 KiB/request tolerated, the defect keeps 1 MiB/request."""
SERVERS = {"a": "leak_host", "b": "leak_host_healthy"}


def prometheus_binary() -> str:
    """Debian's ``prometheus``; skip (off CI) or fail (on CI) without it."""
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK)
                                           else None)
    if found is None:
        reason = "prometheus not found: apt-get install -y prometheus (.ci/run does it on CI)"
        if os.environ.get("CI"):
            pytest.fail(f"on CI the Prometheus test must run: {reason}")
        pytest.skip(reason)
    return found


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(cmd: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """A child process, ended by SIGTERM (then SIGKILL) by its PID on exit."""
    proc = subprocess.Popen(cmd, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def scrape_config(triton: dict[str, str], collectors: dict[str, str]) -> dict[str, Any]:
    """Prometheus' config (JSON is YAML): one job for the Triton pages, one for the collectors."""
    def job(name: str, targets: dict[str, str]) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [t], "labels": {"server": s}}
                                                      for s, t in targets.items()]}
    return {"global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
            "scrape_configs": [job("triton", triton), job("rmt-collector", collectors)]}


def _latest(prom: PrometheusClient, query: str) -> dict[str, float]:
    try:
        return {labels.get("server", ""): value for labels, value in prom.query(query)}
    except SourceUnavailable:
        return {}


def _scraped(prom: PrometheusClient, start: dict[str, float], n: int) -> bool:
    """Both servers' Triton pages and collectors, as Prometheus last scraped them, show ``n`` requests more than
    ``start`` (per server; none: any scrape at all)."""
    direct = _latest(prom, "sum by (server) (nv_inference_request_success)")
    via = _latest(prom, "sum by (server) (rmt_nv_inference_request_success)")
    return all(direct.get(s, -1) >= start.get(s, 0) + n and via.get(s, -1) >= start.get(s, 0) + n
               for s in SERVERS)


def test_fleet_names_the_leaking_server_like_rmt_check(triton_server_factory: Callable[..., EmbeddedServer],
                                                       tmp_path: Path) -> None:
    binary = prometheus_binary()
    servers = {s: triton_server_factory(model_repository=zoo_subset(tmp_path / f"repo_{s}", [m]))
               for s, m in SERVERS.items()}
    port = free_port()
    with running([sys.executable, "-m", "rmt.cli", "collect", "--pid", str(servers["a"].pid), "--metrics-url",
                  servers["a"].metrics_url, "--out", str(tmp_path / "run_a"), "--port", "0", "--uss-every", "60"],
                 stdout=subprocess.PIPE) as col_a, \
         running([sys.executable, "-m", "rmt.cli", "collect", "--pid", str(servers["b"].pid), "--metrics-url",
                  servers["b"].metrics_url, "--out", str(tmp_path / "run_b"), "--port", "0", "--uss-every", "60"],
                 stdout=subprocess.PIPE) as col_b:
        apis = {}
        for s, proc in (("a", col_a), ("b", col_b)):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("collecting api=http://127.0.0.1:"), line
            apis[s] = line.split()[1].split("=", 1)[1].removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(
            {s: srv.metrics_url.removeprefix("http://").removesuffix("/metrics") for s, srv in servers.items()},
            apis)))
        with running([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                      f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            prom = PrometheusClient(f"http://127.0.0.1:{port}")
            t0 = time.time()
            wait_for(partial(_scraped, prom, {}, 0), 30, "a first scrape of every target")
            start = _latest(prom, "sum by (server) (nv_inference_request_success)")
            for r in range(1, ROUNDS + 1):
                for s, model in SERVERS.items():
                    jobs: list[tuple[str, np.ndarray, dict[str, Any]]] = [
                        (model, np.ones((1, 16), np.float32), {}) for _ in range(PER_ROUND)]
                    assert not [x for x in infer_all(servers[s].http_url, jobs, concurrency=2)
                                if isinstance(x, Exception)]
                wait_for(partial(_scraped, prom, start, r * PER_ROUND), 30, f"a scrape after round {r}")
            t1 = time.time() + 1.0
            wait_for(lambda: time.time() >= t1, 5, "one more scrape")
            code = main(["fleet", "--prometheus", prom.base_url, "--start", f"{t0:.3f}", "--end", f"{t1:.3f}",
                         "--step", "0.5s", "--server-label", "server", "--checks", SPEC, "--out", str(tmp_path)])
            every = tmp_path / "every_check"  # the default spec: the counters' windows judged too
            assert main(["fleet", "--prometheus", prom.base_url, "--start", f"{t0:.3f}", "--end", f"{t1:.3f}",
                         "--step", "0.5s", "--server-label", "server", "--out", str(every)]) == 3
    assert code == 3  # one server leaks
    fleet = json.loads((tmp_path / "fleet.json").read_text())
    assert fleet["summary"]["leaking"] == ["a"] and fleet["summary"]["healthy"] == ["b"], fleet["summary"]
    for s, model in SERVERS.items():
        verdicts = json.loads((every / "fleet.json").read_text())["servers"][s]["verdicts"]
        starvation = next(v for v in verdicts if v["check"] == "starvation")
        assert starvation["subject"] == model and starvation["status"] == "pass", starvation
        assert starvation["evidence"]["served"] == ROUNDS * PER_ROUND, starvation  # Δ of Triton's counter
    for s, model in SERVERS.items():
        assert main(["check", str(tmp_path / f"run_{s}"), "--checks", SPEC, "--out", str(tmp_path / f"check_{s}")]
                    ) == (3 if s == "a" else 0)
        offline = json.loads((tmp_path / f"check_{s}" / "verdicts.json").read_text())["verdicts"]
        ours = fleet["servers"][s]["verdicts"]
        assert {v["subject"]: v["status"] for v in ours} == {v["subject"]: v["status"] for v in offline}
        stub = next(v for v in ours if f"instance={model}_0_0" in v["subject"])
        assert stub["status"] == ("fail" if s == "a" else "pass"), stub["explanation"]
        if s == "a":
            assert 0.7 * 2**20 <= stub["evidence"]["bytes_per_request"] <= 1.5 * 2**20
