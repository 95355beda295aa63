"""The run-directory record of model-control actions: ``model_control.jsonl`` (one row per load/unload/reload).

Written by :mod:`rmt.run.control` on the Locust master; read by checkers (warmup readiness, reconfiguration) and the
report. Times are the host's realtime clock in epoch ns (comparable with windows, traces and collector samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rmt.rundir import register_file

MODEL_CONTROL_FILE = "model_control.jsonl"


@dataclass
class ModelControlRecord:
    """One model-control action on one model, with the readiness polled while it ran."""

    model: str
    action: str
    """``load`` (fresh load, the model was unloaded first), ``reload`` (load with a config override under load) or
    ``unload``."""
    requested_ns: int
    """Epoch ns when the request was sent."""
    returned_ns: int
    """Epoch ns when Triton answered the request."""
    ok: bool
    """Whether Triton accepted the action (HTTP 200)."""
    first_ready_ns: int | None = None
    """Epoch ns of the first readiness poll (``GET v2/models/<m>/ready``) that answered 200 after the request;
    None when the model never became ready while polled."""
    last_not_ready_ns: int | None = None
    """Epoch ns of the last poll that answered not ready (before ``first_ready_ns``); None when none did."""
    polls: int = 0
    """Readiness polls sent while the action ran."""
    poll_interval_us: int = 0
    """Target interval between readiness polls, µs."""
    error: str = ""
    """Triton's message when ``ok`` is false."""
    config_changes: dict[str, Any] = field(default_factory=dict)
    """``reload``: dotted config path → new value (the override sent as ``parameters.config``)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON line."""
        return asdict(self)


register_file(MODEL_CONTROL_FILE, "rmt.run.control", f"{__name__}.ModelControlRecord",
              "model-control actions (load/unload/reload) with readiness polled while they ran")
