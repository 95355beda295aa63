"""The sweep's settings and its ladder of step phases.

A capacity definition (``rmt/scenarios/capacity.json`` or any scenario definition) carries, beside ``traffic``::

    "capacity": {"start_rate_per_s": 20, "step_factor": 1.25, "max_steps": 12,
                 "min_step_s": 3, "max_step_s": 12, "stable_windows": 3, "stable_tolerance": 0.1,
                 "saturation_margin": 0.1, "max_failure_ratio": 0.01, "slo_p99_ms": 0}

Every step is an open-loop phase named ``step-03@120rps`` (:func:`step_name`) with the traffic mix of the scenario;
its duration is ``max_step_s`` (the controller ends it early once stable). ``step_rate_per_s`` > 0 makes the
ladder linear (``start + k * step``) instead of geometric (``start * factor**k``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from rmt.core.errors import ConfigError
from rmt.core.records import step_name


@dataclass(frozen=True)
class SweepConfig:
    """How the sweep climbs, when a step is stable, and when it stops (defaults: this class)."""

    start_rate_per_s: float = 20.0
    """Offered open-loop rate of the first step (requests/s, all streams together)."""
    step_factor: float = 1.25
    """Geometric ladder: each step offers this factor more than the previous one."""
    step_rate_per_s: float = 0.0
    """Linear ladder when > 0: each step adds this many requests/s."""
    max_steps: int = 12
    """At most this many steps."""
    min_step_s: float = 3.0
    """A step lasts at least this long (s), after its first (settling) second."""
    max_step_s: float = 12.0
    """A step that never stabilises ends after this long (s); it is then judged on what it measured."""
    window_s: int = 1
    """Seconds per measurement window of the stability rule."""
    stable_windows: int = 3
    """perf_analyzer's rule: the last this-many windows ..."""
    stable_tolerance: float = 0.1
    """... within ± this fraction of their mean, in throughput and in mean latency."""
    saturation_margin: float = 0.1
    """Saturated when achieved < offered × (1 − margin)."""
    max_failure_ratio: float = 0.01
    """Saturated when more than this fraction of the step's requests failed or were dropped."""
    slo_p99_ms: float = 0.0
    """Stop when a step's p99 latency exceeds this (ms); 0: no SLO stop (the checks still judge one)."""

    def rate(self, index: int) -> float:
        """Offered rate of step ``index`` (0-based)."""
        if self.step_rate_per_s > 0:
            return self.start_rate_per_s + index * self.step_rate_per_s
        return self.start_rate_per_s * self.step_factor ** index

    @property
    def total_s(self) -> float:
        """Longest possible sweep (every step held for ``max_step_s``)."""
        return self.max_steps * self.max_step_s

    def to_dict(self) -> dict[str, Any]:
        """The settings as a ``capacity`` mapping."""
        return asdict(self)


_RULES: dict[str, tuple[float, bool, bool]] = {
    # name: (minimum, strictly greater, integer)
    "start_rate_per_s": (0, True, False), "step_factor": (1, True, False), "step_rate_per_s": (0, False, False),
    "max_steps": (1, False, True), "min_step_s": (0, False, False), "max_step_s": (0, True, False),
    "window_s": (1, False, True), "stable_windows": (2, False, True), "stable_tolerance": (0, True, False),
    "saturation_margin": (0, False, False), "max_failure_ratio": (0, False, False), "slo_p99_ms": (0, False, False),
}


def parse_sweep(data: Mapping[str, Any] | None, origin: str = "capacity") -> SweepConfig:
    """A :class:`SweepConfig` from a ``capacity`` mapping; ConfigError names the key and the fix."""
    data = dict(data or {})
    known = [f.name for f in fields(SweepConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{origin}: unknown key {unknown[0]!r}: use one of {', '.join(known)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        minimum, strict, integer = _RULES[name]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > minimum if strict else value >= minimum) and (not integer or float(value).is_integer())
        if not ok:
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise ConfigError(f"{origin}.{name} = {value!r}: write {'an integer' if integer else 'a number'} {bound}")
        values[name] = int(value) if integer else float(value)
    config = SweepConfig(**values)
    check_durations(config, origin)
    return config


def check_durations(config: SweepConfig, origin: str = "capacity") -> None:
    """A step must have room for its settling second and the stability windows."""
    need = 1 + config.stable_windows * config.window_s
    if config.max_step_s < need:
        raise ConfigError(f"{origin}.max_step_s = {config.max_step_s:g}: give at least {need} s (1 settling second "
                          f"+ {config.stable_windows} windows of {config.window_s} s)")
    if config.min_step_s > config.max_step_s:
        raise ConfigError(f"{origin}.min_step_s = {config.min_step_s:g} exceeds max_step_s = "
                          f"{config.max_step_s:g}: lower min_step_s")


def ladder_phases(config: SweepConfig, traffic: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The step phases: the scenario's mix (the weights of its first phase, if any) at each step's rate."""
    first = (traffic.get("phases") or [{}])[0]
    weights = first.get("weights") if isinstance(first, Mapping) else None
    phases = []
    for i in range(config.max_steps):
        phase: dict[str, Any] = {"name": step_name(i, config.rate(i)), "duration_s": config.max_step_s,
                                 "rate_per_s": round(config.rate(i), 3)}
        if weights:
            phase["weights"] = dict(weights)
        phases.append(phase)
    return phases


def sweep_definition(definition: Mapping[str, Any], config: SweepConfig, users: int | None = None
                     ) -> dict[str, Any]:
    """A definition whose traffic is the sweep: open loop, constant arrivals (as perf_analyzer), the ladder; run
    duration = the longest sweep; the settings kept under ``capacity``."""
    raw = copy.deepcopy(dict(definition))
    traffic = raw.get("traffic")
    if not isinstance(traffic, dict) or not traffic.get("streams"):
        raise ConfigError("capacity: the definition has no traffic streams: add \"traffic\": {\"streams\": "
                          "[{\"model\": \"probe\"}]} or pass --models")
    traffic["mode"] = "open"
    traffic.setdefault("arrival", "constant")
    traffic.pop("rate_per_s", None)
    traffic["phases"] = ladder_phases(config, traffic)
    raw["capacity"] = config.to_dict()
    run = dict(raw.get("run") or {})
    run["duration_s"] = config.total_s
    if users is not None:
        run["users"] = users
    run.setdefault("users", 64)
    raw["run"] = run
    return raw
