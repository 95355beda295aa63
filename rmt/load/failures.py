"""Failed requests worth keeping verbatim: the server's message, sampled and bounded, for ``failures.jsonl``.

A checker can only judge an allocation failure (fragmentation: it failed although enough memory was free) from
the message the server returned, so the users keep it: at most :attr:`FailureSampler.per_s` failures per second and
process (the first ones of each second), with the bytes the failed allocation asked for and the free bytes the
allocator reported parsed out of the message where it states them. The record is
:class:`rmt.core.records.FailureRecord`, written by the coordinator (:mod:`rmt.load.plugin`).
"""

from __future__ import annotations

import re
from typing import Any

#: ``failed to allocate 2402688 bytes``, ``Tried to allocate 2.00 GiB`` (torch), ``allocating 4096 bytes``.
_NEED = re.compile(r"(?:failed to allocate|tried to allocate|allocating|allocate)\s+([\d.]+)\s*"
                   r"(bytes|b|kib|mib|gib|kb|mb|gb)\b", re.I)
#: ``free 6468352 bytes``, ``2.00 GiB free``.
_FREE = re.compile(r"free[:\s]+([\d.]+)\s*(bytes|b|kib|mib|gib|kb|mb|gb)\b|([\d.]+)\s*(bytes|b|kib|mib|gib|kb|mb|gb)"
                   r"\s+free\b", re.I)
_GPU = re.compile(r"\bGPU\s*(\d+)|\bcuda:(\d+)", re.I)
_UNITS = {"b": 1, "bytes": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
MESSAGE_CHARS = 500
"""Longest message kept (characters)."""


def _bytes(number: str, unit: str) -> int:
    return int(float(number) * _UNITS[unit.lower()])


def failure_record(t_ns: int, model: str, message: str) -> dict[str, Any]:
    """A ``failures.jsonl`` row (:class:`rmt.core.records.FailureRecord` fields) for one failed request."""
    need = _NEED.search(message)
    free = _FREE.search(message)
    gpu = _GPU.search(message)
    free_bytes = None
    if free:
        number, unit = (free.group(1), free.group(2)) if free.group(1) else (free.group(3), free.group(4))
        free_bytes = _bytes(number, unit)
    return {"t_ns": t_ns, "model": model, "message": message[:MESSAGE_CHARS],
            "need_bytes": _bytes(need.group(1), need.group(2)) if need else None,
            "free_bytes": free_bytes,
            "device": f"gpu={gpu.group(1) or gpu.group(2)}" if gpu else ("host" if need else None)}


class FailureSampler:
    """Keeps the first ``per_s`` failures of every second (epoch) of one process."""

    __slots__ = ("_left", "_second", "kept", "per_s", "skipped")

    def __init__(self, per_s: int = 20) -> None:
        self.per_s = per_s
        self._second = -1
        self._left = 0
        self.kept: list[dict[str, Any]] = []
        self.skipped = 0
        """Failures not kept because the second's budget was spent (count)."""

    def offer(self, t_ns: int, model: str, message: str) -> None:
        """Keep this failure if the current second's budget allows."""
        second = t_ns // 1_000_000_000
        if second != self._second:
            self._second, self._left = second, self.per_s
        if self._left <= 0:
            self.skipped += 1
            return
        self._left -= 1
        self.kept.append(failure_record(t_ns, model, message))

    def take(self) -> list[dict[str, Any]]:
        """Remove and return the kept records."""
        kept, self.kept = self.kept, []
        return kept
