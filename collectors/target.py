"""Which tritonserver the sidecar watches: its PID (found again after a restart), process tree, endpoints, shm prefix.

The server is named by a PID, by its HTTP ``host:port`` (the PID is whoever listens there), or by a provider
callable (the embedded server). When the server dies the sources see no PID (a gap) until a server listens on the
same port again; the tree of stubs is re-read every ``tree_refresh_s`` and at once when the server changed or a
process ended, so the per-tick cost stays a few ``/proc`` reads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from rmt.errors import ConfigError
from rmt.procs import TritonProcess, describe, server_flag

#: The python backend's default ``shm-region-prefix-name``.
DEFAULT_SHM_PREFIX = "triton_python_backend_shm_region_"
DEFAULT_HTTP_PORT = 8000
DEFAULT_METRICS_PORT = 8002


def parse_host_port(url: str, flag: str) -> tuple[str, int]:
    """``host:port`` (or ``http://host:port/...``) → (host, port); ConfigError naming ``flag`` when malformed."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad {flag} {url!r}: write HOST:PORT, e.g. 127.0.0.1:8000")
    return host, int(port)


def find_listener_pid(port: int) -> int | None:
    """PID of the process listening on TCP ``port`` (any address), or None (also when not permitted to see it)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


@dataclass(frozen=True)
class TrackedProcess:
    """A process of the tree with its psutil handle (kept across ticks: no PID recycling surprises)."""

    info: TritonProcess
    proc: psutil.Process


class ServerTarget:
    """The watched server: PID resolution, cached process tree, metrics URL and shm prefix."""

    def __init__(self, *, pid: int | None = None, http_url: str | None = None, metrics_url: str | None = None,
                 shm_prefix: str | None = None, pid_provider: Callable[[], int | None] | None = None,
                 tree_refresh_s: float = 5.0, resolve_every_s: float = 0.5,
                 find_listener: Callable[[int], int | None] = find_listener_pid) -> None:
        if pid is None and http_url is None and pid_provider is None and metrics_url is None:
            raise ConfigError("nothing to watch: pass --pid PID or --server-url HOST:PORT (and --metrics-url)")
        self._fixed_pid = pid
        self._fixed_gone = False
        self._http_host = "127.0.0.1"
        self._http_port: int | None = None
        if http_url:
            self._http_host, self._http_port = parse_host_port(http_url, "--server-url")
        self._metrics_url = metrics_url
        self._shm_prefix = shm_prefix
        self._pid_provider = pid_provider
        self._find_listener = find_listener
        self.tree_refresh_s = tree_refresh_s
        self.resolve_every_s = resolve_every_s
        self._lock = threading.Lock()
        self._server: psutil.Process | None = None
        self._tree: list[TrackedProcess] = []
        self._tree_at = 0.0
        self._last_resolve = 0.0
        self.restarts = 0
        """How many times a different server process was found (a restart)."""

    # -- the server process --------------------------------------------------------------------------------------
    def _alive(self, proc: psutil.Process | None) -> bool:
        if proc is None:
            return False
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _candidate_pid(self) -> int | None:
        if self._pid_provider is not None:
            return self._pid_provider()
        if self._fixed_pid is not None and not self._fixed_gone:
            return self._fixed_pid
        if self._http_port is not None:
            return self._find_listener(self._http_port)
        return None

    def server(self) -> psutil.Process | None:
        """The live tritonserver process, found again (rate-limited) when the previous one is gone."""
        with self._lock:
            if self._pid_provider is None and self._alive(self._server):
                return self._server
            now = time.monotonic()
            if self._pid_provider is None and now - self._last_resolve < self.resolve_every_s:
                return None
            self._last_resolve = now
            pid = self._candidate_pid()
            if self._server is not None and pid == self._server.pid and self._alive(self._server):
                return self._server
            proc: psutil.Process | None = None
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(pid)
            if not self._alive(proc):
                proc = None
                self._fixed_gone = self._fixed_gone or pid == self._fixed_pid
            if proc is not None:
                if self._server is not None:
                    self.restarts += 1
                self._learn_from_cmdline(proc)
                self._server = proc
                self._tree_at = 0.0
            elif self._server is not None and not self._alive(self._server):
                self._server = None
                self._tree = []
            return proc

    def _learn_from_cmdline(self, proc: psutil.Process) -> None:
        """Take the HTTP port, metrics URL and shm prefix the server was started with, where not given."""
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            return
        if self._http_port is None:
            port = server_flag(cmdline, "--http-port")
            self._http_port = int(port) if port and port.isdigit() else DEFAULT_HTTP_PORT
            address = server_flag(cmdline, "--http-address") or "127.0.0.1"
            self._http_host = "127.0.0.1" if address in ("0.0.0.0", "") else address
        if self._metrics_url is None:
            port = server_flag(cmdline, "--metrics-port") or str(DEFAULT_METRICS_PORT)
            address = server_flag(cmdline, "--metrics-address") or "127.0.0.1"
            address = "127.0.0.1" if address in ("0.0.0.0", "") else address
            self._metrics_url = f"http://{address}:{port}/metrics"
        if self._shm_prefix is None:
            for value in [a.split("=", 1)[1] for a in cmdline if a.startswith("--backend-config=")]:
                backend, _, setting = value.partition(",")
                if backend == "python" and setting.startswith("shm-region-prefix-name="):
                    self._shm_prefix = setting.split("=", 1)[1]
            self._shm_prefix = self._shm_prefix or DEFAULT_SHM_PREFIX

    def server_pid(self) -> int | None:
        """PID of the live server, or None while there is none."""
        proc = self.server()
        return proc.pid if proc is not None else None

    # -- what the sources read ---------------------------------------------------------------------------------
    def processes(self) -> list[TrackedProcess]:
        """The server (first) and its descendants, re-read every ``tree_refresh_s`` or after a change."""
        server = self.server()
        if server is None:
            return []
        with self._lock:
            now = time.monotonic()
            if now - self._tree_at < self.tree_refresh_s and self._tree and self._tree[0].proc.pid == server.pid:
                return list(self._tree)
            known = {t.proc.pid: t for t in self._tree}
            tree = [TrackedProcess(TritonProcess(server.pid, "server"), server)]
            with contextlib.suppress(psutil.Error):
                for child in server.children(recursive=True):
                    old = known.get(child.pid)
                    if old is not None and old.proc == child:  # same pid and creation time: keep the handle
                        tree.append(old)
                    else:
                        tree.append(TrackedProcess(describe(child), child))
            self._tree = tree
            self._tree_at = now
            return list(tree)

    def invalidate(self) -> None:
        """Re-read the tree at the next call (a process of it ended)."""
        with self._lock:
            self._tree_at = 0.0

    def metrics_url(self) -> str | None:
        """The Triton metrics URL (given, or learnt from the server's command line), None until known."""
        if self._metrics_url is None:
            self.server()
        return self._metrics_url

    def http_url(self) -> str | None:
        """``http://host:port`` of the server's HTTP endpoint (given, or learnt from its command line)."""
        if self._http_port is None:
            self.server()
        return f"http://{self._http_host}:{self._http_port}" if self._http_port is not None else None

    def shm_prefix(self) -> str | None:
        """The python backend's ``/dev/shm`` region prefix (given, or learnt from the command line)."""
        if self._shm_prefix is None:
            self.server()
        return self._shm_prefix

    def describe(self) -> dict[str, object]:
        """Facts for the manifest."""
        proc = self._server
        return {"pid": proc.pid if proc is not None else self._fixed_pid, "http_port": self._http_port,
                "metrics_url": self._metrics_url, "shm_prefix": self._shm_prefix}
