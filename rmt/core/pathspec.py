"""Pattern properties that drive Triton's stateful request paths on purpose: sequences, shared memory, the cache.

A pattern of :mod:`rmt.load.scenario` may carry, besides shapes and data::

    "sequence": {"length": 4 | {"uniform": [2, 8]}, "abandon": 0.3, "in_flight": 3, "id": "uint64" | "string",
                 "probe_after_s": 0.5}
    "shm":      {"kind": "system" | "cuda", "device": 0, "lifecycle": "per_user" | "per_request" | "once",
                 "outputs": true, "output_bytes": 0}
    "cache":    {"hit_ratio": 0.8, "repeated": 4}

- ``sequence``: every request belongs to a sequence of the model's sequence batcher (``sequence_id``, START on the
  first request, END on the last). Each user keeps ``in_flight`` sequences open at once and interleaves their steps;
  a share ``abandon`` of them never sends END, so Triton must reclaim them after ``max_sequence_idle_microseconds``.
  ``probe_after_s`` after that timeout rmt sends one more step of an abandoned sequence without START: Triton must
  refuse it ("must specify the START flag"), which is the black-box proof the sequence was reclaimed.
- ``shm``: inputs travel in shared memory, outputs too with ``outputs`` (``output_bytes`` per output, default: the
  request's input bytes — right for models that echo their input). ``kind``: ``system`` (the default:
  ``tritonclient.utils.shared_memory``, a ``/dev/shm`` segment) or ``cuda`` (``tritonclient.utils.cuda_shared_memory``:
  device memory on GPU ``device``, default 0, shared with the server through a CUDA IPC handle; needs the
  ``cuda-python`` package). ``lifecycle``: ``per_user`` (one region per user, registered once), ``per_request``
  (created, registered, unregistered and freed around every request) or ``once`` (one read-only region of the pool's
  inputs per load process, registered once; outputs stay in-band). Either kind needs tritonserver on this host.
- ``cache``: a share ``hit_ratio`` of the requests repeats one of ``repeated`` fixed bodies (hits once cached), the
  rest carry inputs never sent before (misses and insertions). Needs ``response_cache { enable: true }``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rmt.core.errors import ConfigError

ID_KINDS = ("uint64", "string")
LIFECYCLES = ("per_user", "per_request", "once")
SHM_KINDS = ("system", "cuda")


@dataclass(frozen=True)
class SequenceSpec:
    """How a pattern's requests form sequences."""

    length_low: int = 4
    """Shortest sequence (requests, START and END included)."""
    length_high: int = 4
    """Longest sequence; each sequence draws its length uniformly in ``[length_low, length_high]``."""
    abandon: float = 0.0
    """Share of sequences that never send END."""
    in_flight: int = 1
    """Sequences each user keeps open at once."""
    id_kind: str = "uint64"
    """Correlation ids: ``uint64`` or ``string``."""
    probe_after_s: float = 0.5
    """Seconds after the idle timeout at which an abandoned sequence is probed (must be reclaimed by then)."""


@dataclass(frozen=True)
class ShmSpec:
    """How a pattern's tensors travel through shared memory."""

    lifecycle: str = "per_user"
    """One of :data:`LIFECYCLES`."""
    outputs: bool = False
    """Outputs are written by Triton into the region too (not with ``once``)."""
    output_bytes: int = 0
    """Bytes reserved per output; 0: the request's input bytes."""
    kind: str = "system"
    """One of :data:`SHM_KINDS`: a ``/dev/shm`` segment or CUDA device memory."""
    device: int = 0
    """``cuda``: the GPU (CUDA device index) the regions are allocated on."""


@dataclass(frozen=True)
class CacheSpec:
    """The response-cache mix of a pattern."""

    hit_ratio: float = 0.0
    """Share of requests that repeat a body of the repeated set."""
    repeated: int = 4
    """Size of the repeated set (its first use of each body is a miss)."""


def _where(path: str) -> str:
    return f"scenario {path}"


def _keys(value: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(path)} must be an object with keys from {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{_where(path)}: unknown key {unknown[0]!r}: use one of {', '.join(allowed)}")
    return value


def _num(value: Any, path: str, low: float, high: float = math.inf, integer: bool = False) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        span = f">= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
        raise ConfigError(f"{_where(path)} = {value!r}: write {kind} {span}")
    return int(value) if integer else float(value)


def parse_sequence(value: Any, path: str) -> SequenceSpec:
    """A pattern's ``sequence`` object."""
    spec = _keys(value, path, ("length", "abandon", "in_flight", "id", "probe_after_s"))
    length = spec.get("length", 4)
    if isinstance(length, Mapping):
        bounds = _keys(length, f"{path}.length", ("uniform",)).get("uniform")
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ConfigError(f"{_where(path)}.length: write a length (4) or {{\"uniform\": [lo, hi]}}")
        low = _num(bounds[0], f"{path}.length.uniform[0]", 1, integer=True)
        high = _num(bounds[1], f"{path}.length.uniform[1]", low, integer=True)
    else:
        low = high = _num(length, f"{path}.length", 1, integer=True)
    kind = spec.get("id", "uint64")
    if kind not in ID_KINDS:
        raise ConfigError(f"{_where(path)}.id = {kind!r}: use one of {', '.join(ID_KINDS)}")
    return SequenceSpec(low, high, _num(spec.get("abandon", 0.0), f"{path}.abandon", 0, 1),
                        _num(spec.get("in_flight", 1), f"{path}.in_flight", 1, integer=True), str(kind),
                        _num(spec.get("probe_after_s", 0.5), f"{path}.probe_after_s", 0))


def parse_shm(value: Any, path: str) -> ShmSpec:
    """A pattern's ``shm`` object."""
    spec = _keys(value, path, ("kind", "device", "lifecycle", "outputs", "output_bytes"))
    kind = spec.get("kind", "system")
    if kind not in SHM_KINDS:
        raise ConfigError(f"{_where(path)}.kind = {kind!r}: use one of {', '.join(SHM_KINDS)}")
    if "device" in spec and kind != "cuda":
        raise ConfigError(f"{_where(path)}.device: only CUDA regions live on a device: add \"kind\": \"cuda\" or "
                          "drop device")
    lifecycle = spec.get("lifecycle", "per_user")
    if lifecycle not in LIFECYCLES:
        raise ConfigError(f"{_where(path)}.lifecycle = {lifecycle!r}: use one of {', '.join(LIFECYCLES)}")
    outputs = spec.get("outputs", False)
    if not isinstance(outputs, bool):
        raise ConfigError(f"{_where(path)}.outputs = {outputs!r}: write true or false")
    if outputs and lifecycle == "once":
        raise ConfigError(f"{_where(path)}: a 'once' region is shared read-only by every user: set outputs false "
                          "or use lifecycle per_user / per_request")
    return ShmSpec(str(lifecycle), outputs, _num(spec.get("output_bytes", 0), f"{path}.output_bytes", 0, integer=True),
                   kind=str(kind), device=_num(spec.get("device", 0), f"{path}.device", 0, integer=True))


def parse_cache(value: Any, path: str) -> CacheSpec:
    """A pattern's ``cache`` object."""
    spec = _keys(value, path, ("hit_ratio", "repeated"))
    if "hit_ratio" not in spec:
        raise ConfigError(f"{_where(path)}: give the cache hit_ratio, e.g. {{\"hit_ratio\": 0.8}}")
    return CacheSpec(_num(spec["hit_ratio"], f"{path}.hit_ratio", 0, 1),
                     _num(spec.get("repeated", 4), f"{path}.repeated", 1, integer=True))
