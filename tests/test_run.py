"""``rmt run`` end to end: real tritonserver, real Locust processes (master, workers), real collector and checks.

Each run is CI-sized (8-12 s of load) and ends by itself; ``rmt run`` waits on Locust with a deadline and ends its
children by PID. The verdicts asserted here flip when the planted defect vanishes: the defect's series FAILS while
its healthy twin PASSES in the same run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rmt.core.resources import MULTI_GPU_REPOSITORY, SCENARIOS, ZOO_REPOSITORY
from rmt.core.rundir import RunDir
from rmt.server import EmbeddedServer, free_port

RMT = str(Path(sys.executable).parent / "rmt")


def rmt(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the ``rmt`` CLI in its own process."""
    return subprocess.run([RMT, *args], capture_output=True, text=True, timeout=timeout, check=False)


def verdicts(run_dir: Path) -> list[dict[str, Any]]:
    """The verdicts ``rmt run`` wrote."""
    doc: dict[str, Any] = json.loads((run_dir / "verdicts.json").read_text())
    return list(doc["verdicts"])


def by_model(items: list[dict[str, Any]], check: str) -> dict[str, str]:
    """Status of each ``check`` verdict by the model named in its subject (``model=<m>`` or the subject itself)."""
    out = {}
    for v in items:
        if v["check"] != check or v["status"] == "skip":
            continue
        subject = v["subject"]
        model = subject.split("model=", 1)[1].split(",", 1)[0].rstrip("}") if "model=" in subject else subject
        out[model] = v["status"]
    return out


def test_memory_growth_catches_each_planted_leak_and_passes_each_twin(tmp_path: Path) -> None:
    out = tmp_path / "mg"
    done = rmt("run", "memory_growth", "--duration", "10", "--out", str(out), "--expected")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    rss = [v for v in verdicts(out) if v["subject"].startswith("process_rss_bytes")]
    status = by_model(rss, "leak")
    assert status["leak_host"] == "fail" and status["leak_on_error"] == "fail", status
    # leak_on_shape leaks in the big-shape phase only: to the whole-run rule a step (any verdict is accepted);
    # leak_attribution names it. Twins in a 10 s run (~100 requests each) pass or are undecided, never fail.
    big = [v["status"] for v in rss if v["check"] == "leak_attribution" and "model=leak_on_shape," in v["subject"]
           and v["subject"].endswith("/ big")]
    assert big == ["fail"], (status, big)
    assert all(status[f"{m}_healthy"] in ("pass", "warn", "undecided") for m in ("leak_host", "leak_on_shape",
                                                                                  "leak_on_error")), status
    judged = {v["subject"].split("{", 1)[0] for v in verdicts(out) if v["check"] in ("leak", "pool")}
    assert {"process_rss_bytes", "process_uss_bytes", "process_tree_rss_bytes", "shm_allocated_bytes",
            "nv_pinned_memory_pool_used_bytes"} <= judged, judged  # every memory series, not only stub RSS
    assert " 0 unexpected" in done.stdout, done.stdout[-3000:]
    assert "tritonserver ready" in done.stdout and "[memory_growth]" in done.stdout
    manifest = RunDir(out, create=False).manifest()
    assert manifest["server"]["embedded"] and manifest["server"]["pid"]
    assert manifest["scenario_name"] == "memory_growth"
    phases = {w["phase"] for w in RunDir(out, create=False).read("windows.jsonl")}
    assert phases == {"baseline", "big_shapes", "error_path"}
    assert (out / "report.html").exists()
    # Without --expected the planted defects make the run fail, as rmt check does: recompute offline.
    again = rmt("check", str(out))
    assert again.returncode == 3


def test_warmup_with_two_workers_polls_readiness_and_catches_the_cold_start(tmp_path: Path) -> None:
    out = tmp_path / "warm"
    done = rmt("run", "warmup", "--workers", "2", "--duration", "12", "--out", str(out))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]  # cold_start fails on purpose
    assert by_model(verdicts(out), "warmup") == {"cold_start": "fail", "cold_start_warmed": "pass",
                                                 "ready_too_early": "fail", "ready_too_early_healthy": "pass"}
    # READY before the background start-up work ended (rmt_warmup lines kept in model_lines.log) vs after it.
    readiness = {v["subject"]: v for v in verdicts(out) if v["check"] == "readiness"}
    early, twin = readiness["ready_too_early"], readiness["ready_too_early_healthy"]
    print(f"readiness: ready_too_early READY {early['measured']:+.3f} s after its warmup ended, twin "
          f"{twin['measured']:+.3f} s")
    assert early["status"] == "fail" and early["measured"] < -0.5, early["explanation"]
    assert twin["status"] == "pass" and twin["measured"] >= 0, twin["explanation"]
    run = RunDir(out, create=False)
    assert run.manifest()["workers"] == 2
    assert max(w["processes"] for w in run.read("windows.jsonl")) == 2
    events = list(run.read("events.jsonl"))
    assert [(e["model"], e["event"]) for e in events] == [
        (m, e) for m in ("cold_start", "cold_start_warmed", "ready_too_early_healthy", "ready_too_early")
        for e in ("load_start", "loaded")]
    polls = [p for p in run.read("readiness.jsonl") if p["model"] == "cold_start_warmed"]
    start = next(e["t_ns"] for e in events if e["model"] == "cold_start_warmed")
    first_ready = min(p["t_ns"] for p in polls if p["ready"])
    # Polled while its warmup ran: answered "not ready" after the load request, on every load (a poll stuck behind
    # the load on Triton's HTTP thread is retried, see TritonControl.load_polling).
    loads = [(e["model"], e["t_ns"]) for e in events if e["event"] == "load_start"]
    assert len(loads) == 4
    for model, begun in loads:
        answered = [p for p in run.read("readiness.jsonl") if p["model"] == model]
        assert any(not p["ready"] and p["t_ns"] > begun for p in answered), model
    assert first_ready > start


