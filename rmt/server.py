"""The embedded, real Triton Inference Server: start, wait for readiness, stop leaving nothing behind.

>>> with EmbeddedServer(ServerOptions()) as server:   # the zoo, free ports on 127.0.0.1
...     print(server.http_url, server.pid)

The server runs in its own process session (so its python-backend stubs can be found and ended with it), logs to a
file in a private temporary folder, uses a unique ``/dev/shm`` prefix for the python backend's shared-memory regions,
and on :meth:`EmbeddedServer.stop` is sent SIGTERM, then SIGKILL after its exit timeout; stubs, shared-memory regions
and the temporary folder are removed in every case.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from rmt.core.errors import ConfigError, ServerStartError
from rmt.core.procs import TritonProcess, triton_processes
from rmt.core.resources import ZOO_REPOSITORY
from rmt.core.tritonflags import parse_rate_limit_resource
from rmt.install import PythonRuntime, TritonInstall, find_triton_install, python_runtime

LOOPBACK = "127.0.0.1"

WORKDIR_PREFIX = "rmt-triton-"
OWNER_FILE = "owner.json"
"""In each server's temporary folder: who started it (PID, start time), its tritonserver and its shm prefix."""


def _alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` runs (not a zombie) and is the one that started at ``started``, not a reused PID."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def remove_regions(prefix: str) -> None:
    """Unlink the python backend's ``/dev/shm`` regions named ``<prefix>*`` (those already gone are fine)."""
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            region.unlink()


def remove_orphans(tmp: Path | None = None) -> list[Path]:
    """Remove what embedded servers left when their owner was killed (SIGKILL skips ``stop``): each temporary folder
    whose owner and tritonserver have both ended, and the owner's ``/dev/shm`` regions. Folders without an owner file
    (other tools', older rmt's) are left alone. Returns the folders removed."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = json.loads((folder / OWNER_FILE).read_text())
            pids = [(int(owner["pid"]), float(owner["started"])),
                    (int(owner.get("server_pid") or 0), float(owner.get("server_started") or 0))]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if any(pid > 0 and _alive(pid, started) for pid, started in pids):
            continue
        prefix = str(owner.get("shm_prefix") or "")
        if prefix.startswith("rmt"):
            remove_regions(prefix)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


_BENIGN_LOG = ("CudaDriverHelper", "NVML", "DCGM", "GPU metrics", "Unable to get GPU")
_PORT_IN_USE = "Address already in use"


@dataclass
class ServerOptions:
    """Everything tritonserver is started with; ``None`` means tritonserver's own default (ports: a free one)."""

    model_repository: Path = ZOO_REPOSITORY
    host: str = LOOPBACK
    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    rate_limit: str | None = None
    """``execution_count`` or ``off``; implied ``execution_count`` when resources are given."""
    rate_limit_resources: list[str] = field(default_factory=list)
    """Each ``NAME:COUNT[:DEVICE]``."""
    model_control_mode: str = "none"
    load_models: list[str] = field(default_factory=list)
    """Models to load at start in ``explicit`` mode (``*`` for all)."""
    metrics_interval_ms: int | None = None
    log_verbose: int = 0
    pinned_memory_pool_bytes: int | None = None
    cache_size_bytes: int | None = None
    """Triton's local response cache of this many bytes (``--cache-config local,size=N``, the wheel's
    ``caches`` folder as ``--cache-directory``); ``None``: no cache (models with ``response_cache`` are not cached)."""
    exit_timeout_s: int = 30
    extra_args: list[str] = field(default_factory=list)
    """Raw tritonserver flags appended as given, e.g. ``--metrics-config=summary_latencies=true``."""
    ready_timeout_s: float = 180.0
    log_path: Path | None = None
    """Where tritonserver's log goes; default: a private temporary folder removed on stop."""
    die_with_parent: bool = True
    """Linux: tritonserver gets SIGTERM when the thread that started it dies (``PR_SET_PDEATHSIG``), so a killed
    test or tool never leaves a server behind. Start the server from a thread that outlives it (the main thread)."""

    def validate(self) -> None:
        """Raise ConfigError naming the fix for the first inconsistent option."""
        if not self.model_repository.is_dir():
            raise ConfigError(
                f"model repository {self.model_repository} does not exist: pass an existing folder "
                f"with --model-repository (default: the zoo in {ZOO_REPOSITORY})"
            )
        for spec in self.rate_limit_resources:
            parse_rate_limit_resource(spec)
        if self.rate_limit not in (None, "execution_count", "off"):
            raise ConfigError(f"bad --rate-limit {self.rate_limit!r}: use execution_count or off")
        if self.rate_limit == "off" and self.rate_limit_resources:
            raise ConfigError("--rate-limit-resource needs the rate limiter: drop --rate-limit off")
        if self.model_control_mode not in ("none", "explicit"):
            raise ConfigError(f"bad --model-control-mode {self.model_control_mode!r}: use none or explicit")
        if self.load_models and self.model_control_mode != "explicit":
            raise ConfigError("--load-model needs --model-control-mode explicit")
        for name, port in (("http", self.http_port), ("grpc", self.grpc_port), ("metrics", self.metrics_port)):
            if port is not None and not 0 < port < 65536:
                raise ConfigError(f"bad --{name}-port {port}: use 1-65535, or leave it out for a free port")
        if self.cache_size_bytes is not None and self.cache_size_bytes <= 0:
            raise ConfigError(f"bad --cache-size-bytes {self.cache_size_bytes}: give the cache size in bytes (> 0)")
        if self.log_verbose < 0 or self.exit_timeout_s < 0:
            raise ConfigError("--log-verbose and --exit-timeout must not be negative")


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free on ``host`` a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int, flag: str) -> None:
    """Raise ConfigError when ``host:port`` cannot be bound by a listener.

    Bound with ``SO_REUSEADDR``, as tritonserver's listeners are: a port whose only sockets are connections in
    TIME_WAIT (the server on it was just stopped or killed while clients were connected) is free for a new server;
    a port another process listens on is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(f"cannot bind {host}:{port} ({exc.strerror}): choose another {flag}") from exc
            raise ConfigError(
                f"port {port} on {host} is in use: choose another with {flag}, or leave it out for a free port"
            ) from exc


def _parent_death_signal(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent dies (Linux ``prctl``)."""
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


def summarize_log(tail: str) -> str:
    """The most telling error line of a tritonserver log tail (Triton's own words), or ''."""
    candidates: list[str] = []
    for line in tail.splitlines():
        text = line.strip()
        if any(b in text for b in _BENIGN_LOG):
            continue
        if re.match(r"^E\d{4}", text) and "]" in text:
            message = text.split("]", 1)[1].strip()
            with contextlib.suppress(ValueError):
                message = json.loads(message) if message.startswith('"') else message  # Triton quotes as JSON
            candidates.append(message)
        elif text.startswith("error:") or "Error:" in text[:20]:
            candidates.append(text)
    specific = [c for c in candidates if "failed to load all models" not in c]
    named = [c for c in specific if "failed to load '" in c or "Resource count" in c]
    return (named or specific or candidates or [""])[0]


class EmbeddedServer:
    """A real tritonserver child process, staged from the ``nvidia-pytriton`` wheel and bound to loopback."""

    def __init__(self, options: ServerOptions | None = None, *, install: TritonInstall | None = None,
                 python_executable: str | None = None) -> None:
        self.options = options or ServerOptions()
        self._install = install
        self._python_executable = python_executable
        self._runtime: PythonRuntime | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None
        self._shm_prefix = ""
        self._known_children: dict[int, psutil.Process] = {}
        self.http_port = 0
        self.grpc_port = 0
        self.metrics_port = 0

    # -- public view -------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """PID of the tritonserver process itself."""
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    @property
    def host(self) -> str:
        """The address all three endpoints are bound to."""
        return self.options.host

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP/REST endpoint (what tritonclient.http expects)."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics page."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def shm_prefix(self) -> str:
        """Prefix of this server's python-backend ``/dev/shm`` regions."""
        return self._shm_prefix

    @property
    def log_path(self) -> Path | None:
        """tritonserver's log file (removed on stop unless ``options.log_path`` was given)."""
        return self._log_path

    def ready_line(self) -> str:
        """The one-line ready contract printed by ``rmt server start``."""
        return (f"ready http={self.http_url} grpc={self.grpc_url} "
                f"metrics={self.host}:{self.metrics_port} pid={self.pid}")

    def describe(self) -> dict[str, Any]:
        """What a run's ``manifest.json`` records under ``server``: endpoints, PID and every option.

        Checkers read ``server.options`` (rate limit, resources, model repository) to judge offline.
        """
        options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()}
        return {"embedded": True, "http_url": self.http_url, "grpc_url": self.grpc_url,
                "metrics_url": self.metrics_url, "pid": self.pid if self._proc else None, "options": options}

    def is_running(self) -> bool:
        """Whether the tritonserver process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def processes(self) -> list[TritonProcess]:
        """The server and its python-backend stubs, with model and instance names."""
        return triton_processes(self.pid) if self.is_running() else []

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-lines:])

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> EmbeddedServer:
        """Start tritonserver and block until it reports ready; raise ServerStartError with its log on failure."""
        if self._proc is not None:
            raise RuntimeError("server already started")
        opts = self.options
        opts.validate()
        for flag, port in (("--http-port", opts.http_port), ("--grpc-port", opts.grpc_port),
                           ("--metrics-port", opts.metrics_port)):
            if port is not None:
                check_port_free(opts.host, port, flag)
        install = self._install or find_triton_install()
        remove_orphans()
        self._workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        self._write_owner()
        atexit.register(self.stop)
        try:
            self._runtime = python_runtime(self._python_executable)
            install.stage_backends(self._workdir / "backends", self._runtime.version)
            auto_ports = None in (opts.http_port, opts.grpc_port, opts.metrics_port)
            for attempt in range(3):
                self._launch(install)
                try:
                    self._wait_ready()
                    return self
                except ServerStartError as err:
                    retry = auto_ports and _PORT_IN_USE in err.log_tail and attempt < 2
                    self._terminate()
                    if not retry:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _command(self, install: TritonInstall) -> list[str]:
        opts = self.options
        assert self._workdir is not None
        cmd = [
            str(install.binary),
            f"--model-repository={opts.model_repository.resolve()}",
            f"--backend-directory={self._workdir / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--http-address={opts.host}", f"--grpc-address={opts.host}", f"--metrics-address={opts.host}",
            f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={opts.model_control_mode}",
            f"--log-verbose={opts.log_verbose}",
            f"--exit-timeout-secs={opts.exit_timeout_s}",
        ]
        rate_limit = opts.rate_limit or ("execution_count" if opts.rate_limit_resources else None)
        if rate_limit:
            cmd.append(f"--rate-limit={rate_limit}")
        cmd += [f"--rate-limit-resource={spec}" for spec in opts.rate_limit_resources]
        cmd += [f"--load-model={name}" for name in opts.load_models]
        if opts.metrics_interval_ms is not None:
            cmd.append(f"--metrics-interval-ms={opts.metrics_interval_ms}")
        if opts.pinned_memory_pool_bytes is not None:
            cmd.append(f"--pinned-memory-pool-byte-size={opts.pinned_memory_pool_bytes}")
        if opts.cache_size_bytes is not None:
            cmd += [f"--cache-config=local,size={opts.cache_size_bytes}",
                    f"--cache-directory={install.server_dir / 'caches'}"]
        return cmd + list(opts.extra_args)

    def _launch(self, install: TritonInstall) -> None:
        opts = self.options
        assert self._workdir is not None
        self.http_port = opts.http_port or free_port(opts.host)
        self.grpc_port = opts.grpc_port or free_port(opts.host)
        self.metrics_port = opts.metrics_port or free_port(opts.host)
        while len({self.http_port, self.grpc_port, self.metrics_port}) < 3:
            self.metrics_port = free_port(opts.host)
        self._shm_prefix = f"rmt{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        env = dict(os.environ)
        assert self._runtime is not None
        libdir = str(self._runtime.libdir) if self._runtime.libdir else None
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.libs_dir), libdir,
                                                               env.get("LD_LIBRARY_PATH")]))
        # The stub runs the python3 first on PATH: it must be this interpreter's, which has numpy and rmt.
        env["PATH"] = os.pathsep.join(filter(None, [str(self._runtime.bin_dir), env.get("PATH")]))
        self._log_path = opts.log_path or self._workdir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab" if opts.log_path else "wb") as log:
            preexec = _parent_death_signal(os.getpid()) if opts.die_with_parent and sys.platform == "linux" else None
            self._proc = subprocess.Popen(
                self._command(install), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self._workdir, start_new_session=True, preexec_fn=preexec,
            )
        self._write_owner()

    def _write_owner(self) -> None:
        """Record who owns the temporary folder (see :func:`remove_orphans`)."""
        assert self._workdir is not None
        me = psutil.Process()
        owner: dict[str, Any] = {"pid": me.pid, "started": me.create_time(), "server_pid": 0, "server_started": 0,
                                 "shm_prefix": self._shm_prefix}
        if self._proc is not None:
            with contextlib.suppress(psutil.Error):
                owner.update(server_pid=self._proc.pid, server_started=psutil.Process(self._proc.pid).create_time())
        tmp = self._workdir / f".{OWNER_FILE}"
        tmp.write_text(json.dumps(owner))
        tmp.replace(self._workdir / OWNER_FILE)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.options.ready_timeout_s
        delay = 0.05
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = self.log_tail(40)
                reason = summarize_log(self.log_tail(5000)) or f"see {self._log_path}"
                raise ServerStartError(f"tritonserver exited with code {rc} before it was ready: {reason}", tail)
            if self._health_ready():
                self._remember_children()
                return
            if time.monotonic() > deadline:
                tail = self.log_tail(40)
                raise ServerStartError(
                    f"tritonserver not ready after {self.options.ready_timeout_s:.0f} s "
                    f"(raise --ready-timeout or look at the log): {summarize_log(self.log_tail(5000))}", tail)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _health_ready(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.http_port, timeout=2)
        try:
            conn.request("GET", "/v2/health/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _remember_children(self) -> None:
        """Keep handles on the stubs so they can be ended even if the server dies first."""
        if self._proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self._proc.pid).children(recursive=True):
                self._known_children.setdefault(child.pid, child)

    def _terminate(self) -> None:
        """End tritonserver (SIGTERM, then SIGKILL to its process group) and every stub it started."""
        proc = self._proc
        if proc is None:
            return
        self._remember_children()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.options.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session: pgid == pid
                proc.wait(timeout=10)
        for child in list(self._known_children.values()):
            with contextlib.suppress(psutil.Error):
                if child.is_running():  # psutil checks the creation time: never a recycled PID
                    child.kill()
                    child.wait(timeout=5)
        self._known_children.clear()
        if self._shm_prefix:
            remove_regions(self._shm_prefix)
        self._proc = None

    def stop(self) -> None:
        """Stop the server and remove everything it left (stubs, shared memory, temporary folder). Idempotent."""
        try:
            self._terminate()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            atexit.unregister(self.stop)
