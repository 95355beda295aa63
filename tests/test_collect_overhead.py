"""The collector's cheap paths give the same answers as the expensive ones they replaced: ``/proc`` reads against
psutil, the small HTTP client against real servers, the line-diffing metrics parser, inline sources sharing a
thread, the tree re-read on a shared-memory change, USS from the helper thread."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest

from rmt.collect.core import Collector
from rmt.collect.http_get import HttpGetter
from rmt.collect.process_tree import USS_CPU_SHARE, ProcessTreeSource
from rmt.collect.procfs import ProcFiles
from rmt.collect.series import Point, Reading, labels_of
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget
from rmt.collect.triton_metrics import MetricsParser
from rmt.core.errors import SourceUnavailable
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE
from tests.zoo_client import wait_for

MIB = 2**20


# -- /proc -----------------------------------------------------------------------------------------------------
def test_procfs_reads_what_psutil_reads() -> None:
    me = psutil.Process()
    files = ProcFiles(os.getpid())
    try:
        assert abs(files.rss_bytes() - me.memory_info().rss) < 8 * MIB  # the same counter, read a moment apart
        threads, cpu_s = files.threads_and_cpu_s()
        assert threads == me.num_threads()
        times = me.cpu_times()
        assert abs(cpu_s - (times.user + times.system)) < 0.5
        assert abs(files.open_fds() - me.num_fds()) <= 2  # listing the folder may open one
        assert abs(files.uss_bytes() - me.memory_full_info().uss) < 8 * MIB
        ballast = bytearray(64 * MIB)  # the kept-open file shows the change: pread regenerates the text
        ballast[::4096] = b"x" * len(ballast[::4096])
        assert files.rss_bytes() >= me.memory_info().rss - 8 * MIB >= 60 * MIB
        del ballast
    finally:
        files.close()


def test_procfs_ended_and_zombie_processes_are_gone_never_zero() -> None:
    # The process is the child of a parent of ours that never reaps it, so it stays a zombie however this test
    # process handles SIGCHLD (a gevent child watcher, loaded by other tests, reaps this process's own children).
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True)\n"
         "sys.stdin.readline(); p.wait(); print('reaped', flush=True); time.sleep(60)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    pid = int(parent.stdout.readline())
    files = ProcFiles(pid)
    try:
        assert files.rss_bytes() > 0
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10, "a zombie")
        for read in (files.rss_bytes, files.threads_and_cpu_s, files.uss_bytes):
            with pytest.raises(ProcessLookupError):
                read()
        parent.stdin.write("reap\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "reaped\n"
        with pytest.raises(ProcessLookupError):
            files.rss_bytes()
    finally:
        files.close()
        parent.kill()
        parent.wait()
        parent.stdin.close()
        parent.stdout.close()
    with pytest.raises(ProcessLookupError):
        ProcFiles(pid)


# -- HTTP ------------------------------------------------------------------------------------------------------
class _Pages(BaseHTTPRequestHandler):
    """HTTP/1.1 pages in every framing the client reads, and the ways a server can fail."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[int]] = set()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).connections.add(self.client_address[1])
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"a" * 5000, b"b" * 17, b"c"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(1.0)
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"x")
        elif self.path == "/missing":
            self.send_error(404, "Not Found")
        else:
            body = self.path.encode() * 4000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def pages() -> Iterator[str]:
    _Pages.connections = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_client_reads_every_framing_on_one_kept_alive_connection(pages: str) -> None:
    http = HttpGetter()
    try:
        for _ in range(3):
            assert http.get(f"{pages}/page", 5) == b"/page" * 4000
        assert len(_Pages.connections) == 1  # kept alive
        assert http.get(f"{pages}/chunked", 5) == b"a" * 5000 + b"b" * 17 + b"c"
        assert http.get(f"{pages}/close", 5) == b"until close"
        assert http.get(f"{pages}/page", 5) == b"/page" * 4000  # a fresh connection after the close
        with pytest.raises(SourceUnavailable, match="HTTP 404"):
            http.get(f"{pages}/missing", 5)
        with pytest.raises(SourceUnavailable, match="timeout"):
            http.get(f"{pages}/slow", 0.2)
        assert http.get(f"{pages}/page", 5) == b"/page" * 4000
    finally:
        http.close()


