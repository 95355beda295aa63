"""What a sweep says: max sustainable rate under the SLO, the knee, what binds first, memory headroom.

Pure functions of :class:`~rmt.check.capacity_steps.StepFigures` (one scope's steps in step order), so every figure
can be recomputed offline and tested on synthetic steps.

- *sustainable* step: achieved ≥ offered × (1 − margin), failures (drops included) ≤ ``max_failure_ratio`` of the
  requests, and p99 ≤ the SLO when one is given. The max sustainable rate is the best achieved rate of those.
- *knee* of the throughput–latency curve (Kneedle on the normalised curve): the step where achieved throughput has
  grown most relative to p99 latency — past it, latency rises faster than throughput.
- *binding resource*, judged on the first non-sustainable step against the last sustainable one: GPU memory nearly
  full; Triton's queue full (rejections); the server's CPU saturated; Triton's queue growing (queue time and pending
  requests up) — the model's instances are all busy, or, when the rate limiter is on, its resources; the load
  generator's own users all busy (drops without a server queue).
- *memory headroom*: per memory series, a least-squares line of bytes vs mean requests in flight across steps
  (bytes per in-flight request); with the device's size, the in-flight count — and, by Little's law at the knee's
  latency, the request rate — at which it would run out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rmt.check.capacity_steps import StepFigures


@dataclass(frozen=True)
class Headroom:
    """Memory vs load for one memory series."""

    series: str
    bytes_per_in_flight: float
    """Slope of the least-squares line of bytes vs mean in-flight requests."""
    base_bytes: float
    """The line's intercept (bytes with nothing in flight)."""
    total_bytes: float
    """The device's size (NaN when unknown)."""
    in_flight_at_exhaustion: float
    """Requests in flight at which the line reaches ``total_bytes`` (inf when memory does not grow with load)."""
    rate_at_exhaustion_per_s: float
    """That in-flight count as a request rate at the knee's mean latency (Little's law)."""


@dataclass
class Capacity:
    """The verdict-ready figures of one scope of a sweep."""

    scope: str
    steps: int
    slo_p99_us: float
    max_sustainable_per_s: float
    """Best achieved rate of a sustainable step (NaN when none was)."""
    sustainable_phase: str
    saturation_per_s: float
    """Best achieved rate of any step."""
    knee_phase: str
    knee_per_s: float
    knee_p99_us: float
    binding: str
    """``gpu_memory``, ``queue_full``, ``cpu``, ``rate_limiter``, ``instances``, ``client``, ``none reached`` or
    ``unknown``."""
    binding_evidence: str
    headroom: list[Headroom] = field(default_factory=list)


def sustainable(step: StepFigures, slo_p99_us: float, margin: float, max_failure_ratio: float) -> bool:
    """Whether a step carried its offered load (within the margin), lost few requests and met the SLO."""
    offered = step.offered_per_s if step.scope == "all" else math.nan
    if not math.isnan(offered) and not step.achieved_per_s >= offered * (1 - margin):
        return False
    total = step.succeeded + step.failed
    if total == 0 or step.failed / total > max_failure_ratio:
        return False
    return not (slo_p99_us > 0 and not step.latency_p99_us <= slo_p99_us)


def knee(steps: Sequence[StepFigures]) -> StepFigures | None:
    """Kneedle on (achieved throughput, p99): the step maximising normalised throughput − normalised latency."""
    pts = [s for s in steps if not math.isnan(s.achieved_per_s) and not math.isnan(s.latency_p99_us)]
    if len(pts) < 3:
        return pts[-1] if pts else None
    x = np.array([s.achieved_per_s for s in pts])
    y = np.array([s.latency_p99_us for s in pts])
    xr, yr = x.max() - x.min(), y.max() - y.min()
    if xr <= 0 or yr <= 0:
        return pts[-1]
    score = (x - x.min()) / xr - (y - y.min()) / yr
    return pts[int(np.argmax(score))]


