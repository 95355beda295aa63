"""The embedded server: start/stop leaves nothing behind, side-by-side servers, the CLI contract, clear errors."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as httpclient

from rmt.core.errors import ConfigError, ServerError, ServerExtraMissing, ServerStartError
from rmt.core.resources import REFUSED_REPOSITORY
from rmt.core.tritonflags import parse_rate_limit_resource
from rmt.install import find_triton_install
from rmt.server import OWNER_FILE, EmbeddedServer, ServerOptions, check_port_free, remove_orphans
from tests.zoo_client import infer, wait_for, zoo_subset

#: The folder holding the ``rmt`` package (a checkout's root).
SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)

RMT = [sys.executable, "-m", "rmt"]  # the `rmt` console script, without needing it on PATH
READY_RE = re.compile(
    r"^ready http=127\.0\.0\.1:(\d+) grpc=127\.0\.0\.1:(\d+) metrics=127\.0\.0\.1:(\d+) pid=(\d+)$")


@pytest.fixture
def probe_repo(tmp_path: Path) -> Path:
    return zoo_subset(tmp_path / "repo", ["probe", "leak_host"])


def _lives(proc: psutil.Process | int) -> bool:
    """Whether the process runs (a zombie, or one gone meanwhile, does not)."""
    try:
        proc = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _left_behind(pids: list[int], shm_prefix: str) -> list[str]:
    alive = [f"pid {p}" for p in pids if _lives(p)]
    regions = [p.name for p in Path("/dev/shm").glob(f"{shm_prefix}*")]
    return alive + regions


def test_start_stop_leaves_no_process_shm_or_tempdir(probe_repo: Path) -> None:
    server = EmbeddedServer(ServerOptions(model_repository=probe_repo)).start()
    procs = server.processes()
    pids = [p.pid for p in procs]
    assert [p.role for p in procs].count("stub") == 3, procs  # probe x2 + leak_host
    assert psutil.Process(server.pid).name() == "tritonserver"
    prefix = server.shm_prefix
    assert list(Path("/dev/shm").glob(f"{prefix}*")), "the python backend's regions carry our prefix"
    workdir = server.log_path.parent if server.log_path else None
    server.stop()
    assert _left_behind(pids, prefix) == []
    assert workdir is not None and not workdir.exists()
    server.stop()  # idempotent


def test_sigkilled_server_still_cleaned_up(probe_repo: Path) -> None:
    """Even when tritonserver dies hard (no graceful unload), stop() ends its stubs and removes its regions."""
    server = EmbeddedServer(ServerOptions(model_repository=probe_repo)).start()
    pids = [p.pid for p in server.processes()]
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not server.is_running(), 10, "tritonserver to die")
    server.stop()
    assert _left_behind(pids, server.shm_prefix) == []


def test_two_servers_side_by_side_on_automatic_ports(probe_repo: Path) -> None:
    with EmbeddedServer(ServerOptions(model_repository=probe_repo)) as a, \
            EmbeddedServer(ServerOptions(model_repository=probe_repo)) as b:
        ports_a = {a.http_port, a.grpc_port, a.metrics_port}
        ports_b = {b.http_port, b.grpc_port, b.metrics_port}
        assert len(ports_a | ports_b) == 6
        for server in (a, b):
            client = httpclient.InferenceServerClient(server.http_url)
            trace = infer(client, "probe", np.ones((1, 4))).as_numpy("TRACE")[0]
            client.close()
            assert int(trace[0]) in {p.pid for p in server.processes() if p.role == "stub"}


def test_explicit_mode_loads_only_named_models(probe_repo: Path) -> None:
    with EmbeddedServer(ServerOptions(model_repository=probe_repo, model_control_mode="explicit",
                                      load_models=["probe"])) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        states = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
        client.close()
    assert states["probe"] == "READY"
    assert states.get("leak_host") != "READY"


def test_warmup_bad_is_refused_with_tritons_message(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError) as err:
        EmbeddedServer(ServerOptions(model_repository=REFUSED_REPOSITORY)).start()
    message = str(err.value)
    assert "failed to load 'warmup_bad'" in message, message
    assert "data-type is 'INT32', but model 'warmup_bad' expects 'FP32'" in message, message


def test_too_small_rate_limit_budget_is_refused_with_tritons_message(tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", ["rl_high"])
    with pytest.raises(ServerStartError) as err:
        EmbeddedServer(ServerOptions(model_repository=repo, rate_limit_resources=["R1:1"])).start()
    assert 'Resource count for "R1" is limited to 1' in str(err.value)
    assert "the minimum required count is 2" in str(err.value)


@pytest.mark.parametrize(("spec", "parsed"), [("R1:4", ("R1", 4, None)), ("gpu_mem:10:1", ("gpu_mem", 10, 1))])
def test_rate_limit_resource_parsing(spec: str, parsed: tuple[str, int, int | None]) -> None:
    assert parse_rate_limit_resource(spec) == parsed


@pytest.mark.parametrize("spec", ["R1", "R1:x", ":4", "R1:4:0:1", "R1:-1"])
def test_rate_limit_resource_rejects_malformed(spec: str) -> None:
    with pytest.raises(ConfigError, match="NAME:COUNT"):
        parse_rate_limit_resource(spec)


def test_unsupported_python_for_stubs_names_the_available_ones() -> None:
    with pytest.raises(ServerError, match=r"no python-backend stub for Python 3\.7 .*have 3\.\d+"):
        find_triton_install().stub_for((3, 7))


def test_missing_server_extra_says_the_pip_command() -> None:
    """Without site-packages (``python -S``) the wheel is absent: the error names the install command."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from rmt.install import find_triton_install\n"
            "try:\n    find_triton_install()\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-S", "-c", code, SOURCE_ROOT], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "RMT_TRITON_HOME"}, timeout=60)
    assert out.stdout.startswith(ServerExtraMissing.__name__), out
    assert "pip install 'triton-rmt[server]'" in out.stdout


