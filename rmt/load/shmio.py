"""System shared-memory regions rmt creates for its requests: creation, registration, release, and their records.

Every region a load process creates goes through one :class:`ShmRegistry` (per process): created with
``tritonclient.utils.shared_memory`` (key ``/rmt_<pid>_<n>``, Triton name ``rmt_<pid>_<n>``), registered with the
server over the user's protocol (:class:`ShmControl`), and released — unregistered, then unmapped and unlinked —
by its owner (a request, a user, the process) or, whatever failed before, by :meth:`ShmRegistry.close_all` when the
load drains. A registration that fails unlinks its region at once. Each step is a
:class:`~rmt.core.records.ShmRecord` in ``shm.jsonl``, so the ``shm_regions`` check can prove nothing rmt created
outlives the run; the last record of a process (``status``) lists what the server and ``/dev/shm`` still hold under
the process's prefix.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rmt.core.errors import ConfigError
from rmt.core.records import SHM_FILE, ShmRecord

SHM_DIR = Path("/dev/shm")
IN_USE_TEXT = "currently in use"
UNREGISTER_PATIENCE_S = 1.0
"""How long a release retries an unregistration the server refuses because the region is still in use."""


def prestart_tracker() -> None:
    """Start multiprocessing's resource tracker now: ``tritonclient.utils.shared_memory`` registers every region with
    it, and its first use spawns a Python process synchronously — seconds on a busy host, with every greenlet of the
    load process stalled. Called when a plan with shared-memory patterns is adopted, before the load."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def require_local(host: str) -> None:
    """ConfigError unless ``host`` is this machine: Triton maps system shared memory by key on its own host."""
    name = host.strip("[]")
    try:
        if ipaddress.ip_address(name).is_loopback:
            return
    except ValueError:
        if name == "localhost":
            return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
        local = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        addresses, local = {name}, set()
    if not addresses or not addresses <= (local | {"127.0.0.1", "::1"}):
        raise ConfigError(f"shared-memory pattern on a remote server ({host}): system shared memory works only "
                          "with tritonserver on this host; run the load beside the server or drop the pattern's "
                          "\"shm\"")


def require_local_for(traffic: dict[str, Any], host: str) -> None:
    """:func:`require_local` when any pattern of the traffic section (``rmt.load`` format) uses shared memory."""
    patterns = traffic.get("traffic", traffic).get("patterns") or {}
    if any(isinstance(p, dict) and "shm" in p for p in patterns.values()):
        require_local(host.split("://", 1)[-1].rstrip("/").rpartition(":")[0] or host)