def binding_resource(base: StepFigures | None, limit: StepFigures | None, *, cpu_count: int,
                     rate_limiter: bool) -> tuple[str, str]:
    """(resource, evidence sentence) that bound first, judged on ``limit`` (first non-sustainable step)."""
    if limit is None:
        return "none reached", "every step was sustainable: raise max_steps or the rates to find the limit"
    for key, used in limit.memory_bytes.items():
        total = limit.memory_total_bytes.get(key, math.nan)
        if key.startswith(("gpu_", "nv_gpu_")) and total > 0 and used / total > 0.95:
            return "gpu_memory", f"{key} at {used / total:.0%} of the device at {limit.phase}"
    if limit.failed_rejected > 0:
        return "queue_full", (f"{limit.failed_rejected} requests rejected at {limit.phase} (\"Exceeds maximum queue "
                              "size\"): the model's max_queue_size is reached")
    base_queue = base.queue_us if base is not None and not math.isnan(base.queue_us) else 0.0
    queue_grew = limit.queue_us > max(1000.0, 2 * base_queue) and limit.pending_mean >= 1
    queue_text = (f"Triton queue time {base_queue / 1000:.1f} → {limit.queue_us / 1000:.1f} ms per request and "
                  f"{limit.pending_mean:.1f} pending at {limit.phase}")
    if cpu_count > 0 and limit.server_cpu_cores >= 0.9 * cpu_count:
        return "cpu", (f"the server's processes used {limit.server_cpu_cores:.2f} of {cpu_count} cores at "
                       f"{limit.phase}" + (f"; {queue_text}" if queue_grew else ""))
    if queue_grew:
        if rate_limiter:
            return "rate_limiter", f"{queue_text}, with the rate limiter on: its resources gate the executions"
        return "instances", f"{queue_text}: every model instance is busy (add instances or batching)"
    if limit.dropped_cap > 0:
        return "client", (f"{limit.dropped_cap} arrivals dropped by the load generator (all users busy) at "
                          f"{limit.phase} without a growing Triton queue: raise --users")
    return "unknown", f"no resource shows saturation at {limit.phase}: look at the per-step table"


def headroom(steps: Sequence[StepFigures], knee_step: StepFigures | None) -> list[Headroom]:
    """Bytes per in-flight request for every memory series (≥ 3 steps with different in-flight counts)."""
    out = []
    keys = sorted({k for s in steps for k in s.memory_bytes})
    latency_s = knee_step.latency_mean_us / 1e6 if knee_step is not None else math.nan
    for key in keys:
        pts = [(s.in_flight_mean, s.memory_bytes[key], s.memory_total_bytes.get(key, math.nan)) for s in steps
               if key in s.memory_bytes and not math.isnan(s.memory_bytes[key]) and not math.isnan(s.in_flight_mean)]
        if len(pts) < 3 or np.ptp([p[0] for p in pts]) <= 0:
            continue
        slope, intercept = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
        total = max((p[2] for p in pts), default=math.nan)
        at = (total - intercept) / slope if slope > 0 and total > 0 else math.inf
        rate = at / latency_s if latency_s > 0 and math.isfinite(at) else math.inf
        out.append(Headroom(key, float(slope), float(intercept), float(total), float(at), float(rate)))
    return out


def analyse(steps: Sequence[StepFigures], *, slo_p99_ms: float = 0.0, margin: float = 0.1,
            max_failure_ratio: float = 0.01, cpu_count: int = 0, rate_limiter: bool = False) -> Capacity:
    """The :class:`Capacity` of one scope's steps (in step order)."""
    slo_us = slo_p99_ms * 1000
    ok = [sustainable(s, slo_us, margin, max_failure_ratio) for s in steps]
    good = [s for s, k in zip(steps, ok, strict=True) if k]
    best = max(good, key=lambda s: s.achieved_per_s) if good else None
    first_bad = next((i for i, k in enumerate(ok) if not k), None)
    limit = steps[first_bad] if first_bad is not None else None
    base = steps[first_bad - 1] if first_bad else None
    k = knee(steps)
    achieved = [s.achieved_per_s for s in steps if not math.isnan(s.achieved_per_s)]
    resource, evidence = binding_resource(base, limit, cpu_count=cpu_count, rate_limiter=rate_limiter)
    return Capacity(
        scope=steps[0].scope if steps else "all", steps=len(steps), slo_p99_us=slo_us,
        max_sustainable_per_s=best.achieved_per_s if best else math.nan,
        sustainable_phase=best.phase if best else "", saturation_per_s=max(achieved) if achieved else math.nan,
        knee_phase=k.phase if k else "", knee_per_s=k.achieved_per_s if k else math.nan,
        knee_p99_us=k.latency_p99_us if k else math.nan, binding=resource, binding_evidence=evidence,
        headroom=headroom(steps, k))


def by_scope(figures: Sequence[StepFigures]) -> dict[str, list[StepFigures]]:
    """Figures grouped by scope (``all`` first), each in step order."""
    out: dict[str, list[StepFigures]] = {}
    for f in sorted(figures, key=lambda f: (f.scope != "all", f.scope, f.step)):
        out.setdefault(f.scope, []).append(f)
    return out
