"""The plain inputs of the checkers: memory series, execution traces, request windows, resource budgets.

Checks are pure functions of a :class:`RunInputs`; :mod:`rmt.check.inputs` is the one place that builds it from a
run directory, and tests build it directly from synthetic arrays. Units are raw: bytes, seconds, nanoseconds,
microseconds, counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    model: str | None = None
    """The model whose process it measures (its ``model`` label), None for server- or device-wide series."""
    device: str | None = None
    """``gpu=<id>`` for a GPU series, ``host`` for host memory, None when not known."""


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
    exec_index: np.ndarray | None = None
    """Executions of the instance before each one, warmup included (optional)."""


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
    pattern: str = ""
    """Request pattern of the stream (``rmt.load`` scenario pattern name)."""
    phase: np.ndarray | None = None
    """Phase each window's requests were issued in (the phase with most requests when a window holds several)."""
    failed_by: dict[str, np.ndarray] = field(default_factory=dict)
    """Failures per reason per window: ``timeout``, ``rejected``, ``server``, ``client`` (counts)."""
    in_flight_max: np.ndarray | None = None
    """Upper bound of the requests outstanding during each window (count)."""
    latency_max_us: np.ndarray | None = None
    """Slowest successful request of each window (µs, NaN when none succeeded)."""
    timeout_us: int = 0
    """The ``timeout`` parameter the stream's requests carried (µs; 0: none)."""
    cancelled: np.ndarray | None = None
    """Streaming requests the client cancelled on purpose, per window (count), or None for unary streams."""
    responses: np.ndarray | None = None
    """Data responses of streaming requests per window (count), or None for unary streams."""
    finals: np.ndarray | None = None
    """Streaming requests whose final flag arrived, per window (count), or None for unary streams."""
    completed_responses: np.ndarray | None = None
    """Data responses of the streaming requests that completed, per window (count), or None."""
    gap_us: Any = None
    """``HdrHistogram`` of the gaps between responses of a streaming request (µs), or None."""

    @property
    def streaming(self) -> bool:
        """Whether the stream's requests were streamed (a decoupled model)."""
        return self.responses is not None

    @property
    def requests(self) -> np.ndarray:
        """Requests answered per window, successes, failures and cancelled streams alike (what a server counts)."""
        done = np.asarray(self.completed) + np.asarray(self.failed)
        return done if self.cancelled is None else done + np.asarray(self.cancelled)


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


@dataclass(frozen=True)
class FailureEvent:
    """One failed request with its error message (``failures.jsonl``; fragmentation evidence)."""

    t_s: float
    """Epoch seconds of the failure."""
    model: str
    message: str
    need_bytes: float | None = None
    """Bytes the failed allocation asked for, when known."""
    device: str | None = None
    """``gpu=<id>`` or ``host``: where it tried to allocate."""
    free_bytes: float | None = None
    """Free bytes the failing allocator itself reported (an arena or pool), when its message states them."""


@dataclass(frozen=True)
class ModelEvent:
    """A lifecycle event of a model (``events.jsonl``): load, warmup, reload — see :mod:`rmt.check.records`."""

    t_s: float
    """Epoch seconds."""
    model: str
    event: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class CounterSeries:
    """A cumulative Triton counter of one model sampled over time (e.g. ``nv_inference_compute_infer_duration_us``)."""

    measure: str
    model: str
    t_s: np.ndarray
    """Epoch seconds of each sample."""
    values: np.ndarray
    """Cumulative value (NaN where missing)."""


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
    configs: dict[str, Any] = field(default_factory=dict)
    """Model name → its ``ModelConfig`` protobuf (from the run's model repository)."""
    counters: list[CounterSeries] = field(default_factory=list)
    """Per-model cumulative Triton counters (compute durations, request counts)."""
    free_memory: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Device (``gpu=<id>``/``host``) → (epoch s, free bytes) samples."""
    failures: list[FailureEvent] = field(default_factory=list)
    events: list[ModelEvent] = field(default_factory=list)
    readiness: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Model → (epoch s, ready 0/1) samples of a readiness poller."""
    server_log: list[str] = field(default_factory=list)
    """Lines of the server's log when the run directory holds one (``tritonserver.log``)."""
    model_lines: list[str] = field(default_factory=list)
    """The models' own ``rmt_*`` log lines (``model_lines.log``, else taken from the server log)."""
    patterns: dict[str, str] = field(default_factory=dict)
    """Scenario pattern name → a short description (shape, dtype, data) for explanations."""
    promised_responses: dict[str, int] = field(default_factory=dict)
    """Streaming pattern name → responses per request it promises (0: not stated)."""
    losses: list[dict[str, Any]] = field(default_factory=list)
    """What the run lost (manifest ``losses``: dead workers, interruption, server restarts); see
    :mod:`rmt.check.completeness`."""
    sequences: list[dict[str, Any]] = field(default_factory=list)
    """Sequences as the load drove them (``sequences.jsonl``, fields of ``rmt.load.stateful.SequenceRecord``)."""
    shm_records: list[dict[str, Any]] = field(default_factory=list)
    """Shared-memory regions rmt created, step by step (``shm.jsonl``, fields of ``rmt.load.shmio.ShmRecord``)."""
    traffic: dict[str, Any] = field(default_factory=dict)
    """The run's ``traffic`` section as written (``rmt.load`` scenario format: patterns, streams)."""
    cache_size_bytes: int | None = None
    """The embedded server's response-cache size (``--cache-config local,size=N``), None when unknown or off."""
    run_path: Path | None = None
    """The run directory read (checks that need its raw records, e.g. capacity's per-step histograms)."""
