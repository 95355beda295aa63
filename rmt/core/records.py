"""Run-directory records beyond load windows (:mod:`rmt.core.windows`) and collector samples (:mod:`rmt.core.samples`).

Any writer may append to these files; the checkers and the report read them by field name:

- ``failures.jsonl`` — :class:`FailureRecord`: one failed request with the server's error message and, when known,
  the bytes it tried to allocate and where (fragmentation evidence).
- ``events.jsonl`` — :class:`ModelEventRecord`: model lifecycle events (:data:`EVENTS`), e.g. a reload window
  (``reload_start``/``reload_end`` with the new limit in ``detail``) or the end of a warmup.
- ``readiness.jsonl`` — :class:`ReadinessRecord`: one poll of ``GET v2/models/<m>/ready`` by a readiness poller.
- ``capacity_control.jsonl`` — :class:`StepDecision`: how the capacity sweep's live controller ended each step.
- ``sequences.jsonl`` — :class:`SequenceRecord`: one sequence the load drove (length, outcome, reclaim probe).
- ``shm.jsonl`` — :class:`ShmRecord`: one step in the life of a shared-memory region the load created.

Plain files beside them: :data:`SERVER_LOG` (the server's log, copied by ``rmt run``), :data:`MODEL_LINES` (the zoo
models' own log lines) and :data:`MODEL_CONTROL_FILE` (an external driver's model-control actions, read when present).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

FAILURES_FILE = "failures.jsonl"
EVENTS_FILE = "events.jsonl"
READINESS_FILE = "readiness.jsonl"
CAPACITY_CONTROL_FILE = "capacity_control.jsonl"
SEQUENCES_FILE = "sequences.jsonl"
SHM_FILE = "shm.jsonl"
#: How a sequence ended (``SequenceRecord.outcome``) and what its reclaim probe found (``SequenceRecord.probe``).
SEQUENCE_OUTCOMES = ("ended", "abandoned", "failed", "open")
SEQUENCE_PROBES = ("reclaimed", "live", "error")
#: Steps of a shared-memory region's life (``ShmRecord.event``).
SHM_EVENTS = ("create", "register", "unregister", "destroy", "error", "status")
MODEL_CONTROL_FILE = "model_control.jsonl"
"""Model-control actions (``model``, ``action``, ``requested_ns``, ``returned_ns``, ``ok``, ``config_changes``,
``last_not_ready_ns``, ``first_ready_ns``), read by field name when a driver wrote them."""
SERVER_LOG = "tritonserver.log"
MODEL_LINES = "model_lines.log"
"""The zoo models' own ``rmt_*`` lines of the server log (``rmt_warmup``, ``rmt_exec``, ``rmt_graph``), copied by
``rmt run`` whatever the log's verbosity."""
_STEP = re.compile(r"^step-(?P<index>\d+)@(?P<rate>[0-9.]+)rps$")
#: Lifecycle events a writer may record (``ModelEventRecord.event``).
EVENTS = ("load_start", "loaded", "warmup_start", "warmup_end", "unload", "reload_start", "reload_end")


@dataclass
class FailureRecord:
    """One failed request and why (``failures.jsonl``)."""

    t_ns: int
    """Epoch ns of the failure."""
    model: str
    message: str
    """The error message as the server returned it."""
    need_bytes: int | None = None
    """Bytes the failed allocation asked for (null: unknown)."""
    free_bytes: int | None = None
    """Free bytes the failing allocator reported in its message (null: not stated; device samples are used)."""
    device: str | None = None
    """``gpu=<id>`` or ``host`` (null: unknown)."""


@dataclass
class ModelEventRecord:
    """One lifecycle event of a model (``events.jsonl``)."""

    t_ns: int
    """Epoch ns of the event."""
    model: str
    event: str
    """One of :data:`EVENTS`."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Free-form; ``reload_end`` may carry ``max_concurrency`` (count): the concurrency the new config allows."""