def test_cli_server_start_prints_ready_line_and_stops_on_sigint(probe_repo: Path) -> None:
    proc = subprocess.Popen([*RMT, "server", "start", "--model-repository", str(probe_repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # blocks until the server is ready (or the CLI died)
        match = READY_RE.match(line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        http_port, pid = int(match.group(1)), int(match.group(4))
        server = psutil.Process(pid)
        assert server.name() == "tritonserver"
        family = server.children(recursive=True)
        assert len(family) == 3
        with socket.create_connection(("127.0.0.1", http_port), timeout=5):
            pass
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not any(_lives(p) for p in [server, *family])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cli_error(*args: str) -> str:
    out = subprocess.run([*RMT, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmt: error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def test_cli_port_in_use_is_one_line_error(probe_repo: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _cli_error("server", "start", "--model-repository", str(probe_repo), "--http-port", str(port))
    assert f"port {port}" in line and "in use" in line and "--http-port" in line


def test_a_port_left_in_time_wait_is_free_for_a_new_server() -> None:
    """A server killed while clients were connected leaves its port's connections in TIME_WAIT; tritonserver binds
    with SO_REUSEADDR, so restarting on the same ports must not be refused as "in use"."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tritonserver's listeners
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server's side closes first: its end (on ``port``) goes to TIME_WAIT
    listener.close()
    wait_for(lambda: client.recv(1) == b"", 5, "the client to see the close")
    client.close()
    with socket.socket() as plain, pytest.raises(OSError):  # the case: a bind without SO_REUSEADDR is refused
        plain.bind(("127.0.0.1", port))
    check_port_free("127.0.0.1", port, "--http-port")


def test_cli_missing_repository_is_one_line_error(tmp_path: Path) -> None:
    line = _cli_error("server", "start", "--model-repository", str(tmp_path / "nope"))
    assert "does not exist" in line and "--model-repository" in line


def test_cli_bad_flag_values_are_one_line_errors(probe_repo: Path) -> None:
    assert "NAME:COUNT" in _cli_error("server", "start", "--rate-limit-resource", "R1")
    assert "--http-port" in _cli_error("server", "start", "--http-port", "70000")
    assert "invalid int value" in _cli_error("server", "start", "--grpc-port", "abc")


def test_cli_start_failure_names_tritons_reason_then_log_tail() -> None:
    out = subprocess.run([*RMT, "server", "start", "--model-repository", str(REFUSED_REPOSITORY)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 2
    first, *rest = out.stderr.strip().splitlines()
    assert first.startswith("rmt: error: tritonserver exited") and "warmup_bad" in first, first
    assert rest and rest[0] == "rmt: last lines of the tritonserver log:"
    assert "Traceback" not in out.stderr


def test_describe_records_endpoints_and_options_for_the_manifest(probe_repo: Path) -> None:
    with EmbeddedServer(ServerOptions(model_repository=probe_repo, rate_limit_resources=["R1:4"])) as server:
        info = server.describe()
        assert info["pid"] == server.pid and info["http_url"] == server.http_url
    assert info["options"]["rate_limit_resources"] == ["R1:4"]
    assert info["options"]["model_repository"] == str(probe_repo)
    assert json.loads(json.dumps(info)) == info  # serialisable as is


def test_options_reach_tritonserver(tmp_path: Path) -> None:
    """Pinned pool size, raw extra flags and log verbosity are passed through (seen in metrics and log).

    On a CPU-only machine the pinned pool cannot be allocated (its metric reads 0), so its size is read from the
    option table tritonserver prints at start."""
    import urllib.request

    repo = zoo_subset(tmp_path / "repo", ["cold_start_warmed"])
    options = ServerOptions(model_repository=repo, pinned_memory_pool_bytes=64 * 1024 * 1024, log_verbose=1,
                            metrics_interval_ms=500, extra_args=["--metrics-config=summary_latencies=true"])
    with EmbeddedServer(options) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        infer(client, "cold_start_warmed", np.ones((1, 4)))
        client.close()
        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        log = server.log_tail(5000)
    assert re.search(r"pinned_memory_pool_byte_size\s*\|\s*67108864\s*\|", log)
    assert "nv_inference_request_summary_us" in metrics
    assert "is running warmup sample 'cold_start_sample'" in log


def test_server_dies_with_a_killed_parent(probe_repo: Path) -> None:
    """A tool or test killed hard (SIGKILL) must not leave tritonserver and its stubs behind."""
    code = ("import sys; from pathlib import Path; from rmt.server import EmbeddedServer, ServerOptions\n"
            "s = EmbeddedServer(ServerOptions(model_repository=Path(sys.argv[1]))).start()\n"
            "print(s.pid, *[p.pid for p in s.processes()], flush=True)\n"
            "print(s.log_path.parent, s.shm_prefix, flush=True); sys.stdin.read()")
    parent = subprocess.Popen([sys.executable, "-c", code, str(probe_repo)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 5, pids  # server (twice: as pid and in processes()) + 3 stubs
    folder, prefix = parent.stdout.readline().split()
    assert (Path(folder) / OWNER_FILE).exists()
    family = [psutil.Process(p) for p in set(pids)]
    parent.kill()
    parent.wait()

    def all_gone() -> bool:
        return not any(_lives(p) for p in family)

    wait_for(all_gone, 60, "tritonserver and its stubs to end after their parent was killed")
    # stop() never ran: its temporary folder is left, until the next server start (or remove_orphans) clears it.
    assert Path(folder).exists()
    assert Path(folder) in remove_orphans()
    assert not Path(folder).exists() and not list(Path("/dev/shm").glob(f"{prefix}*"))


def test_remove_orphans_only_takes_folders_whose_owner_and_server_ended(tmp_path: Path) -> None:
    me = psutil.Process()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    owners = {
        "live": {"pid": me.pid, "started": me.create_time()},
        "reused": {"pid": me.pid, "started": me.create_time() - 3600},  # our PID, another process' start: ended
        "ended": {"pid": ended.pid, "started": me.create_time()},
        "server_lives": {"pid": ended.pid, "started": 0, "server_pid": me.pid, "server_started": me.create_time()},
    }
    for name, owner in owners.items():
        (tmp_path / f"rmt-triton-{name}").mkdir()
        (tmp_path / f"rmt-triton-{name}" / OWNER_FILE).write_text(json.dumps(owner))
    (tmp_path / "rmt-triton-no_owner").mkdir()  # another tool's, or an older rmt's: not ours to judge
    (tmp_path / "rmt-triton-bad").mkdir()
    (tmp_path / "rmt-triton-bad" / OWNER_FILE).write_text("{")
    removed = remove_orphans(tmp_path)
    assert sorted(p.name for p in removed) == ["rmt-triton-ended", "rmt-triton-reused"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rmt-triton-bad", "rmt-triton-live", "rmt-triton-no_owner",
                                                          "rmt-triton-server_lives"]
