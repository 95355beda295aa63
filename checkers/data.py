"""The plain inputs of the checkers: memory series, execution traces, request windows, resource budgets.

Checks are pure functions of a :class:`RunInputs`; :mod:`checkers.inputs` is the one place that builds it from a
run directory, and tests build it directly from synthetic arrays. Units are raw: bytes, seconds, nanoseconds,
microseconds, counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class MemorySeries:
    """One memory series sampled over the run: ``values[i]`` bytes when ``requests[i]`` requests had completed."""

    name: str
    """What was measured, e.g. ``rss_bytes{process=stub,model=leak_host}`` or ``gpu_used_bytes{gpu=0}``."""
    t_s: np.ndarray
    """Sample times, seconds (monotonic or epoch: only differences matter)."""
    requests: np.ndarray
    """Completed requests (cumulative) at each sample: of the whole server, or of the series' model."""
    values: np.ndarray
    """Bytes; NaN where the sample is missing."""
    kind: str = "memory"
    """``memory`` (leak check) or ``pool`` (pool counters: pinned pool, stub shm; pool-growth check)."""


@dataclass(eq=False)
class InstanceTrace:
    """The executions of one model instance (probe ``TRACE`` rows): half-open intervals ``[start_ns, end_ns)``."""

    model: str
    instance: str
    """Instance name (``<model>_<group>_<index>`` as Triton names it, or ``<model>_<index>``)."""
    device: int
    start_ns: np.ndarray
    end_ns: np.ndarray
    cold: np.ndarray | None = None
    """1 where the execution paid a cold start (optional)."""


@dataclass(eq=False)
class StreamWindows:
    """Per-second request windows of one traffic stream (one model at one request priority)."""

    stream: str
    model: str
    t_s: np.ndarray
    """Window start times, seconds."""
    sent: np.ndarray
    """Requests issued in the window."""
    completed: np.ndarray
    """Requests that completed successfully in the window."""
    failed: np.ndarray
    """Requests that failed in the window."""
    pending: np.ndarray
    """Requests outstanding (sent, not yet answered) at the end of the window."""
    priority: int | None = None
    """Request priority level (1 highest), None when the stream sets none."""
    latency_steady: Any = None
    """``HdrHistogram`` of latencies (µs) after the warm-up windows, or None."""
    latency_first_us: np.ndarray | None = None
    """Latencies (µs) of the first requests after the model became READY (cold-start evidence), or None."""


@dataclass(frozen=True)
class ResourceNeed:
    """A rate-limiter resource one instance asks for (``instance_group.rate_limiter.resources``)."""

    name: str
    count: int
    global_: bool = False


@dataclass(eq=False)
class ModelLimits:
    """What the rate limiter knows about a model: instance names with devices, per-instance needs, priority."""

    model: str
    instances: dict[str, int]
    """Instance name → device id."""
    needs: dict[str, tuple[ResourceNeed, ...]]
    """Instance name → the resources it holds while executing."""
    priority: dict[str, int]
    """Instance name → ``rate_limiter.priority`` (a weight: 2 gets half the chances of 1; 0 counts as 1)."""


@dataclass(eq=False)
class RunInputs:
    """Everything the checkers read from one run."""

    memory: list[MemorySeries] = field(default_factory=list)
    traces: list[InstanceTrace] = field(default_factory=list)
    windows: list[StreamWindows] = field(default_factory=list)
    models: dict[str, ModelLimits] = field(default_factory=dict)
    """Model name → its rate-limiter view (from the model configs of the run)."""
    rate_limit_flags: list[str] = field(default_factory=list)
    """The server's ``--rate-limit-resource`` values, ``NAME:COUNT[:DEVICE]``."""
    rate_limiter_on: bool = False
    """Whether the server ran with ``--rate-limit=execution_count``."""
    notes: list[str] = field(default_factory=list)
    """What the adapter could not read, and why (shown with the verdicts)."""
