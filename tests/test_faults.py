"""Faults during a real run (real tritonserver with ``probe``, real ``rmt run`` and Locust processes, loopback):
a worker SIGKILLed, ``rmt run`` SIGTERMed, the Locust master SIGINTed. Each time the verdicts, JUnit and report are
written, say what was lost, and the exit code is not a pass."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from rmt.collect.core import Collector
from rmt.collect.target import ServerTarget
from rmt.collect.triton_metrics import TritonMetricsSource
from rmt.core.errors import ConfigError
from rmt.core.rundir import RunDir
from rmt.server import EmbeddedServer, ServerOptions
from tests.fuzz_cases import SEED_RUN, cli
from tests.test_collect_units import CountingSource, records
from tests.zoo_client import wait_for, zoo_subset

RMT = [sys.executable, "-m", "rmt"]
DEFINITION = {"description": "closed loop on probe (fault tests)",
              "traffic": {"mode": "closed", "streams": [{"model": "probe"}]},
              "checks": {"only": "starvation"}, "run": {"users": 4, "duration_s": 6}}


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    pytest.importorskip("tritonclient")
    repo = zoo_subset(tmp_path_factory.mktemp("repo"), ["probe"])
    with EmbeddedServer(ServerOptions(model_repository=repo)) as server:
        yield server


def _poll(what: str, condition: Callable[[], bool], deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start_run(server: EmbeddedServer, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    definition = tmp_path / "probe.json"
    definition.write_text(json.dumps(DEFINITION))
    run = tmp_path / "run"
    proc = subprocess.Popen([*RMT, "run", str(definition), "--host", server.http_url, "--out", str(run), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _poll("2 s of load", lambda: time.time_ns() > _load_start_ns(run) + 2_000_000_000)
    return proc, run


def _load_start_ns(run: Path) -> float:
    try:
        start = json.loads((run / "manifest.json").read_text()).get("load_start_ns")
    except (OSError, ValueError):
        return float("inf")
    return float(start) if start else float("inf")


def _locust(proc: subprocess.Popen[str], worker: bool) -> psutil.Process:
    children = [c for c in psutil.Process(proc.pid).children(recursive=True) if "locust" in " ".join(c.cmdline())]
    return next(c for c in children if ("--worker" in c.cmdline()) == worker)


def _served(server: EmbeddedServer) -> int:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/probe/stats", timeout=5) as resp:
        stats = json.load(resp)
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def _outputs(run: Path) -> tuple[dict, ET.Element, str, dict]:
    manifest = json.loads((run / "manifest.json").read_text())
    verdicts = json.loads((run / "verdicts.json").read_text())
    junit = ET.parse(run / "junit.xml").getroot()
    return manifest, junit, (run / "report.html").read_text(), verdicts


def test_worker_sigkilled_mid_run(probe_server: EmbeddedServer, tmp_path: Path) -> None:
    before = _served(probe_server)
    proc, run = _start_run(probe_server, tmp_path, "--workers", "2")
    victim = _locust(proc, worker=True)
    victim.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 4, out  # incomplete: never green on partial data
    manifest, junit, html, verdicts = _outputs(run)
    [loss] = manifest["losses"]
    assert loss["kind"] == "worker_lost" and loss["windows_lost"] > 0 and loss["streams"] == 1
    worker = loss["worker"]
    assert f"exited with code {-signal.SIGKILL}" in out and "INCOMPLETE" in out and worker in out
    case = junit.find(".//testcase[@classname='rmt.completeness']")
    assert case is not None and case.find("failure") is not None and worker in case.attrib["name"]
    assert worker in html and "window(s) lost" in html
    judged = [v for v in verdicts["verdicts"] if v["check"] == "starvation"]
    assert judged and all("incomplete" in v["evidence"] for v in judged)
    counted_up = [int(m) for m in re.findall(r"\] +(\d+) s of 6 ", out)]
    assert all(t <= 7 for t in counted_up), out  # no "25 s of 6": past the load, the line says it is over
    # What remains agrees with the server: every window counted was served, and what the server served beyond the
    # windows fits in the seconds the lost worker did not report.
    windows = [json.loads(line) for line in (run / "windows.jsonl").read_text().splitlines()]
    counted = sum(w["succeeded"] for w in windows)
    assert counted == manifest["load_totals"]["succeeded"]
    served = _served(probe_server) - before
    peak = max(w["succeeded"] for w in windows)
    assert counted <= served <= counted + peak * loss["windows_lost"], (counted, served, peak)


@pytest.mark.parametrize(("target", "signum"), [("rmt", signal.SIGTERM), ("master", signal.SIGINT)])
def test_signal_mid_run_still_judges(probe_server: EmbeddedServer, tmp_path: Path, target: str,
                                     signum: signal.Signals) -> None:
    proc, run = _start_run(probe_server, tmp_path)
    os.kill(proc.pid if target == "rmt" else _locust(proc, worker=False).pid, signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == (128 + signum if target == "rmt" else 4), out
    manifest, junit, html, verdicts = _outputs(run)
    [loss] = manifest["losses"]
    assert loss["kind"] == "load_cut_short" and loss["ran_s"] < 6 - 1, loss
    assert (f"rmt run got {signum.name}" if target == "rmt" else "the Locust master ended early") in loss["reason"]
    assert junit.find(".//testcase[@classname='rmt.completeness']/failure") is not None
    assert "cut short" in out and "load ran" in html
    assert any(v["check"] == "starvation" and v["status"] != "skip" for v in verdicts["verdicts"])


class _Metrics(http.server.BaseHTTPRequestHandler):
    """A ``/metrics`` endpoint gone wrong: ``mode`` on the server says how (hang, garbage, good)."""

    def do_GET(self) -> None:
        mode = getattr(self.server, "mode", "good")
        if mode == "hang":
            self.server.release.wait(10)  # type: ignore[attr-defined]
            return
        body = b"\x00\xffnot { prometheus" if mode == "garbage" else b'nv_inference_count{model="a",version="1"} 3\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.mark.parametrize("mode", ["hang", "garbage"])
def test_metrics_endpoint_hangs_or_talks_garbage(tmp_path: Path, mode: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    server.daemon_threads = True
    server.mode = mode  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = RunDir(tmp_path)
    target = ServerTarget(metrics_url=f"http://127.0.0.1:{server.server_address[1]}/metrics")
    metrics = TritonMetricsSource(target, timeout_s=0.3)
    beside = CountingSource("beside")
    try:
        with Collector([metrics, beside], run_dir=run, interval_s=0.1) as col:
            wait_for(lambda: col.status["triton_metrics"].errors_total >= 5, 30, "five metrics gaps")
            server.mode = "good"  # type: ignore[attr-defined]
            server.release.set()  # type: ignore[attr-defined]
            wait_for(lambda: col.status["triton_metrics"].samples_total > col.status["triton_metrics"].errors_total,
                     30, "the endpoint to recover")
            ticks = col.status["beside"].samples_total
    finally:
        server.shutdown()
    gaps = [r for r in records(run, "triton_metrics") if not r["ok"]]
    assert gaps and all(r["error"] for r in gaps)
    assert any(("timeout" if mode == "hang" else "malformed") in r["error"] for r in gaps), gaps[0]["error"]
    rows = records(run, "beside")  # the other source kept its ticks while the endpoint hung
    assert len(rows) >= ticks and [r["tick"] for r in rows] == list(range(len(rows)))


@contextlib.contextmanager
def _small_fs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``folder`` (root can mount one here); skips with the reason where mounting is not
    allowed."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)  # still busy: detach it now, freed when idle


@pytest.fixture
def full_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs."""
    with _small_fs(tmp_path / "full", "512k") as folder:
        yield folder