class ShmControl:
    """Registers regions with the server over one protocol (a ``tritonclient`` client of the user's)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def register(self, name: str, key: str, byte_size: int) -> None:
        """``register_system_shared_memory``; raises on refusal."""
        self.client.register_system_shared_memory(name, key, byte_size)

    def unregister(self, name: str) -> None:
        """``unregister_system_shared_memory``; raises on refusal."""
        self.client.unregister_system_shared_memory(name)

    def registered(self) -> list[str]:
        """Names of the system regions the server has registered."""
        status = self.client.get_system_shared_memory_status()
        if isinstance(status, list):  # HTTP: a list of {name, key, offset, byte_size}
            return [str(r.get("name", "")) for r in status]
        return list(getattr(status, "regions", {}) or {})

    def close(self) -> None:
        """Close the client."""
        self.client.close()


def http_control(url: str) -> ShmControl:
    """Region control over HTTP."""
    import tritonclient.http as httpclient

    return ShmControl(httpclient.InferenceServerClient(url, connection_timeout=10, network_timeout=30))


def grpc_control(url: str) -> ShmControl:
    """Region control over gRPC (grpcio made gevent-aware first)."""
    import tritonclient.grpc as grpcclient

    from rmt.load.transport import init_grpc_gevent

    init_grpc_gevent()
    return ShmControl(grpcclient.InferenceServerClient(url))


@dataclass
class Region:
    """A region rmt created: its names, size, mapping and the control it is registered through."""

    name: str
    key: str
    byte_size: int
    handle: Any
    control: ShmControl | None = None
    """Set while the server has it registered."""
    own_control: bool = False
    """The control was opened for this region alone (closed with it)."""


class ShmRegistry:
    """Every region of one load process (see the module docstring); ``note(file, record)`` keeps the records."""

    def __init__(self, note: Callable[[str, dict[str, Any]], None], *, pid: int | None = None,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.note = note
        self.pid = os.getpid() if pid is None else pid
        self.prefix = f"rmt_{self.pid}_"
        self.clock_ns = clock_ns
        self.live: dict[str, Region] = {}
        self.shared: dict[Any, Region] = {}
        """Process-wide regions (``once`` lifecycle) by their owner's key."""
        self._count = 0
        self.stale: dict[str, int] = {}
        """Regions unlinked whose unregistration failed (name → bytes): retried by :meth:`close_all`."""
        self._used = False
        """Regions were created since the last :meth:`close_all`."""
        self.make_control: Callable[[], ShmControl] | None = None
        """Opens a control of the users' protocol (set by the first user that creates a region): the final status
        and the process-wide regions use controls of their own, never a user's."""

    def _record(self, event: str, region: str, byte_size: int = 0, detail: str = "", **more: int) -> None:
        self.note(SHM_FILE, asdict(ShmRecord(self.clock_ns(), event, region, byte_size, self.pid, detail, **more)))

    def create(self, byte_size: int, control: ShmControl, *, own_control: bool = False) -> Region:
        """A new region of ``byte_size`` bytes, registered through ``control`` (unlinked again if that fails;
        ``own_control``: the control is closed with the region)."""
        from tritonclient.utils import shared_memory as shm

        self._count += 1
        self._used = True
        name = f"{self.prefix}{self._count}"
        region = Region(name, f"/{name}", max(1, byte_size), None, own_control=own_control)
        region.handle = shm.create_shared_memory_region(name, region.key, region.byte_size, create_only=True)
        self.live[name] = region
        self._record("create", name, region.byte_size)
        try:
            control.register(name, region.key, region.byte_size)
        except Exception as exc:
            self._record("error", name, region.byte_size, f"register: {exc}")
            self.release(region)
            if own_control:
                control.close()
            raise
        region.control = control
        self._record("register", name, region.byte_size)
        return region

    def release(self, region: Region) -> None:
        """Unregister (when registered) and unlink ``region``; errors are recorded, never raised."""
        # Claim each step before its I/O: a drain and a user's on_stop may release the same region at once.
        control, region.control = region.control, None
        if control is not None:
            if self._unregister(control, region.name, region.byte_size):
                self.stale.pop(region.name, None)
            else:
                self.stale[region.name] = region.byte_size
            if region.own_control:
                control.close()
        if self.live.pop(region.name, None) is not None:
            from tritonclient.utils import shared_memory as shm

            try:
                shm.destroy_shared_memory_region(region.handle)
                self._record("destroy", region.name, region.byte_size)
            except Exception as exc:
                self._record("error", region.name, region.byte_size, f"destroy: {exc}")

    def _unregister(self, control: ShmControl, name: str, byte_size: int) -> bool:
        """Unregister ``name``, retrying while the server still holds it (over gRPC Triton 2.51 answers before it
        lets go of the request's regions: "Cannot unregister ... it is currently in use"); False when it failed."""
        deadline = time.monotonic() + UNREGISTER_PATIENCE_S
        delay = 0.001
        refused = 0
        while True:
            try:
                control.unregister(name)
                self._record("unregister", name, byte_size, f"refused {refused} times while in use" if refused else "")
                return True
            except Exception as exc:  # the server may be gone: the region is still ours to unlink
                if IN_USE_TEXT not in str(exc) or time.monotonic() + delay > deadline:
                    self._record("error", name, byte_size, f"unregister: {exc}")
                    return False
            refused += 1
            time.sleep(delay)  # cooperative under Locust (gevent)
            delay = min(delay * 2, 0.05)

    def close_all(self) -> None:
        """Release every region still live, then record what the server and ``/dev/shm`` still hold."""
        if not self._used:
            return
        for region in list(self.live.values()):
            self.release(region)
        self.shared.clear()
        files = sorted(p.name for p in SHM_DIR.glob(f"{self.prefix}*")) if SHM_DIR.is_dir() else []
        registered: list[str] | None = None
        if self.make_control is not None:
            control = self.make_control()
            for name, byte_size in list(self.stale.items()):  # registrations a release could not undo
                if self._unregister(control, name, byte_size):
                    del self.stale[name]
            try:
                registered = [n for n in control.registered() if n.startswith(self.prefix)]
            except Exception as exc:
                self._record("error", self.prefix, 0, f"status: {exc}")
            finally:
                control.close()
        left = -1 if registered is None else len(registered)
        self._record("status", self.prefix, 0, " ".join((registered or []) + files), registered_left=left,
                     files_left=len(files))
        self._used = False
