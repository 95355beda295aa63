"""Shared-memory regions rmt creates for its requests (system or CUDA): creation, registration, release, records.

Every region a load process creates goes through one :class:`ShmRegistry` (per process), whatever its kind: created
(Triton name ``rmt_<pid>_<n>``), registered with the server over the user's protocol (:class:`ShmControl`), and
released — unregistered, then freed — by its owner (a request, a user, the process) or, whatever failed before, by
:meth:`ShmRegistry.close_all` when the load drains. A registration that fails frees its region at once. What differs
per kind is a small :class:`ShmKind` (:data:`KINDS`): ``system`` regions are ``/dev/shm`` segments
(``tritonclient.utils.shared_memory``, key ``/rmt_<pid>_<n>``, unmapped and unlinked when freed); ``cuda`` regions
are device memory (``tritonclient.utils.cuda_shared_memory``, registered by their CUDA IPC handle, ``cudaFree`` when
freed; no file). Each step is a :class:`~rmt.core.records.ShmRecord` in ``shm.jsonl``, so the ``shm_regions`` check
can prove nothing rmt created outlives the run; the last record of a process (``status``) lists what the server
(every kind the process used) and ``/dev/shm`` still hold under the process's prefix.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmt.core.errors import ConfigError
from rmt.core.records import SHM_FILE, ShmRecord

if TYPE_CHECKING:
    import numpy as np

SHM_DIR = Path("/dev/shm")
IN_USE_TEXT = "currently in use"
UNREGISTER_PATIENCE_S = 1.0
"""How long a release retries an unregistration the server refuses because the region is still in use."""
CUDA_MODULE = "cuda.bindings.runtime"
"""What ``tritonclient.utils.cuda_shared_memory`` imports (the ``cuda-python`` package)."""
CUDA_MISSING = "CUDA shared memory needs the cuda-python package: pip install cuda-python"


def prestart_tracker() -> None:
    """Start multiprocessing's resource tracker now: ``tritonclient.utils.shared_memory`` registers every region with
    it, and its first use spawns a Python process synchronously — seconds on a busy host, with every greenlet of the
    load process stalled. Called when a plan with shared-memory patterns is adopted, before the load."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def require_local(host: str) -> None:
    """ConfigError unless ``host`` is this machine: Triton maps system shared memory by key on its own host, CUDA
    shared memory by an IPC handle valid on its own host only."""
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
        raise ConfigError(f"shared-memory pattern on a remote server ({host}): system and CUDA shared memory work "
                          "only with tritonserver on this host; run the load beside the server or drop the pattern's "
                          "\"shm\"")


def require_local_for(traffic: dict[str, Any], host: str) -> None:
    """:func:`require_local` when any pattern of the traffic section (``rmt.load`` format) uses shared memory."""
    if _shm_specs(traffic):
        require_local(host.split("://", 1)[-1].rstrip("/").rpartition(":")[0] or host)


def require_kind(kind: str, *, module: str = CUDA_MODULE) -> None:
    """ConfigError when regions of ``kind`` cannot be made in this Python: ``cuda`` needs ``module`` (cuda-python)."""
    if kind != "cuda":
        return
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(CUDA_MISSING) from None


def require_kinds_for(traffic: dict[str, Any], *, module: str = CUDA_MODULE) -> None:
    """:func:`require_kind` for every shared-memory pattern of the traffic section (``rmt.load`` format)."""
    for spec in _shm_specs(traffic):
        require_kind(str(spec.get("kind", "system")), module=module)


def _shm_specs(traffic: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``shm`` objects of the traffic section's patterns (a definition's or the section itself)."""
    section = traffic.get("traffic", traffic)
    patterns = section.get("patterns") if isinstance(section, dict) else None
    if not isinstance(patterns, dict):
        return []
    return [p["shm"] if isinstance(p["shm"], dict) else {} for p in patterns.values()
            if isinstance(p, dict) and "shm" in p]


class ShmKind:
    """What differs between kinds of region: allocation, filling, freeing and the server's register calls.

    ``system``: a ``/dev/shm`` segment (the base class)."""

    name = "system"

    def allocate(self, name: str, byte_size: int, device: int) -> tuple[Any, str]:
        """A new region's handle and key (``/<name>``; created exclusively: a stale segment is an error)."""
        from tritonclient.utils import shared_memory as shm

        key = f"/{name}"
        return shm.create_shared_memory_region(name, key, byte_size, create_only=True), key

    def fill(self, handle: Any, arrays: list[np.ndarray]) -> None:
        """Write ``arrays`` back to back from the region's start."""
        from tritonclient.utils import shared_memory as shm

        shm.set_shared_memory_region(handle, arrays)

    def free(self, handle: Any) -> None:
        """Unmap and unlink the region."""
        from tritonclient.utils import shared_memory as shm

        shm.destroy_shared_memory_region(handle)

    def register(self, client: Any, region: Region) -> None:
        """``register_system_shared_memory``; raises on refusal."""
        client.register_system_shared_memory(region.name, region.key, region.byte_size)

    def unregister(self, client: Any, name: str) -> None:
        """``unregister_system_shared_memory``; raises on refusal."""
        client.unregister_system_shared_memory(name)

    def status(self, client: Any) -> Any:
        """The server's registered regions of this kind (HTTP: a list of dicts; gRPC: a message with ``regions``)."""
        return client.get_system_shared_memory_status()