@contextlib.contextmanager
def raw_server(answers: list[bytes]) -> Iterator[str]:
    """``http://127.0.0.1:PORT``: one connection per answer, each reading one request, answering, then closing."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(5)


def test_http_client_retries_a_kept_alive_connection_the_server_closed() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # then the server closes without saying so
    http = HttpGetter()
    with raw_server([ok, ok]) as url:
        try:
            assert http.get(f"{url}/", 5) == b"ok"
            time.sleep(0.1)
            assert http.get(f"{url}/", 5) == b"ok"  # the stale connection failed once: retried on a fresh one
        finally:
            http.close()


def test_http_client_refuses_what_is_not_http() -> None:
    with raw_server([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]) as url, \
            pytest.raises(SourceUnavailable, match="failed: not an HTTP response"):
        HttpGetter().get(f"{url}/metrics", 5)


# -- Triton metrics ----------------------------------------------------------------------------------------------
PAGE = """\
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="a",version="1"} 10
nv_inference_count{model="b",version="1"} 20
nv_pinned_memory_pool_used_bytes 0
nv_future_metric_rmt_does_not_know{model="a",version="1"} 3
"""


def test_parser_reuses_an_unchanged_page_and_reparses_only_changed_lines() -> None:
    parser = MetricsParser()
    first = parser.parse(PAGE)
    assert parser.parse(PAGE) is first  # an unchanged page: the very same points
    changed = PAGE.replace('{model="b",version="1"} 20', '{model="b",version="1"} 25') + (
        'nv_inference_count{model="c",version="1"} 1\n')
    points = {(p.measure, p.labels): p.value for p in parser.parse(changed)}
    assert points[("nv_inference_count", labels_of(model="a", version="1"))] == 10
    assert points[("nv_inference_count", labels_of(model="b", version="1"))] == 25
    assert points[("nv_inference_count", labels_of(model="c", version="1"))] == 1
    assert len(points) == 4
    unchanged_points = [p for p in parser.parse(changed) if dict(p.labels).get("model") == "a"]
    assert unchanged_points == [p for p in first if dict(p.labels).get("model") == "a"]
    with pytest.raises(SourceUnavailable, match="malformed"):
        parser.parse(changed + 'nv_inference_count{model="d" 3\n')
    assert parser.parse(changed)[-1].value == 1  # the bad page changed nothing


# -- the sampling loop ---------------------------------------------------------------------------------------------
class Inline:
    """An inline source under the test's control."""

    inline = True
    timeout_s = 1.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.reads = 0
        self.fail: str | None = None
        self.same: list[Point] | None = None
        self.thread = ""

    def open(self) -> SourceInfo:
        return SourceInfo()

    def read(self) -> Reading:
        self.thread = threading.current_thread().name
        self.reads += 1
        if self.fail:
            raise SourceUnavailable(self.fail)
        if self.same is not None:
            return Reading(self.same)
        return Reading([Point("process_rss_bytes", labels_of(pid=1, name=self.name), float(self.reads))])

    def close(self) -> None:
        pass


def test_inline_sources_share_one_thread_and_keep_their_own_gaps(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    a, b = Inline("a"), Inline("b")
    b.same = [Point("process_rss_bytes", labels_of(pid=2, name="b"), 7.0)]  # the same list every tick: ids reused
    with Collector([a, b], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["a"].samples_total >= 3, 20, "samples")
        a.fail = "a is gone"
        wait_for(lambda: col.status["a"].errors_total >= 3, 20, "gaps of a")
        assert b.reads >= a.reads - 1  # b goes on while a fails
        wait_for(lambda: col.status["b"].samples_total >= 10, 20, "samples of b")
    assert a.thread == b.thread == "rmt-sample-a+b"
    rows = list(run.read(SAMPLES_FILE))  # stop() wrote every pending sample
    for name in ("a", "b"):
        mine = [r for r in rows if r["source"] == name]
        assert [r["tick"] for r in mine] == list(range(len(mine)))
    assert all(r["ok"] for r in rows if r["source"] == "b")
    assert {tuple(r["values"].values()) for r in rows if r["source"] == "b"} == {(7.0,)}
    gaps = [r for r in rows if r["source"] == "a" and not r["ok"]]
    assert gaps and all(r["error"] == "a is gone" and list(r["values"].values()) == [None] for r in gaps)


def test_samples_reach_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with Collector([Inline("a")], run_dir=run, interval_s=0.05, flush_interval_s=0.5) as col:
        wait_for(lambda: col.status["a"].samples_total >= 5, 20, "samples")
        emitted = col.status["a"].last_seq
        wait_for(lambda: (tmp_path / SAMPLES_FILE).exists()
                 and any(f'"seq":{emitted},' in line for line in (tmp_path / SAMPLES_FILE).read_text().splitlines()),
                 2.0, "the sample in the file within 2 s, nobody flushing")


# -- the process tree --------------------------------------------------------------------------------------------
def test_new_child_is_found_when_the_shared_memory_folder_changes(tmp_path: Path) -> None:
    target = ServerTarget(pid_provider=os.getpid, shm_dir=tmp_path, shm_check_s=0.1, tree_refresh_s=3600)
    before = {tp.proc.pid for tp in target.processes()}
    time.sleep(0.15)
    target.processes()  # the folder was checked twice: settled
    child = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.2)
        assert child.pid not in {tp.proc.pid for tp in target.processes()}  # nothing said the tree changed
        (tmp_path / "another_servers_region").write_bytes(b"")
        time.sleep(0.2)
        assert child.pid not in {tp.proc.pid for tp in target.processes()}  # not one of this server's regions
        (tmp_path / "triton_python_backend_shm_region_x").write_bytes(b"")  # what a new stub brings
        wait_for(lambda: child.pid in {tp.proc.pid for tp in target.processes()}, 10, "the child in the tree")
        assert before < {tp.proc.pid for tp in target.cached_processes()}
    finally:
        child.kill()
        child.wait()


