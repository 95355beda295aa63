"""rmt.load against the real tritonserver and real Locust processes (single process, and master + 2 workers).

Every run ends by itself (``--run-time``); helpers wait on process exit with a deadline and end leftovers by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient

from rmt.core.resources import ZOO_REPOSITORY
from rmt.core.rundir import RunDir
from rmt.server import EmbeddedServer, free_port

LOCUST = str(Path(sys.executable).parent / "locust")
LOCUSTFILE = str(Path(__file__).resolve().parent.parent / "rmt" / "load" / "locustfile.py")


def server_counts(server: EmbeddedServer, models: list[str]) -> dict[str, int]:
    """Triton's own success + fail counts per model (``v2/models/<m>/stats``)."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        counts = {}
        for model in models:
            stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
            counts[model] = int(stats["success"]["count"]) + int(stats["fail"]["count"])
        return counts
    finally:
        client.close()


def _end(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
            proc.wait(timeout=10)


def run_locust(scenario: dict[str, Any], run_dir: Path, host: str, user_class: str, *, users: int,
               run_time_s: int, workers: int = 0, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run locust headless (``workers`` > 0: a master and that many workers); returns (exit code, master stderr)."""
    scenario_path = run_dir.parent / f"{run_dir.name}-scenario.json"
    scenario_path.write_text(json.dumps(scenario))
    common = ["-f", LOCUSTFILE, "--rmt-scenario", str(scenario_path), "--rmt-drain-timeout", "20"]
    head = [LOCUST, *common, "--headless", "-u", str(users), "-r", "1000", "-t", f"{run_time_s}s", "--host", host,
            "--rmt-run-dir", str(run_dir), "--only-summary", "--stop-timeout", "5", *extra, user_class]
    procs: list[subprocess.Popen[str]] = []
    try:
        if workers:
            port = free_port()
            head += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                     "--expect-workers", str(workers), "--expect-workers-max-wait", "60"]
        master = subprocess.Popen(head, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        procs.append(master)
        for _ in range(workers):
            procs.append(subprocess.Popen(
                [LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), user_class],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True))
        _, err = master.communicate(timeout=run_time_s + 90)
        for worker in procs[1:]:
            worker.wait(timeout=30)  # the master's quit message ends them
        return master.returncode, err
    finally:
        _end(procs)


def read_windows(run_dir: Path) -> list[dict[str, Any]]:
    """All records of ``windows.jsonl``."""
    return list(RunDir(run_dir, create=False).read("windows.jsonl"))


def totals(rows: list[dict[str, Any]], key: str, field: str) -> Counter[str]:
    """Sum of ``field`` per value of ``key``."""
    out: Counter[str] = Counter()
    for row in rows:
        out[row[key]] += row[field]
    return out


@pytest.fixture
def timeout_repository(tmp_path: Path) -> Iterator[Path]:
    """The zoo's queue_priority with a nonzero default queue timeout, so per-request timeouts take effect."""
    root = tmp_path / "repo"
    model = root / "qp_timeout"
    (model / "1").mkdir(parents=True)
    config = (ZOO_REPOSITORY / "queue_priority" / "config.pbtxt").read_text()
    config = config.replace("default_timeout_microseconds: 0", "default_timeout_microseconds: 10000000")
    (model / "config.pbtxt").write_text(config)
    (model / "1" / "model.py").symlink_to((ZOO_REPOSITORY / "queue_priority" / "1" / "model.py").resolve())
    yield root


def test_distributed_counts_equal_server_stats_and_shares_follow_weights(triton_server: EmbeddedServer,
                                                                         tmp_path: Path) -> None:
    scenario = {"traffic": {
        "mode": "closed",
        "patterns": {"small": {"shape": [16]}, "wide": {"shape": {"uniform": [1, 256]}, "batch_size": 2}},
        "streams": [{"model": "probe", "pattern": "small", "weight": 3},
                    {"model": "probe", "pattern": "wide", "weight": 1},
                    {"model": "queue_priority", "priority": 1, "pattern": "small", "weight": 1}]}}
    models = ["probe", "queue_priority"]
    before = server_counts(triton_server, models)
    code, err = run_locust(scenario, tmp_path / "run", triton_server.http_url, "HttpTraffic", users=6, run_time_s=6,
                           workers=2)
    after = server_counts(triton_server, models)
    assert code == 0, err[-2000:]
    rows = read_windows(tmp_path / "run")
    by_model = totals(rows, "model", "succeeded")
    sent = totals(rows, "stream", "sent")
    assert sum(sent.values()) > 300, sent
    # Exact: every request the master recorded is one Triton counted, and nothing else reached the server.
    assert {m: after[m] - before[m] for m in models} == {m: by_model[m] for m in models}
    assert sum(totals(rows, "stream", "succeeded").values()) == sum(sent.values())
    # Both workers contributed, merged into one record per (second, stream, phase).
    assert max(r["processes"] for r in rows) == 2
    keys = [(r["window_start_ns"], r["protocol"], r["stream"], r["phase"]) for r in rows]
    assert len(keys) == len(set(keys))
    share = {name: n / sum(sent.values()) for name, n in sent.items()}
    assert share["probe/p0/small"] == pytest.approx(0.6, abs=0.06)
    assert share["probe/p0/wide"] == pytest.approx(0.2, abs=0.06)
    assert share["queue_priority/p1/small"] == pytest.approx(0.2, abs=0.06)
    # Batch size 2 doubles the inferences of the wide stream.
    wide = [r for r in rows if r["stream"] == "probe/p0/wide"]
    assert sum(r["inferences"] for r in wide) == 2 * sum(r["succeeded"] for r in wide)
    manifest = RunDir(tmp_path / "run", create=False).manifest()
    assert manifest["workers"] == 2
    assert manifest["load_totals"]["succeeded"] == sum(sent.values())
    traces = list(RunDir(tmp_path / "run", create=False).read("traces.jsonl"))
    assert traces and all(t["stream"].startswith(("probe/", "queue_priority/")) for t in traces)
    assert all(t["sent_ns"] <= t["start_ns"] <= t["end_ns"] <= t["done_ns"] for t in traces[:50])
    # Bounded: at most max_traces_per_s (default 100) traced requests per process and second, i.e. 200 here.
    per_second = Counter(t["done_ns"] // 1_000_000_000 for t in traces if t["row"] == 0)
    assert max(per_second.values()) <= 200
    assert sum(r["traced"] for r in rows) == len(traces)


def test_distributed_open_loop_follows_rate_per_phase(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    phases = [{"name": "warmup", "duration_s": 3, "rate_per_s": 40}, {"name": "burst", "duration_s": 4,
                                                                      "rate_per_s": 120}]
    scenario = {"traffic": {"mode": "open", "arrival": "poisson", "rate_per_s": 0,
                            "patterns": {"small": {"shape": [16], "data": "zeros"}},
                            "streams": [{"model": "probe", "pattern": "small"}], "phases": phases}}
    before = server_counts(triton_server, ["probe"])
    code, err = run_locust(scenario, tmp_path / "open", triton_server.grpc_url, "GrpcTraffic", users=16,
                           run_time_s=10, workers=2)
    after = server_counts(triton_server, ["probe"])
    assert code == 0, err[-2000:]
    rows = read_windows(tmp_path / "open")
    arrivals: Counter[str] = Counter()
    for r in rows:
        arrivals[r["phase"]] += r["sent"] + r["dropped_cap"]
    # Poisson counts: sd = sqrt(n) (~11 and ~22 here); 20 % tolerates that and a loaded machine.
    assert arrivals["warmup"] == pytest.approx(40 * 3, rel=0.2), arrivals
    assert arrivals["burst"] == pytest.approx(120 * 4, rel=0.2), arrivals
    assert after["probe"] - before["probe"] == sum(r["succeeded"] for r in rows)
    ok = [r for r in rows if r["succeeded"]]
    assert all(r["latency_p50_us"] >= r["service_p50_us"] * 0.99 for r in ok)  # latency counts from intent


@pytest.mark.parametrize("user_class", ["HttpTraffic", "GrpcTraffic"])
def test_timeouts_and_priorities_reach_the_server(triton_server_factory: Any, timeout_repository: Path,
                                                  tmp_path: Path, user_class: str) -> None:
    server = triton_server_factory(model_repository=timeout_repository)
    # Same timeout on both levels: level 2 REJECTs expired requests, level 1 only DELAYs them.
    scenario = {"traffic": {"mode": "closed",
                            "streams": [{"model": "qp_timeout", "priority": 2, "timeout_us": 2000, "weight": 1},
                                        {"model": "qp_timeout", "priority": 1, "timeout_us": 2000, "weight": 1}]}}
    before = server_counts(server, ["qp_timeout"])
    host = server.grpc_url if user_class == "GrpcTraffic" else server.http_url
    code, err = run_locust(scenario, tmp_path / "prio", host, user_class, users=24, run_time_s=5)
    after = server_counts(server, ["qp_timeout"])
    assert code in (0, 1), err[-2000:]  # failures are the point here (exit 1 = Locust saw failed requests)
    rows = read_windows(tmp_path / "prio")
    low = [r for r in rows if r["priority"] == 2]
    high = [r for r in rows if r["priority"] == 1]
    assert sum(r["failed_timeout"] for r in low) > 0
    assert sum(r["failed_timeout"] + r["failed_rejected"] for r in high) == 0
    # Triton counts successes and queue-timeout rejections; queue-full rejections never reach its stats.
    counted = sum(r["succeeded"] + r["failed_timeout"] for r in rows)
    assert after["qp_timeout"] - before["qp_timeout"] == counted
    assert sum(r["failed_client"] + r["failed_server"] for r in rows) == 0


@pytest.mark.parametrize(("stream", "pattern", "expected"), [
    ({"model": "probe", "pattern": "p"}, {"dtype": "INT32"}, "model 'probe' input 'INPUT0' takes FP32"),
    ({"model": "probe", "pattern": "p"}, {"shape": [4, 4]}, "model 'probe' input 'INPUT0' has dims [-1]"),
    ({"model": "probe", "pattern": "p"}, {"batch_size": 16}, "model 'probe' takes batches up to 8"),
    ({"model": "no_such_model"}, None, "model 'no_such_model' is not on the server"),
    ({"model": "probe", "timeout_us": 1000}, None, "model 'probe' would ignore timeout_us"),
])
def test_bad_scenario_is_one_line_error_before_load(triton_server: EmbeddedServer, tmp_path: Path,
                                                    stream: dict[str, Any], pattern: dict[str, Any] | None,
                                                    expected: str) -> None:
    scenario: dict[str, Any] = {"streams": [stream]}
    if pattern is not None:
        scenario["patterns"] = {"p": pattern}
    before = server_counts(triton_server, ["probe"])
    code, err = run_locust(scenario, tmp_path / "bad", triton_server.http_url, "HttpTraffic", users=1,
                           run_time_s=3)
    errors = [line for line in err.splitlines() if line.startswith("rmt: error:")]
    assert code == 2, err[-2000:]
    assert len(errors) == 1 and expected in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert server_counts(triton_server, ["probe"]) == before