class CudaShmKind(ShmKind):
    """``cuda``: device memory on one GPU, registered by its CUDA IPC handle (the server maps it in its process)."""

    name = "cuda"

    def allocate(self, name: str, byte_size: int, device: int) -> tuple[Any, str]:
        """``cudaMalloc`` on ``device``; no key."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        return cudashm.create_shared_memory_region(name, byte_size, device), ""

    def fill(self, handle: Any, arrays: list[np.ndarray]) -> None:
        """Copy ``arrays`` back to back to the device from the region's start (synchronous)."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        cudashm.set_shared_memory_region(handle, arrays)

    def free(self, handle: Any) -> None:
        """Free the device memory now, so that a ``destroy`` record means it is freed and a failure is recorded.

        ``destroy_shared_memory_region`` only drops the module's reference; the handle's finalizer calls
        ``cudaFree`` whenever the last reference goes, where an error could only be printed. So the finalizer runs
        here, then the handle is disarmed (it skips a handle without ``_base_addr``) so it cannot free twice."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        cudashm.destroy_shared_memory_region(handle)
        finalize = getattr(type(handle), "__del__", None)
        if finalize is None:  # no finalizer: the memory goes with the handle's last reference
            return
        try:
            finalize(handle)
        finally:
            with contextlib.suppress(AttributeError):
                del handle._base_addr

    def register(self, client: Any, region: Region) -> None:
        """``register_cuda_shared_memory`` with the base64 IPC handle (the HTTP client sends it as is, the gRPC
        client decodes it to raw bytes); raises on refusal."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        client.register_cuda_shared_memory(region.name, cudashm.get_raw_handle(region.handle), region.device,
                                           region.byte_size)

    def unregister(self, client: Any, name: str) -> None:
        """``unregister_cuda_shared_memory``; raises on refusal."""
        client.unregister_cuda_shared_memory(name)

    def status(self, client: Any) -> Any:
        """``get_cuda_shared_memory_status``."""
        return client.get_cuda_shared_memory_status()


KINDS: dict[str, ShmKind] = {k.name: k for k in (ShmKind(), CudaShmKind())}
"""Every kind of region by its name (``ShmSpec.kind``)."""