def test_process_source_reads_uss_in_its_helper_and_reports_it_next_tick() -> None:
    target = ServerTarget(pid_provider=os.getpid)  # this process plays the server
    source = ProcessTreeSource(target, detail_every_s=0.01, uss_every_s=0.01)
    source.open()
    try:
        first = source.read()
        assert not [p for p in first.points if p.measure == "process_uss_bytes"]  # asked for, not read yet

        def uss() -> list[Point]:
            return [p for p in source.read().points if p.measure.endswith("uss_bytes")]

        points = wait_for(uss, 10, "USS from the helper")
        mine = {p.measure: p.value for p in points}
        assert mine["process_uss_bytes"] > MIB and not math.isnan(mine["process_tree_uss_bytes"])
        # A page walk of this process costs ~1 ms of CPU: 0.01 s apart that is 10 % of a core, over USS_CPU_SHARE,
        # so the next round waits until it fits the share.
        assert source.uss_round_cpu_s > 0
        assert source.uss_interval_s == pytest.approx(source.uss_round_cpu_s / USS_CPU_SHARE)
        assert source.uss_interval_s > 0.01
        time.sleep(0.02)
        detail = {p.measure for p in source.read().points}
        assert {"process_rss_bytes", "process_threads_count", "process_open_fds_count", "process_cpu_s"} <= detail
        assert any(t.name == "rmt-process-helper" for t in threading.enumerate())
    finally:
        source.close()
    assert not any(t.name == "rmt-process-helper" for t in threading.enumerate())


def test_an_ended_stub_is_noted_once_and_dropped_never_read_as_zero(tmp_path: Path) -> None:
    # The "server" is a process of ours that never reaps its child, so the killed "stub" stays a zombie however this
    # test process handles SIGCHLD (a gevent child watcher, loaded by other tests, reaps this process's own children).
    server = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert server.stdout is not None
    stub_pid = int(server.stdout.readline())
    target = ServerTarget(pid_provider=lambda: server.pid, shm_dir=tmp_path, tree_refresh_s=3600)
    clock = [time.monotonic()]
    source = ProcessTreeSource(target, detail_every_s=3600, uss_every_s=3600, monotonic=lambda: clock[0])
    try:
        source.open()
        wait_for(lambda: stub_pid in {tp.proc.pid for tp in target.cached_processes()}, 10, "the stub in the tree")

        def rss() -> dict[str, float]:
            return {dict(p.labels)["pid"]: p.value for p in source.read().points if p.measure == "process_rss_bytes"}

        wait_for(lambda: str(stub_pid) in rss(), 10, "the stub's RSS")
        os.kill(stub_pid, signal.SIGKILL)
        wait_for(lambda: psutil.Process(stub_pid).status() == psutil.STATUS_ZOMBIE, 10, "a zombie")
        reading = source.read()
        assert "1 process(es) ended during the read" in reading.note
        # left out, not 0 (a USS round that read the stub before it ended may still report that value)
        stub_points = [p for p in reading.points if dict(p.labels).get("pid") == str(stub_pid)]
        assert {p.measure for p in stub_points} <= {"process_uss_bytes"} and all(p.value > 0 for p in stub_points)
        clock[0] += 3601  # past a full period (exactly 3600 may round below it in float): every process, the totals
        again = source.read()  # the zombie may still be in the tree: not counted, not "ended" again
        assert "ended" not in again.note
        count = [p.value for p in again.points if p.measure == "process_tree_processes_count"]
        assert count == [len([p for p in again.points if p.measure == "process_rss_bytes"])]
    finally:
        source.close()
        server.kill()
        server.wait()
        server.stdout.close()


