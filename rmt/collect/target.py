"""Which tritonserver the sidecar watches: its PID (found again after a restart), process tree, endpoints, shm prefix.

The server is named by a PID, by its HTTP ``host:port`` (the PID is whoever listens there), or by a provider
callable (the embedded server). When the server dies the sources see no PID (a gap) until a server listens on the
same port again.

Re-reading the tree walks every process of the host (milliseconds of CPU), so it is done only when it may have
changed: at once when the server changed or a process of the tree ended (:meth:`ServerTarget.invalidate`, called
by the ``process`` source when a read fails); within ``shm_check_s`` when the server's regions in the shared-memory
folder changed (the python backend creates a region for every stub it starts: one ``stat`` of the folder per period,
a listing only when it changed, so other servers' regions cost a listing, not a walk; the tree is read again one
period later, since the region is created just before its stub); and every ``tree_refresh_s`` for anything else.
The server's liveness is checked at most every ``alive_check_s`` (the ``process`` source notices a dead server at
its next read).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from rmt.core.errors import ConfigError
from rmt.core.hosts import parse_address
from rmt.core.procs import TritonProcess, describe
from rmt.core.tritonflags import server_flag

#: The python backend's default ``shm-region-prefix-name``.
DEFAULT_SHM_PREFIX = "triton_python_backend_shm_region_"
DEFAULT_HTTP_PORT = 8000
DEFAULT_METRICS_PORT = 8002


def _host_port(url: str, flag: str) -> tuple[str, int]:
    address = parse_address(url, flag=flag, require_port=True)
    assert address.port is not None
    return address.host, address.port


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
                 tree_refresh_s: float = 30.0, shm_check_s: float = 1.0, shm_dir: Path = Path("/dev/shm"),
                 resolve_every_s: float = 0.5, alive_check_s: float = 5.0,
                 find_listener: Callable[[int], int | None] = find_listener_pid) -> None:
        if pid is None and http_url is None and pid_provider is None and metrics_url is None:
            raise ConfigError("nothing to watch: pass --pid PID or --server-url HOST:PORT (and --metrics-url)")
        self._fixed_pid = pid
        self._fixed_gone = False
        self._http_host = "127.0.0.1"
        self._http_port: int | None = None
        if http_url:
            self._http_host, self._http_port = _host_port(http_url, "--server-url")
        self._metrics_url = metrics_url
        self._shm_prefix = shm_prefix
        self._pid_provider = pid_provider
        self._find_listener = find_listener
        self.tree_refresh_s = tree_refresh_s
        self.shm_check_s = shm_check_s
        self.shm_dir = shm_dir
        self.resolve_every_s = resolve_every_s
        self.alive_check_s = alive_check_s
        self._lock = threading.Lock()
        """Held while looking for the server or walking the tree: slow, and a command-line read can block."""
        self._quick = threading.Lock()
        """Guards what a tick reads (the published tree, when it is due again): never held for long."""
        self._generation = 0
        """Bumped by :meth:`invalidate`: a walk that started before keeps the tree due."""
        self._server: psutil.Process | None = None
        self._alive_at = -math.inf
        """When the server was last seen alive (monotonic s); reset by :meth:`invalidate`."""
        self._tree: tuple[TrackedProcess, ...] = ()
        self._tree_at = -math.inf
        self._shm_at = -math.inf
        self._shm_sig: tuple[int, int] | None = None
        self._shm_regions: frozenset[str] | None = None
        self._shm_settle = False
        self._last_resolve = 0.0
        self.restarts = 0
        """How many times a different server process was found (a restart)."""
        self._last_pid: int | None = None
        """The PID of the last server found (kept while there is none, to count the next one as a restart)."""

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

    def _still_alive(self, now: float) -> bool:
        """Whether the known server lives: trusted for ``alive_check_s`` after a check, then checked again."""
        if self._server is None:
            return False
        if now - self._alive_at < self.alive_check_s:
            return True
        if self._alive(self._server):
            self._alive_at = now
            return True
        return False

    def server(self) -> psutil.Process | None:
        """The live tritonserver process, found again (rate-limited) when the previous one is gone."""
        with self._lock:
            now = time.monotonic()
            if self._pid_provider is None and self._still_alive(now):
                return self._server
            if self._pid_provider is None and now - self._last_resolve < self.resolve_every_s:
                return None
            self._last_resolve = now
            pid = self._candidate_pid()
            if self._server is not None and pid == self._server.pid and self._still_alive(now):
                return self._server
            proc: psutil.Process | None = None
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(pid)
            if not self._alive(proc):
                proc = None
                self._fixed_gone = self._fixed_gone or pid == self._fixed_pid
            if proc is not None:
                if self._last_pid is not None and proc.pid != self._last_pid:
                    self.restarts += 1
                self._last_pid = proc.pid
                self._learn_from_cmdline(proc)
                self._server = proc
                self._alive_at = now
                with self._quick:
                    self._tree_at = -math.inf
            elif self._server is not None and not self._alive(self._server):
                self._server = None
                with self._quick:
                    self._tree = ()
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
    def processes(self) -> tuple[TrackedProcess, ...]:
        """The server (first) and its descendants, re-read when they may have changed (see the module docstring).

        The same tuple is returned until the tree is re-read, so a caller can tell "unchanged" by identity."""
        server = self.server()
        if server is None:
            return ()
        with self._quick:
            tree = self._tree
            if not self._refresh_due(time.monotonic()) and tree and tree[0].proc.pid == server.pid:
                return tree
            generation = self._generation
        with self._lock:  # one walk at a time, outside the quick lock: a tick never waits for it
            with self._quick:
                if self._tree is not tree and self._generation == generation:
                    return self._tree  # another caller walked it while this one waited
            started = time.monotonic()
            known = {t.proc.pid: t for t in tree}
            fresh = [TrackedProcess(TritonProcess(server.pid, "server"), server)]
            with contextlib.suppress(psutil.Error):
                for child in server.children(recursive=True):
                    old = known.get(child.pid)
                    if old is not None and old.proc == child:  # same pid and creation time: keep the handle
                        fresh.append(old)
                    else:
                        fresh.append(TrackedProcess(describe(child), child))
            with self._quick:
                self._tree = tuple(fresh)
                if self._generation == generation:
                    self._tree_at = started
                return self._tree

    def cached_processes(self) -> tuple[TrackedProcess, ...]:
        """The tree as last read, without checking, reading or waiting for anything (empty while no server)."""
        return self._tree

    def refresh_due(self) -> bool:
        """Whether :meth:`processes` would re-read the tree (or look for the server) now; at most one ``stat``."""
        with self._quick:
            return self._refresh_due(time.monotonic()) or not self._tree

    def _refresh_due(self, now: float) -> bool:
        """Under the quick lock: whether the tree is due, checking the shared-memory folder once per period."""
        if now - self._shm_at >= self.shm_check_s:
            self._shm_at = now
            changed = False
            try:
                st = self.shm_dir.stat()
                sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError:
                sig = None
            if sig != self._shm_sig:  # something in the folder changed: were regions of this server added?
                self._shm_sig = sig
                regions = self._regions()
                changed = regions != self._shm_regions
                self._shm_regions = regions
            if changed or self._shm_settle:
                self._shm_settle = changed  # once more next period: the stub follows its region
                self._tree_at = -math.inf
                self._generation += 1
        return now - self._tree_at >= self.tree_refresh_s

    def _regions(self) -> frozenset[str] | None:
        """Names of this server's python-backend regions (every name while the prefix is unknown)."""
        prefix = self._shm_prefix or ""
        try:
            with os.scandir(self.shm_dir) as entries:
                return frozenset(e.name for e in entries if e.name.startswith(prefix))
        except OSError:
            return None

    def invalidate(self) -> None:
        """Check the server and re-read the tree at the next call (a process of it ended); never waits long."""
        with self._quick:
            self._tree_at = -math.inf
            self._alive_at = -math.inf
            self._generation += 1

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
