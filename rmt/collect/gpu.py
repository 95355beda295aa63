"""Source ``nvml``: per-GPU memory and utilization, and per-process GPU memory attributed to the Triton tree.

Per GPU (labels ``gpu`` = NVML index, ``uuid``): used/free/total/reserved bytes and utilization. Per compute process
NVML lists (``nvmlDeviceGetComputeRunningProcesses``): ``gpu_process_memory_bytes`` with ``pid`` and, for the
server and its stubs, the same ``name``/``role``/``model``/``instance`` labels as the ``process`` source — a GPU
leak in a python model shows as its stub's series growing. Processes outside the tree are summed into
``gpu_other_processes_memory_bytes``. Without NVML or a GPU the source is unavailable (one info line, no series).
"""

from __future__ import annotations

import math
from typing import Any

from rmt.collect.nvml import Nvml
from rmt.collect.process_tree import process_labels
from rmt.collect.series import Point, Reading, labels_of
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget
from rmt.core.errors import SourceUnavailable

SOURCE = "nvml"


class NvmlSource:
    """Reads every GPU NVML sees, at every tick or every ``every_s`` seconds (see ``SidecarOptions.nvml_every_s``)."""

    name = SOURCE

    def __init__(self, target: ServerTarget | None, *, nvml: Nvml | None = None, timeout_s: float = 1.0,
                 every_s: float = 0.0) -> None:
        self.target = target
        self.nvml = nvml or Nvml()
        self.timeout_s = timeout_s
        self.every_s = every_s

    def manifest_keys(self) -> dict[str, Any]:
        """Top-level manifest keys: ``gpus`` (names, UUIDs, memory API) and ``nvml`` (versions, availability)."""
        return {"gpus": [d.manifest() for d in self.nvml.devices()],
                "nvml": {"available": self.nvml.available, "reason": self.nvml.reason, **self.nvml.versions()}}

    def open(self) -> SourceInfo:
        """Initialise NVML; unavailable (never an exception) without library, driver or GPU."""
        if not self.nvml.init():
            return SourceInfo(False, self.nvml.reason, manifest=self.manifest_keys())
        return SourceInfo(details={"gpus": len(self.nvml.devices())}, manifest=self.manifest_keys())

    def close(self) -> None:
        """Shut NVML down."""
        self.nvml.shutdown()

    def read(self) -> Reading:
        """One read of every GPU and its compute processes."""
        tree = {tp.proc.pid: tp for tp in self.target.processes()} if self.target is not None else {}
        points: list[Point] = []
        try:
            for dev in self.nvml.devices():
                gpu = labels_of(gpu=dev.index, uuid=dev.uuid)
                mem = self.nvml.memory(dev)
                util, mem_util = self.nvml.utilization(dev)
                points += [Point("gpu_memory_used_bytes", gpu, mem.used),
                           Point("gpu_memory_free_bytes", gpu, mem.free),
                           Point("gpu_memory_total_bytes", gpu, mem.total),
                           Point("gpu_memory_reserved_bytes", gpu, mem.reserved),
                           Point("gpu_utilization_percent", gpu, util),
                           Point("gpu_memory_utilization_percent", gpu, mem_util)]
                in_tree = other = 0.0
                for pid, used in self.nvml.processes(dev):
                    tp = tree.get(pid)
                    if tp is None:
                        other += 0.0 if math.isnan(used) else used
                        continue
                    in_tree += used
                    points.append(Point("gpu_process_memory_bytes",
                                        tuple(sorted((*process_labels(tp), *gpu))), used))
                points += [Point("gpu_tree_memory_bytes", gpu, in_tree if tree else math.nan),
                           Point("gpu_other_processes_memory_bytes", gpu, other)]
        except Exception as exc:
            if self.nvml.is_error(exc):
                raise SourceUnavailable(f"NVML read failed: {exc}") from None
            raise
        return Reading(points)