@dataclass
class ReadinessRecord:
    """One poll of a model's readiness (``readiness.jsonl``)."""

    t_ns: int
    """Epoch ns of the poll's reply."""
    model: str
    ready: bool
    """``GET v2/models/<model>/ready`` answered 200."""


@dataclass
class StepDecision:
    """One line of ``capacity_control.jsonl``: how the live controller ended a step."""

    step: int
    """0-based step index."""
    phase: str
    """The step's phase name (:func:`step_name`), as every window of the step carries it."""
    offered_per_s: float
    """Open-loop rate offered in the step (requests/s)."""
    achieved_per_s: float
    """Succeeded requests/s over the judged windows (by reply time)."""
    p99_us: float
    """p99 latency (µs, from the intended send) over the judged windows; NaN without a success."""
    failure_ratio: float
    """Failed or never answered requests / offered ones over the judged windows."""
    windows: int
    """Measurement windows the step completed."""
    stable: bool
    """Whether perf_analyzer's rule held when the step ended."""
    reason: str
    """``stable`` (moved on), ``unstable`` (held for max_step_s), ``saturated`` or ``slo`` (the sweep stopped)."""
    start_ns: int
    """Epoch ns at which the step started."""
    end_ns: int
    """Epoch ns at which the step ended."""


def step_name(index: int, rate: float) -> str:
    """``step-03@120rps`` (1-based index; the rate to 0.1 req/s, trailing ``.0`` dropped)."""
    text = f"{rate:.1f}".removesuffix(".0")
    return f"step-{index + 1:02d}@{text}rps"


def parse_step_name(name: str) -> tuple[int, float] | None:
    """``(0-based index, offered rate)`` of a step phase name, or None for another phase."""
    m = _STEP.match(name)
    return (int(m.group("index")) - 1, float(m.group("rate"))) if m else None


@dataclass
class SequenceRecord:
    """One sequence as rmt drove it (``sequences.jsonl``)."""

    t_ns: int
    """Epoch ns the record was written (its last step, or its probe)."""
    model: str
    stream: str
    correlation_id: str
    id_kind: str
    """``uint64`` or ``string``."""
    start_ns: int
    """Epoch ns the START step was answered."""
    last_ns: int
    """Epoch ns the last step was answered."""
    length: int
    """Steps the sequence was meant to have."""
    steps: int
    """Steps answered successfully."""
    outcome: str
    """One of :data:`SEQUENCE_OUTCOMES`: END answered, abandoned on purpose, a step failed, still open at the end."""
    idle_us: int
    """The model's ``max_sequence_idle_microseconds``."""
    probe_after_s: float
    """Abandoned: the probe was due this long after the idle timeout."""
    probe_ns: int = 0
    """Epoch ns the probe was answered (0: not probed)."""
    probe: str = ""
    """One of :data:`SEQUENCE_PROBES` (``reclaimed``: Triton refused the step; ``live``: it still held the sequence)."""
    probe_error: str = ""


@dataclass
class ShmRecord:
    """One step in the life of a region rmt created (``shm.jsonl``)."""

    t_ns: int
    """Epoch ns of the step."""
    event: str
    """One of :data:`SHM_EVENTS` (``destroy``: unlinked, or for CUDA freed); ``status``: the process's final look at
    the server and ``/dev/shm``."""
    region: str
    """Triton region name (``status``: the process's prefix)."""
    byte_size: int = 0
    pid: int = 0
    """The load process that created it."""
    detail: str = ""
    """The error message (``error``), or for ``status`` the names still registered / still in ``/dev/shm``."""
    registered_left: int = 0
    """``status``: regions under the prefix the server still has registered (-1: could not ask)."""
    files_left: int = 0
    """``status``: ``/dev/shm`` entries under the prefix still present."""
    kind: str = "system"
    """``system`` (a ``/dev/shm`` segment) or ``cuda`` (device memory; no file); ``status``: the kinds whose
    registrations were asked for, comma-separated. A record without it is ``system``."""
