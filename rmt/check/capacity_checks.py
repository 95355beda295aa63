"""The capacity verdict as a check (``slo``, one of :data:`rmt.check.spec.CHECKS`), and its one-line summary.

``slo.p99_ms = 50, slo.min_rate_per_s = 80`` judges a sweep's run directory: one verdict for all streams together
and one per stream (model × priority × pattern), measured = the max sustainable rate under the SLO (req/s, see
:func:`rmt.check.capacity_analysis.sustainable`), PASS when it reaches ``min_rate_per_s``. The explanation names the
knee, the saturation throughput and the resource that binds first; the evidence carries them and the memory headroom.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

from rmt.check.base import Check, Param, Verdict
from rmt.check.capacity_analysis import Capacity, analyse, by_scope
from rmt.check.capacity_steps import step_figures
from rmt.check.data import RunInputs
from rmt.check.quantity import parse_number
from rmt.core.rundir import RunDir


def _nonneg(value: Any) -> float:
    return parse_number(value)


def _ratio(value: Any) -> float:
    return parse_number(value, high=1.0)


def cpu_count_of(manifest: dict[str, Any]) -> int:
    """CPU cores of the machine that ran the server (the manifest's machine_info; this machine's otherwise)."""
    info = manifest.get("machine_info") or {}
    return int(info.get("cpu_count") or os.cpu_count() or 0)


def headroom_text(cap: Capacity) -> str:
    """The tightest memory headroom as one clause ('' when no series grows with load)."""
    finite = [h for h in cap.headroom if math.isfinite(h.rate_at_exhaustion_per_s)]
    if not finite:
        return ""
    h = min(finite, key=lambda h: h.rate_at_exhaustion_per_s)
    return (f"; memory: {h.series} grows {h.bytes_per_in_flight:,.0f} B per in-flight request, full at "
            f"≈{h.in_flight_at_exhaustion:,.0f} in flight (≈{h.rate_at_exhaustion_per_s:,.0f} req/s)")


def summary(cap: Capacity) -> str:
    """One sentence: sustainable rate, knee, saturation, what binds first."""
    slo = f" under p99 ≤ {cap.slo_p99_us / 1000:g} ms" if cap.slo_p99_us > 0 else ""
    best = (f"sustains {cap.max_sustainable_per_s:.1f} req/s{slo} ({cap.sustainable_phase})"
            if not math.isnan(cap.max_sustainable_per_s) else f"no step was sustainable{slo}")
    return (f"{cap.scope}: {best}; knee at {cap.knee_phase} ({cap.knee_per_s:.1f} req/s, p99 "
            f"{cap.knee_p99_us / 1000:.1f} ms); saturates at {cap.saturation_per_s:.1f} req/s; binds first: "
            f"{cap.binding} — {cap.binding_evidence}{headroom_text(cap)}")


class SloCheck(Check):
    """Max sustainable rate of a capacity sweep under a p99 SLO (per stream and in all)."""

    name = "slo"
    summary = "max sustainable request rate of a capacity sweep under the p99 SLO"
    measure = "capacity_max_sustainable_per_s"
    unit = "per_s"
    comparison = ">="
    params: ClassVar[tuple[Param, ...]] = (
        Param("p99_ms", 0, _nonneg, "p99 latency SLO in ms (0: none, a step need only carry its load)"),
        Param("min_rate_per_s", 0, _nonneg, "the sustainable rate must reach this many requests/s"),
        Param("margin", 0.1, _ratio, "a step carries its load when achieved >= offered x (1 - margin)"),
        Param("max_failure_ratio", 0.01, _ratio, "a step fails when more of its requests failed or were dropped"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict for ``all`` and one per stream of the sweep's steps."""
        if run.run_path is None:
            return self.no_evidence("capacity sweep steps (step-NN@Rrps phases)")
        scopes = by_scope(step_figures(run.run_path))
        if not scopes:
            return self.no_evidence("capacity sweep steps (step-NN@Rrps phases)")
        cpus = cpu_count_of(RunDir(run.run_path, create=False).manifest())
        verdicts = []
        for scope, steps in scopes.items():
            cap = analyse(steps, slo_p99_ms=self.values["p99_ms"], margin=self.values["margin"],
                          max_failure_ratio=self.values["max_failure_ratio"], cpu_count=cpus,
                          rate_limiter=run.rate_limiter_on)
            measured = 0.0 if math.isnan(cap.max_sustainable_per_s) else cap.max_sustainable_per_s
            evidence = {"knee_phase": cap.knee_phase, "knee_per_s": cap.knee_per_s, "knee_p99_us": cap.knee_p99_us,
                        "saturation_per_s": cap.saturation_per_s, "binding": cap.binding,
                        "binding_evidence": cap.binding_evidence, "steps": cap.steps,
                        "headroom": [h.__dict__ for h in cap.headroom]}
            verdicts.append(self.verdict(scope, measured, self.values["min_rate_per_s"], summary(cap), evidence))
        return verdicts
