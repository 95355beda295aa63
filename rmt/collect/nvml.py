"""The one NVML wrapper (``nvidia-ml-py``, ``import pynvml``): lazy init, shutdown at exit, explicit missing values.

Everything rmt reads from NVML goes through :class:`Nvml`. The library is passed to the constructor (the real
``pynvml`` module by default; tests pass a fake with the same functions — the only fake, for the GPU this host lacks).
When the library, the driver or a GPU is missing, :meth:`Nvml.init` returns False and :attr:`Nvml.reason` says why
in one line; callers mark their series unavailable instead of writing zeros. Device memory is read with the v2 API
(``nvmlDeviceGetMemoryInfo_v2``: also reports ``reserved``) where the driver has it, else v1; which one is recorded
per device.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML names it."""

    index: int
    name: str
    uuid: str
    handle: Any
    memory_api: str
    """``v2`` or ``v1``: which ``nvmlDeviceGetMemoryInfo`` this device answers."""

    def manifest(self) -> dict[str, Any]:
        """Facts for the run manifest."""
        return {"index": self.index, "name": self.name, "uuid": self.uuid, "memory_api": self.memory_api}


@dataclass(frozen=True)
class GpuMemory:
    """Device memory in bytes; ``reserved`` is NaN under the v1 API."""

    total: float
    used: float
    free: float
    reserved: float


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """Lazy, shared access to NVML; every call after a failed init reports unavailable instead of raising."""

    def __init__(self, lib: Any = None) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._initialised = False
        self._tried = False
        self.reason = ""
        """Why NVML is unavailable (one line naming the fix); empty when it works."""
        self._devices: list[GpuDevice] = []

    @property
    def lib(self) -> Any:
        """The NVML binding (``pynvml`` unless one was injected)."""
        if self._lib is None:
            import pynvml

            self._lib = pynvml
        return self._lib

    def init(self) -> bool:
        """Initialise NVML once and enumerate the GPUs; False (with :attr:`reason`) when NVML or a GPU is missing."""
        with self._lock:
            if self._tried:
                return self._initialised
            self._tried = True
            try:
                lib = self.lib
            except ImportError:
                self.reason = "nvidia-ml-py is not installed: pip install nvidia-ml-py"
                return False
            try:
                lib.nvmlInit()
            except lib.NVMLError as exc:
                self.reason = (f"NVML unavailable ({exc}): no NVIDIA driver on this host, "
                               f"so GPU series are not sampled")
                return False
            self._initialised = True
            atexit.register(self.shutdown)
            try:
                count = int(lib.nvmlDeviceGetCount())
                self._devices = [self._device(i) for i in range(count)]
            except lib.NVMLError as exc:
                self.reason = f"NVML could not list the GPUs ({exc}): check the driver with nvidia-smi"
                return False
            if not self._devices:
                self.reason = "NVML found no GPU on this host, so GPU series are not sampled"
                return False
            return True

    def _device(self, index: int) -> GpuDevice:
        lib = self.lib
        handle = lib.nvmlDeviceGetHandleByIndex(index)
        api = "v1"
        v2 = getattr(lib, "nvmlMemory_v2", None)
        if v2 is not None:
            try:
                lib.nvmlDeviceGetMemoryInfo(handle, version=v2)
                api = "v2"
            except lib.NVMLError:
                api = "v1"
        return GpuDevice(index, _text(lib.nvmlDeviceGetName(handle)), _text(lib.nvmlDeviceGetUUID(handle)), handle,
                         api)

    @property
    def available(self) -> bool:
        """Whether NVML works and sees at least one GPU (initialises on first use)."""
        return self.init() and bool(self._devices)

    def devices(self) -> list[GpuDevice]:
        """The GPUs (empty when unavailable)."""
        return list(self._devices) if self.available else []

    def versions(self) -> dict[str, str]:
        """Driver and NVML versions (empty when unavailable)."""
        if not self._initialised:
            return {}
        lib = self.lib
        out: dict[str, str] = {}
        for key, fn in (("driver_version", "nvmlSystemGetDriverVersion"), ("nvml_version", "nvmlSystemGetNVMLVersion")):
            try:
                out[key] = _text(getattr(lib, fn)())
            except lib.NVMLError:
                out[key] = ""
        return out

    def memory(self, dev: GpuDevice) -> GpuMemory:
        """Used/free/total (and reserved under v2) device memory in bytes."""
        lib = self.lib
        if dev.memory_api == "v2":
            m = lib.nvmlDeviceGetMemoryInfo(dev.handle, version=lib.nvmlMemory_v2)
            return GpuMemory(float(m.total), float(m.used), float(m.free), float(m.reserved))
        m = lib.nvmlDeviceGetMemoryInfo(dev.handle)
        return GpuMemory(float(m.total), float(m.used), float(m.free), math.nan)

    def utilization(self, dev: GpuDevice) -> tuple[float, float]:
        """GPU and memory-controller utilization in percent; NaN where the device does not report it."""
        lib = self.lib
        try:
            u = lib.nvmlDeviceGetUtilizationRates(dev.handle)
        except lib.NVMLError:
            return math.nan, math.nan
        return float(u.gpu), float(u.memory)

    def processes(self, dev: GpuDevice) -> list[tuple[int, float]]:
        """``(pid, used GPU memory bytes)`` of each compute process; NaN bytes where NVML withholds them."""
        procs = self.lib.nvmlDeviceGetComputeRunningProcesses(dev.handle)
        return [(int(p.pid), math.nan if p.usedGpuMemory is None else float(p.usedGpuMemory)) for p in procs]

    def is_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an NVML error of this binding."""
        return isinstance(exc, self.lib.NVMLError)

    def shutdown(self) -> None:
        """Release NVML (idempotent)."""
        with self._lock:
            if self._initialised:
                with contextlib.suppress(self.lib.NVMLError):  # already shut down elsewhere: nothing to release
                    self.lib.nvmlShutdown()
                self._initialised = False
            self._tried = False
            self._devices = []
            atexit.unregister(self.shutdown)
