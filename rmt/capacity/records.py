"""The capacity sweep's own run-directory record, apart from the Locust driver so offline readers need no Locust."""

from __future__ import annotations

from dataclasses import dataclass

from rmt.core.rundir import register_file

CONTROL_FILE = "capacity_control.jsonl"


@dataclass
class StepDecision:
    """One line of ``capacity_control.jsonl``: how the live controller ended a step."""

    step: int
    """0-based step index."""
    phase: str
    """The step's phase name (``step-03@120rps``), as every window of the step carries it."""
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


register_file(CONTROL_FILE, __name__, f"{__name__}.StepDecision",
              "capacity sweep: one line per step with how the live controller ended it (stable, saturated, ...)")