@pytest.fixture
def user_repository(tmp_path: Path) -> Path:
    """A user's repository: two models under the user's names (a leaky one and a healthy one)."""
    root = tmp_path / "repo"
    for name, source in (("my_model", "leak_host_healthy"), ("my_leaky_model", "leak_host")):
        (root / name / "1").mkdir(parents=True)
        shutil.copy(ZOO_REPOSITORY / source / "config.pbtxt", root / name / "config.pbtxt")
        (root / name / "1" / "model.py").symlink_to((ZOO_REPOSITORY / source / "1" / "model.py").resolve())
    return root


def test_models_point_a_scenario_at_a_user_repository(user_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    done = rmt("run", "memory_growth", "--model-repository", str(user_repository),
               "--models", "my_model,my_leaky_model", "--duration", "8", "--out", str(out))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    # the stubs' RSS (USS is read a few times a run under the collector's CPU share: undecided in 8 s)
    rss = [v for v in verdicts(out) if v["subject"].startswith("process_rss_bytes") and "model=" in v["subject"]]
    assert by_model(rss, "leak") == {"my_leaky_model": "fail", "my_model": "pass"}
    streams = {w["stream"] for w in RunDir(out, create=False).read("windows.jsonl")}
    assert streams == {"my_model/p0/default", "my_leaky_model/p0/default"}  # inputs from the model config


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rmt: error: "), done.stderr
    return lines[0]


def test_bad_inputs_are_one_line_errors(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    done = rmt("run", "nope", "--out", str(tmp_path / "a"))
    assert done.returncode == 2
    assert "unknown scenario 'nope': use one of" in _one_error_line(done)
    done = rmt("run", "priority", "--host", f"127.0.0.1:{free_port()}", "--out", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "cannot reach tritonserver" in _one_error_line(done)
    done = rmt("run", "priority", "--host", triton_server.http_url, "--models", "no_such_model", "--duration", "3",
               "--out", str(tmp_path / "c"))
    assert done.returncode == 2
    assert "model 'no_such_model' is not on the server" in _one_error_line(done)
    done = rmt("run", "priority", "--models", ",", "--out", str(tmp_path / "d"))
    assert done.returncode == 2 and "bad --models" in _one_error_line(done)
    done = rmt("run", "cross_device", "--out", str(tmp_path / "e"))
    assert done.returncode == 2
    assert f"needs 2 GPUs, found 0: run it on a host with 2 GPUs and --model-repository {MULTI_GPU_REPOSITORY}" in \
        _one_error_line(done)


def test_plain_locust_headless_exits_3_on_a_failing_check(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    locust = str(Path(sys.executable).parent / "locust")
    locustfile = str(SCENARIOS / "memory_growth.py")
    out = tmp_path / "plain"
    done = subprocess.run([locust, "-f", locustfile, "--headless", "-u", "8", "-r", "100", "-t", "8s", "--host",
                           triton_server.http_url, "--rmt-run-dir", str(out), "--only-summary", "--stop-timeout", "5"],
                          capture_output=True, text=True, timeout=120, check=False, start_new_session=True)
    assert done.returncode == 3, done.stderr[-3000:]
    status = by_model([v for v in verdicts(out) if v["subject"].startswith("process_rss_bytes")], "leak")
    # 8 users over six models for 8 s: the twin's ~100 requests pass or are undecided, never fail
    assert status["leak_host"] == "fail" and status["leak_host_healthy"] in ("pass", "undecided"), status
    # the collector found the server behind --host by its port and sampled the stubs
    assert (out / "samples.jsonl").exists() and "rmt: run directory" in done.stderr


def test_until_decisive_stops_the_load_once_every_leak_verdict_is_decided(tmp_path: Path) -> None:
    """A 2 KiB/request leak alone: decided long before the 120 s cap; the manifest says when and why."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "leak_2k").symlink_to(ZOO_REPOSITORY / "leak_2k", target_is_directory=True)
    out = tmp_path / "dec"
    done = rmt("run", "memory_growth", "--model-repository", str(repo), "--models", "leak_2k", "--until-decisive",
               "--max-duration", "120", "--out", str(out))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]  # the leak fails, as it should
    outcome = RunDir(out, create=False).manifest()["until_decisive"]
    assert outcome["decided"] and outcome["decided_after_s"] < 60, outcome
    assert outcome["alpha_per_look"] < outcome["alpha"] and outcome["looks"] >= 1
    assert "every leak/pool verdict decided after" in done.stdout
    leak = [v for v in verdicts(out) if v["check"] == "leak" and "model=leak_2k," in v["subject"]
            and v["subject"].startswith("process_rss_bytes")]
    assert [v["status"] for v in leak] == ["fail"]
    refused = rmt("run", "memory_growth", "--max-duration", "30")
    assert refused.returncode == 2 and "--max-duration needs --until-decisive" in refused.stderr
