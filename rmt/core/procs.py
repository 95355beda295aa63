"""Identify a tritonserver's processes: the server and its python-backend stubs (one per model instance).

A stub's command line is ``triton_python_backend_stub <model.py> <shm region> <shm size> <shm growth> <parent pid>
<backend dir> <ipc handle> <instance name> <execution env>``; the instance name (``<model>_<group>_<index>``) tells
which model's memory the stub holds.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import psutil

STUB_EXE = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonProcess:
    """One process of a Triton server's tree."""

    pid: int
    role: str
    """``server`` or ``stub`` (``other`` for anything else the server started)."""
    model: str | None = None
    """The model a stub serves (its folder name in the repository)."""
    instance: str | None = None
    """The stub's model-instance name, e.g. ``probe_0_1``."""
    shm_region: str | None = None
    """A stub's python-backend shared-memory region (its argv[2], a file in ``/dev/shm``)."""

    @property
    def name(self) -> str:
        """A readable name: the stub's instance name, ``tritonserver`` for the server, else ``pid<N>``."""
        if self.role == "server":
            return "tritonserver"
        return self.instance or self.model or f"pid{self.pid}"


def describe(proc: psutil.Process) -> TritonProcess:
    """Classify one process by its command line."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return TritonProcess(proc.pid, "other")
    if cmdline and Path(cmdline[0]).name == STUB_EXE:
        model = Path(cmdline[1]).parent.parent.name if len(cmdline) > 1 else None
        instance = cmdline[8] if len(cmdline) > 8 else None
        region = cmdline[2] if len(cmdline) > 2 else None
        return TritonProcess(proc.pid, "stub", model, instance, region)
    if cmdline and Path(cmdline[0]).name == "tritonserver":
        return TritonProcess(proc.pid, "server")
    return TritonProcess(proc.pid, "other")


def triton_processes(server_pid: int) -> list[TritonProcess]:
    """The server (first) and all its live descendants; empty when the server is gone."""
    try:
        root = psutil.Process(server_pid)
        children = root.children(recursive=True)
    except psutil.Error:
        return []
    found = [TritonProcess(server_pid, "server")]
    for child in children:
        with contextlib.suppress(psutil.Error):
            found.append(describe(child))
    return found


def stub_rss_bytes(server_pid: int) -> dict[str, int]:
    """Resident set size in bytes of each stub, keyed by instance name."""
    out: dict[str, int] = {}
    for tp in triton_processes(server_pid):
        if tp.role == "stub" and tp.instance:
            with contextlib.suppress(psutil.Error):
                out[tp.instance] = psutil.Process(tp.pid).memory_info().rss
    return out