class ShmControl:
    """Registers regions with the server over one protocol (a ``tritonclient`` client of the user's)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def register(self, region: Region) -> None:
        """Register ``region`` by its kind; raises on refusal."""
        KINDS[region.kind].register(self.client, region)

    def unregister(self, name: str, kind: str = "system") -> None:
        """Unregister the region ``name`` of ``kind``; raises on refusal."""
        KINDS[kind].unregister(self.client, name)

    def registered(self, kind: str = "system") -> list[str]:
        """Names of the regions of ``kind`` the server has registered."""
        status = KINDS[kind].status(self.client)
        if isinstance(status, list):  # HTTP: a list of {name, ...}
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
    """``system``: the ``/dev/shm`` key; ``cuda``: empty."""
    byte_size: int
    handle: Any
    control: ShmControl | None = None
    """Set while the server has it registered."""
    own_control: bool = False
    """The control was opened for this region alone (closed with it)."""
    kind: str = "system"
    """A key of :data:`KINDS`."""
    device: int = 0
    """``cuda``: the GPU holding it."""


class ShmRegistry:
    """Every region of one load process (see the module docstring); ``note(file, record)`` keeps the records."""

    def __init__(self, note: Callable[[str, dict[str, Any]], None], *, pid: int | None = None,
                 clock_ns: Callable[[], int] = time.time_ns, kinds: Mapping[str, ShmKind] | None = None) -> None:
        self.note = note
        self.kinds = KINDS if kinds is None else kinds
        """How each kind of region is allocated, filled and freed (:data:`KINDS`)."""
        self.pid = os.getpid() if pid is None else pid
        self.prefix = f"rmt_{self.pid}_"
        self.clock_ns = clock_ns
        self.live: dict[str, Region] = {}
        self.shared: dict[Any, Region] = {}
        """Process-wide regions (``once`` lifecycle) by their owner's key."""
        self._count = 0
        self.stale: dict[str, Region] = {}
        """Regions freed whose unregistration failed (by name): retried by :meth:`close_all`."""
        self._kinds: set[str] = set()
        """Kinds of the regions created since the last :meth:`close_all` (none: nothing to report)."""
        self.make_control: Callable[[], ShmControl] | None = None
        """Opens a control of the users' protocol (set by the first user that creates a region): the final status
        and the process-wide regions use controls of their own, never a user's."""

    def _record(self, event: str, region: Region | str, detail: str = "", **more: Any) -> None:
        if isinstance(region, Region):
            name, more = region.name, {"byte_size": region.byte_size, "kind": region.kind, **more}
        else:
            name = region
        self.note(SHM_FILE, asdict(ShmRecord(self.clock_ns(), event, name, pid=self.pid, detail=detail, **more)))

    def create(self, byte_size: int, control: ShmControl, *, own_control: bool = False, kind: str = "system",
               device: int = 0, contents: Sequence[np.ndarray] = ()) -> Region:
        """A new region of ``kind`` (on GPU ``device`` for ``cuda``) of ``byte_size`` bytes holding ``contents``
        back to back, registered through ``control``; freed again if writing or registering fails (then raises).
        ``own_control``: the control is closed with the region."""
        ops = self.kinds[kind]
        self._count += 1
        self._kinds.add(kind)
        name = f"{self.prefix}{self._count}"
        region = Region(name, "", max(1, byte_size), None, own_control=own_control, kind=kind, device=device)
        region.handle, region.key = ops.allocate(name, region.byte_size, device)
        self.live[name] = region
        self._record("create", region, f"device {device}" if kind == "cuda" else "")
        step = "write"
        try:
            if contents:
                ops.fill(region.handle, list(contents))
            step = "register"
            control.register(region)
        except Exception as exc:
            self._record("error", region, f"{step}: {exc}")
            self.release(region)
            if own_control:
                control.close()
            raise
        region.control = control
        self._record("register", region)
        return region

    def write(self, region: Region, arrays: list[np.ndarray]) -> None:
        """Write ``arrays`` back to back from ``region``'s start."""
        self.kinds[region.kind].fill(region.handle, arrays)

    def release(self, region: Region) -> None:
        """Unregister (when registered) and free ``region``; errors are recorded, never raised."""
        # Claim each step before its I/O: a drain and a user's on_stop may release the same region at once.
        control, region.control = region.control, None
        if control is not None:
            if self._unregister(control, region):
                self.stale.pop(region.name, None)
            else:
                self.stale[region.name] = region
            if region.own_control:
                control.close()
        if self.live.pop(region.name, None) is not None:
            handle, region.handle = region.handle, None
            try:
                self.kinds[region.kind].free(handle)
                self._record("destroy", region)
            except Exception as exc:
                self._record("error", region, f"destroy: {exc}")

    def _unregister(self, control: ShmControl, region: Region) -> bool:
        """Unregister ``region``, retrying while the server still holds it (over gRPC Triton 2.51 answers before it
        lets go of the request's regions: "Cannot unregister ... it is currently in use"); False when it failed."""
        deadline = time.monotonic() + UNREGISTER_PATIENCE_S
        delay = 0.001
        refused = 0
        while True:
            try:
                control.unregister(region.name, region.kind)
                self._record("unregister", region, f"refused {refused} times while in use" if refused else "")
                return True
            except Exception as exc:  # the server may be gone: the region is still ours to free
                if IN_USE_TEXT not in str(exc) or time.monotonic() + delay > deadline:
                    self._record("error", region, f"unregister: {exc}")
                    return False
            refused += 1
            time.sleep(delay)  # cooperative under Locust (gevent)
            delay = min(delay * 2, 0.05)

    def close_all(self) -> None:
        """Release every region still live, then record what the server (each kind used) and ``/dev/shm`` still
        hold."""
        if not self._kinds:
            return
        for region in list(self.live.values()):
            self.release(region)
        self.shared.clear()
        kinds = sorted(self._kinds)
        files = sorted(p.name for p in SHM_DIR.glob(f"{self.prefix}*")) if SHM_DIR.is_dir() else []
        registered: list[str] | None = None
        if self.make_control is not None:
            control = self.make_control()
            for region in list(self.stale.values()):  # registrations a release could not undo
                if self._unregister(control, region):
                    del self.stale[region.name]
            try:
                registered = [n for kind in kinds for n in control.registered(kind) if n.startswith(self.prefix)]
            except Exception as exc:
                self._record("error", self.prefix, f"status: {exc}")
            finally:
                control.close()
        left = -1 if registered is None else len(registered)
        self._record("status", self.prefix, " ".join((registered or []) + files), registered_left=left,
                     files_left=len(files), kind=",".join(kinds))
        self._kinds.clear()