def _fill(folder: Path) -> None:
    with contextlib.suppress(OSError), (folder / "filler").open("wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 4096)


def test_run_directory_on_a_full_filesystem(full_fs: Path, tmp_path: Path) -> None:
    run = full_fs / "run"
    shutil.copytree(SEED_RUN, run)
    (run / "verdicts.json").write_text('{"old": true}\n')
    rd = RunDir(run, flush_interval_s=0)
    good = json.loads((run / "windows.jsonl").read_text().splitlines()[-1])
    _fill(full_fs)
    with pytest.raises(ConfigError, match="No space left on device") as err:  # a writer (master, collector)
        for _ in range(100_000):
            rd.append("windows.jsonl", [good])
    assert "\n" not in str(err.value) and "written before are kept" in str(err.value)
    with pytest.raises(ConfigError, match="No space left"):
        rd.update_manifest(extra=["x" * 4096] * 64)
    rd.close()
    for argv in (["check", str(run)], ["report", str(run)]):
        code, _, text = cli(argv)
        assert code == 2 and text.startswith("rmt: error: ") and text.count("\n") == 1, text
        assert "No space left on device" in text
    assert json.loads((run / "verdicts.json").read_text()) == {"old": True}  # not half replaced
    assert not (run / "report.html").exists() and not list(run.glob(".*.tmp"))
    (full_fs / "filler").unlink()
    code, _, text = cli(["check", str(run), "--out", str(tmp_path / "out")])  # still readable
    assert code in (0, 3, 4) and "Traceback" not in text, text
    assert (tmp_path / "out" / "verdicts.json").exists()


def test_rmt_run_on_a_filesystem_that_fills_mid_load(probe_server: EmbeddedServer, tmp_path: Path) -> None:
    """The run directory's filesystem fills 2 s into the load of a one-process run: one rmt: error line naming the
    file and the fix, the load stops, the windows written before are kept (a local run writes them as it goes) and
    ``rmt check`` reads the directory afterwards, calling it incomplete."""
    with _small_fs(tmp_path / "small", "4m") as fs:
        proc, run = _start_run(probe_server, fs)
        try:
            windows = run / "windows.jsonl"
            _poll("windows written", lambda: windows.exists() and windows.stat().st_size > 0, 10)
            assert "load_end_ns" not in json.loads((run / "manifest.json").read_text())  # written as the load goes
            _fill(fs)
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # a failed assertion: end the run (and its Locust process), then unmount
                proc.terminate()
                try:
                    proc.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate(timeout=30)
        assert proc.returncode == 2, out
        errors = [line for line in out.splitlines() if line.startswith("rmt: error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "free space" in errors[0], out
        assert "Traceback" not in out and "Traceback" not in (run / "locust.log").read_text(errors="replace")
        manifest = json.loads((run / "manifest.json").read_text())
        assert isinstance(manifest["load_start_ns"], int) and "load_end_ns" not in manifest
        kept = [json.loads(line) for line in windows.read_text().splitlines()]
        assert kept and all(w["sent"] >= 0 for w in kept)
        (fs / "filler").unlink()
        code, text, err = cli(["check", str(run), "--out", str(tmp_path / "checked")])
    assert code == 4 and "Traceback" not in text + err, text + err
    verdicts = json.loads((tmp_path / "checked" / "verdicts.json").read_text())["verdicts"]
    [completeness] = [v for v in verdicts if v["check"] == "completeness"]
    assert completeness["status"] == "fail" and completeness["evidence"]["loss"]["kind"] == "load_end_missing"


def test_a_load_without_a_recorded_end_is_incomplete_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(SEED_RUN, run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["load_end_ns"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli(["check", str(run), "--out", str(tmp_path / "out"), "--checks", "only=starvation"])
    assert code == 4 and "the manifest records the load's start but not its end" in err, err
    cut = {"kind": "load_cut_short", "subject": "load", "reason": "rmt run got SIGTERM: the load ran 2.0 s of 5 s"}
    RunDir(run, create=False).update_manifest(losses=[cut])  # the cut-short loss says it already: not twice
    code, _, _ = cli(["check", str(run), "--out", str(tmp_path / "out2"), "--checks", "only=starvation"])
    verdicts = json.loads((tmp_path / "out2" / "verdicts.json").read_text())["verdicts"]
    assert code == 4 and [v["evidence"]["loss"]["kind"] for v in verdicts if v["check"] == "completeness"] == [
        "load_cut_short"]


def test_collector_sigkilled_and_restarted_into_the_same_run(tmp_path: Path) -> None:
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    run = tmp_path / "run"
    argv = [*RMT, "collect", "--pid", str(watched.pid), "--out", str(run), "--no-api", "--sources", "process",
            "--interval", "0.1"]
    try:
        first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = run / "samples.jsonl"
        _poll("20 samples", lambda: samples.exists() and samples.read_bytes().count(b"\n") >= 20)
        with samples.open("ab") as fh:  # what a kill mid-write leaves: a torn last line
            fh.write(b'{"collector":"local","seq":')
        first.send_signal(signal.SIGKILL)
        killed_ns = time.time_ns()
        first.wait(timeout=10)
        kept = [json.loads(line) for line in samples.read_text().splitlines()[:-1]]
        assert killed_ns - max(r["t_epoch_ns"] for r in kept) <= 2_000_000_000  # at most 2 s of samples lost
        subprocess.run([*argv, "--duration", "2"], check=True, capture_output=True, timeout=60)
    finally:
        watched.kill()
        watched.wait(timeout=10)
    rd = RunDir(run, create=False)
    declared: dict[int, tuple[str, dict[str, str]]] = {}
    for rec in rd.read("series.jsonl"):  # a series keeps its id across the restart, no id names two series
        assert declared.setdefault(rec["id"], (rec["measure"], rec["labels"])) == (rec["measure"], rec["labels"])
    rows = list(rd.read("samples.jsonl"))  # the torn line was cut: every line reads
    assert len(rows) > len(kept) + 5
    seqs = [r["seq"] for r in rows]
    assert len(set(seqs)) == len(seqs)  # the restart numbers on
    code, _, err = cli(["check", str(run), "--out", str(tmp_path / "out")])
    assert code in (0, 3, 4) and "Traceback" not in err, err


def test_rmt_check_on_a_run_that_lost_a_worker_exits_incomplete(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(SEED_RUN, run)
    loss = {"kind": "worker_lost", "subject": "worker w2", "reason": "stopped heartbeating", "windows_lost": 7}
    RunDir(run, create=False).update_manifest(losses=[loss])
    code, out, err = cli(["check", str(run), "--out", str(tmp_path / "out"), "--checks", "only=starvation"])
    assert code == 4, out + err  # the starvation verdicts pass, yet the run is not green
    assert err.startswith("rmt: error: the run is incomplete (worker w2: stopped heartbeating; 7 window(s) lost)")
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())["verdicts"]
    [completeness] = [v for v in verdicts if v["check"] == "completeness"]
    assert completeness["status"] == "fail" and completeness["measured"] == 7
    starvation = [v for v in verdicts if v["check"] == "starvation"]
    assert starvation and all(v["status"] == "pass" and "[on incomplete data: worker w2" in v["explanation"]
                              for v in starvation)
    RunDir(run, create=False).update_manifest(losses=[])
    code, _, err = cli(["check", str(run), "--out", str(tmp_path / "out2"), "--checks", "only=starvation"])
    assert code == 0, err


def test_server_sigkilled_and_restarted_on_the_same_ports(tmp_path: Path) -> None:
    """tritonserver SIGKILLed under load and started again on its three ports: the run goes on, the collector inside
    the Locust master finds the new server, memory is judged per server lifetime, and the run is INCOMPLETE."""
    pytest.importorskip("tritonclient")
    repo = zoo_subset(tmp_path / "repo", ["probe"])
    first = EmbeddedServer(ServerOptions(model_repository=repo))
    first.start()
    second: EmbeddedServer | None = None
    try:
        definition = tmp_path / "probe.json"
        definition.write_text(json.dumps({**DEFINITION, "checks": {"only": "leak, completeness",
                                                                    "leak.series": "process_rss_bytes*"},
                                          "run": {"users": 4, "duration_s": 16}}))
        run = tmp_path / "run"
        proc = subprocess.Popen([*RMT, "run", str(definition), "--host", first.http_url, "--out", str(run)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _poll("4 s of load", lambda: time.time_ns() > _load_start_ns(run) + 4_000_000_000)
        old_pid = first.pid
        os.kill(old_pid, signal.SIGKILL)
        first.stop()
        second = EmbeddedServer(ServerOptions(model_repository=repo, http_port=first.http_port,  # in TIME_WAIT
                                              grpc_port=first.grpc_port, metrics_port=first.metrics_port))
        second.start()
        new_pid = second.pid
        out, _ = proc.communicate(timeout=150)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert proc.returncode == 4, out  # a restart is a loss: never green
    verdicts = json.loads((run / "verdicts.json").read_text())["verdicts"]
    lost = {v["subject"] for v in verdicts if v["check"] == "completeness" and v["status"] == "fail"}
    # the restart, and the old server's silence until the new one answered (the downtime)
    assert lost == {"tritonserver restart 1", f"tritonserver pid {old_pid} samples"}, lost
    pids = {rec["labels"].get("pid") for rec in RunDir(run, create=False).read("series.jsonl")
            if rec["measure"] == "process_rss_bytes" and rec["labels"].get("role") == "server"}
    assert pids == {str(old_pid), str(new_pid)}, pids  # the collector followed the server to its new PID
    subjects = [v["subject"] for v in verdicts if v["check"] == "leak"]
    assert len(subjects) == len(set(subjects)), subjects  # the old and the new stub are two subjects
    stub = sorted(s.rsplit(" ", 1)[1] for s in subjects if "instance=probe_0_0," in s)
    assert stub == ["1", "2"] and all(s.rsplit(" ", 2)[1] == "lifetime" for s in subjects), subjects