GROWER = ("import signal, time\nheld = []\n"
          "signal.signal(signal.SIGUSR1, lambda *_: held.append(bytearray(b'x') * (32 << 20)))\n"
          "def work(*_):\n    end = time.monotonic() + 0.3\n    while time.monotonic() < end: pass\n"
          "signal.signal(signal.SIGUSR2, work)\n"
          "import os; os.write(1, b'ready\\n'); time.sleep(60)")  # one write: lines never interleave


def test_idle_processes_are_read_at_full_ticks_moving_ones_at_every_tick() -> None:
    # A "server" of ours with two children: one stays idle, the other grows 32 MiB on SIGUSR1; SIGUSR2 makes a child
    # work 0.3 s without growing (a stub serving requests).
    server = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys, time\n"
         f"kids = [subprocess.Popen([sys.executable, '-c', {GROWER!r}]) for _ in range(2)]\n"
         "os.write(1, f'{kids[0].pid} {kids[1].pid}\\n'.encode()); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert server.stdout is not None
    lines = sorted(server.stdout.readline().strip() for _ in range(3))  # the children's lines may come first
    assert lines[1:] == ["ready", "ready"]  # SIGUSR1 handled from now on
    idle, mover = (int(p) for p in lines[0].split())
    clock = [1000.0]
    target = ServerTarget(pid_provider=lambda: server.pid, tree_refresh_s=3600)
    source = ProcessTreeSource(target, detail_every_s=1.0, uss_every_s=3600, monotonic=lambda: clock[0])

    def read_at(t: float) -> dict[str, set[int]]:
        clock[0] = 1000.0 + t
        by: dict[str, set[int]] = {}
        for p in source.read().points:
            by.setdefault(p.measure, set()).add(int(dict(p.labels).get("pid", dict(p.labels).get("server_pid", 0))))
        return by

    try:
        source.open()
        wait_for(lambda: {idle, mover} <= {tp.proc.pid for tp in target.cached_processes()}, 10, "the tree")
        everyone = {server.pid, idle, mover}
        first = read_at(0.0)  # full: every process, its details, the tree's totals
        assert first["process_rss_bytes"] == everyone == first["process_threads_count"]
        assert first["process_tree_rss_bytes"] == first["process_tree_processes_count"] == {server.pid}
        assert read_at(0.1)["process_rss_bytes"] == everyone  # first seen at 0.0: "moved" then
        read_at(1.0)  # full
        between = read_at(1.1)
        assert between["process_rss_bytes"] == {server.pid}  # the children did not move for a whole second
        assert "process_tree_rss_bytes" not in between and "process_threads_count" not in between
        before = psutil.Process(mover).memory_info().rss
        os.kill(mover, signal.SIGUSR1)
        wait_for(lambda: psutil.Process(mover).memory_info().rss > before + 16 * MIB, 10, "the mover grew")
        settled = [0]

        def still() -> bool:  # the same RSS at two polls: done growing
            rss = psutil.Process(mover).memory_info().rss
            same, settled[0] = rss == settled[0], rss
            return same

        wait_for(still, 10, "the mover to hold still")
        assert read_at(1.5)["process_rss_bytes"] == {server.pid}  # seen at the next full tick, not before
        assert read_at(2.0)["process_rss_bytes"] == everyone
        assert read_at(2.1)["process_rss_bytes"] == {server.pid, mover}  # moved: back at every tick
        assert read_at(2.9)["process_rss_bytes"] == {server.pid, mover}
        read_at(3.0)  # full: the mover held still since 2.0
        assert read_at(3.1)["process_rss_bytes"] == {server.pid}
        cpu = sum(psutil.Process(idle).cpu_times()[:2])
        os.kill(idle, signal.SIGUSR2)
        wait_for(lambda: sum(psutil.Process(idle).cpu_times()[:2]) > cpu + 0.2, 10, "the idle child to work")
        read_at(4.0)  # full: its CPU time moved
        assert read_at(4.1)["process_rss_bytes"] == {server.pid, idle}  # a serving stub is followed at every tick
    finally:
        source.close()
        for pid in (idle, mover):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.kill()
        server.wait()
        server.stdout.close()
