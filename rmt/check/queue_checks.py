"""Black-box scheduling checks: queue policies as configured, and concurrency from Triton's own counters.

Queue policy (``dynamic_batching.default_queue_policy`` / ``priority_queue_policy``, read through
:func:`rmt.core.modelconfig.queue_policy`), judged per model and priority level from the request windows' failure
reasons:

- ``rejected_unbounded``: "Exceeds maximum queue size" rejections on a level whose ``max_queue_size`` is 0;
- ``rejected_not_full``: rejections in a window where the level never had ``max_queue_size`` requests outstanding;
- ``never_rejected_full``: windows ending with more than ``max_queue_size`` + what the instances execute at once
  outstanding on the level, while the level rejected nothing all run (needs ``min_overfull`` such windows);
- ``timeout_on_delay``: queue-timeout rejections on a ``DELAY`` level (it must run them late instead);
- ``timeout_without_timeout``: queue-timeout rejections where no timeout applies (default 0: overrides ignored);
- ``late_success``: on a ``REJECT`` level, a success slower than the effective timeout + ``slack``.

Concurrency (Little's law): Δ``nv_inference_compute_infer_duration_us`` / Δt is the average number of requests in
execution. Per model it must stay ≤ instances × requests one execution can hold; per rate-limiter resource, Σ
models' executions in flight × need ≤ the budget (a batched execution counts its duration once per request, so the
request concurrency is scaled by Δ``nv_inference_exec_count``/Δrequests). Budgets come from the server's flags, or
from ``budget`` to judge a run against a declared budget.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmt.check.base import FAIL, PASS, Check, Param, Verdict
from rmt.check.data import CounterSeries, RunInputs, StreamWindows
from rmt.check.quantity import parse_duration, parse_number
from rmt.check.ratelimit import effective_budgets, parse_flags
from rmt.core.modelconfig import queue_policy

COMPUTE = "nv_inference_compute_infer_duration_us"
EXECS = "nv_inference_exec_count"
SUCCESS = "nv_inference_request_success"


def parse_budget(value: Any) -> tuple[str, ...]:
    """``"R1:2 R2:4:0"`` (space, ``+`` or ``|`` separated ``NAME:COUNT[:DEVICE]``) → flags; "" → none."""
    items = tuple(t for t in str(value).replace("+", " ").replace("|", " ").split() if t)
    try:
        parse_flags(items)
    except Exception as exc:  # ConfigError from the flag parser
        raise ValueError(f"{value!r} is not a budget: write NAME:COUNT[:DEVICE] items, e.g. R1:2 ({exc})") from None
    return items


def budget_param(doc: str) -> Param:
    """The ``budget`` parameter shared by the rate-limit checks."""
    return Param("budget", "", parse_budget, doc)


class QueuePolicyCheck(Check):
    """Queue-full rejections and queue timeouts happen exactly as the model's queue policy says."""

    name = "queue_policy"
    summary = "rejections and queue timeouts per priority level vs max_queue_size and REJECT/DELAY policies"
    measure = "queue_policy_violations_count"
    unit = "count"
    params = (
        Param("max_violations", 0, lambda v: parse_number(v), "windows breaking the policy that are tolerated"),
        Param("slack", "500ms", parse_duration, "REJECT levels: latency above the timeout still tolerated"),
        Param("min_overfull", 3, lambda v: parse_number(v, low=1),
              "overfull windows without any rejection before a bounded queue counts as not enforced"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per (model, priority level) with traffic and a dynamic batcher."""
        levels: dict[tuple[str, int], list[StreamWindows]] = defaultdict(list)
        for w in run.windows:
            config = run.configs.get(w.model)
            if config is not None and config.HasField("dynamic_batching") and w.failed_by:
                level = w.priority or int(config.dynamic_batching.default_priority_level) or 0
                levels[(w.model, level)].append(w)
        if not levels:
            return self.no_evidence("request windows of models with a dynamic batcher (and their model configs)")
        return [self._judge(model, level, streams, run) for (model, level), streams in sorted(levels.items())]

    def _judge(self, model: str, level: int, streams: list[StreamWindows], run: RunInputs) -> Verdict:
        config = run.configs[model]
        policy = queue_policy(config, level)
        assert policy is not None
        limits = run.models.get(model)
        instances = len(limits.instances) if limits else sum(g.count or 1 for g in config.instance_group) or 1
        capacity = instances * max(1, int(config.max_batch_size))
        t = np.unique(np.concatenate([w.t_s for w in streams]))

        def total(get: Any) -> np.ndarray:
            out = np.zeros(len(t))
            for w in streams:
                out[np.searchsorted(t, w.t_s)] += np.nan_to_num(np.asarray(get(w), dtype=float))
            return out

        rejected, timeouts = total(lambda w: w.failed_by["rejected"]), total(lambda w: w.failed_by["timeout"])
        outstanding_max, outstanding_end = total(lambda w: w.in_flight_max), total(lambda w: w.pending)
        n = policy.max_queue_size
        found: dict[str, int] = {
            "rejected_unbounded": int(np.sum(rejected > 0)) if n == 0 else 0,
            "rejected_not_full": int(np.sum((rejected > 0) & (outstanding_max < n))) if n else 0,
            "never_rejected_full": 0, "timeout_on_delay": 0, "timeout_without_timeout": 0, "late_success": 0}
        overfull = int(np.sum(outstanding_end > n + capacity)) if n else 0
        if n and overfull >= self.values["min_overfull"] and rejected.sum() == 0:
            found["never_rejected_full"] = overfull
        if policy.timeout_action == "DELAY":
            found["timeout_on_delay"] = int(np.sum(timeouts > 0))
        if policy.default_timeout_us == 0:
            found["timeout_without_timeout"] = int(np.sum(timeouts > 0))
        elif policy.timeout_action == "REJECT":
            for w in streams:
                timeout = policy.default_timeout_us
                if policy.allow_timeout_override and 0 < w.timeout_us < timeout:
                    timeout = w.timeout_us
                slowest = np.nan_to_num(np.asarray(w.latency_max_us if w.latency_max_us is not None else []))
                found["late_success"] += int(np.sum(slowest > timeout + self.values["slack"] * 1e6))
        broken = sum(found.values())
        shown = {k: v for k, v in found.items() if v}
        why = (f"{model} priority {level} ({policy.timeout_action}, max_queue_size {n or 'unbounded'}, timeout "
               f"{policy.default_timeout_us / 1e6:g} s): {int(rejected.sum())} queue-full rejections, "
               f"{int(timeouts.sum())} queue timeouts" + (f"; policy broken in {shown}" if shown else
                                                         ", as configured"))
        return self.verdict(f"{model} p{level}", float(broken), self.values["max_violations"], why, {
            "violations": found, "rejected": float(rejected.sum()), "timeouts": float(timeouts.sum()),
            "overfull_windows": overfull, "capacity": capacity,
            "policy": {"timeout_action": policy.timeout_action, "default_timeout_us": policy.default_timeout_us,
                       "allow_timeout_override": policy.allow_timeout_override, "max_queue_size": n}})


def interval_rate(c: CounterSeries, interval_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(interval start s, Δvalue/Δt per s) of a cumulative counter resampled on an ``interval_s`` grid."""
    ok = np.isfinite(c.values) & np.isfinite(c.t_s)
    t, v = c.t_s[ok], c.values[ok]
    if len(t) < 2 or t[-1] - t[0] < interval_s:
        return np.zeros(0), np.zeros(0)
    grid = np.arange(t[0], t[-1] + 1e-9, interval_s)
    cum = np.interp(grid, t, v)
    rate = np.diff(cum) / np.diff(grid)
    return grid[:-1], np.where(rate < 0, np.nan, rate)  # a counter reset (server restart) is not a rate


class ConcurrencyCheck(Check):
    """Average execution concurrency from Triton's counters vs instances and the rate limiter's budget."""

    name = "concurrency"
    summary = "Δcompute_infer_duration/Δt per model and per resource vs what instances and the limiter allow"
    measure = "concurrency_peak_over_allowed_ratio"
    params = (
        Param("interval", "1s", parse_duration, "length of the intervals the average concurrency is taken over"),
        Param("tolerance", 0.1, lambda v: parse_number(v), "share above the allowed concurrency tolerated"),
        budget_param("rate-limiter budget to judge against (NAME:COUNT[:DEVICE] …); default: the server's"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model with a compute-duration counter, and one per rate-limiter resource."""
        rates: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for c in run.counters:
            if c.measure == COMPUTE:
                t, per_s = interval_rate(c, self.values["interval"])
                if len(t):
                    rates[c.model] = (t, per_s / 1e6)  # µs of execution per s = requests executing
        if not rates:
            return self.no_evidence(f"{COMPUTE} samples (the collector's triton_metrics source) over an interval")
        limit = 1.0 + self.values["tolerance"]
        out = []
        for model, (t, conc) in sorted(rates.items()):
            allowed = self._instances(run, model)
            if not allowed:  # no config, or no instances of its own (an ensemble: its steps are counted apart)
                continue
            peak = float(np.nanmax(conc)) if np.isfinite(conc).any() else math.nan
            out.append(self.verdict(f"{model} (instances)", peak / allowed, limit,
                                    f"{model} executed {peak:.2f} requests at once on average over "
                                    f"{self.values['interval']:g} s at peak; {allowed:g} instance slots exist",
                                    {"allowed": allowed, "peak": peak, "plot": _plot(t, conc)}))
        out += self._resources(run, rates, limit)
        return out or self.no_evidence("model configs of the counted models")

    @staticmethod
    def _instances(run: RunInputs, model: str) -> float | None:
        config, limits = run.configs.get(model), run.models.get(model)
        if config is None or limits is None:
            return None
        batched = config.HasField("dynamic_batching") or config.HasField("sequence_batching")
        return float(len(limits.instances) * (max(1, int(config.max_batch_size)) if batched else 1))

    def _resources(self, run: RunInputs, rates: dict[str, tuple[np.ndarray, np.ndarray]], limit: float
                   ) -> list[Verdict]:
        flags = list(self.values["budget"]) or (run.rate_limit_flags if run.rate_limiter_on else None)
        if flags is None:
            return []
        out = []
        for h in held_by_resource(run, flags, self.values["interval"]):
            why = (f"{' + '.join(h.needs)} held {h.peak:.2f} {h.resource} on average at peak (Δcompute time/Δt per "
                   f"execution × need); the budget is {h.budget:g}")
            out.append(self.verdict(f"{h.resource} (rate limiter)", h.peak / h.budget, limit, why,
                                    {"budget": h.budget, "needs": h.needs, "peak_held": h.peak,
                                     "plot": _plot(h.t_s, h.held)},
                                    status=PASS if h.peak <= h.budget * limit else FAIL))
        return out


@dataclass(frozen=True)
class Held:
    """Average units of one rate-limiter resource held over time, from Triton's counters (Little's law)."""

    resource: str
    budget: float
    """The budget summed over devices (Triton's counters are per model, not per device)."""
    needs: dict[str, int]
    """Model → units one of its executions holds."""
    t_s: np.ndarray
    held: np.ndarray

    @property
    def peak(self) -> float:
        """The highest interval average."""
        return float(self.held.max()) if len(self.held) else 0.0


def execution_rates(run: RunInputs, interval_s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model → (interval start s, executions in flight on average): Δcompute_infer_duration/Δt is the requests in
    execution; a batched execution counts its duration once per request, so it is scaled by Δexec_count/Δrequests
    where both counters were sampled."""
    by: dict[tuple[str, str], CounterSeries] = {(c.measure, c.model): c for c in run.counters}
    out = {}
    for (measure, model), c in by.items():
        if measure != COMPUTE:
            continue
        t, per_s = interval_rate(c, interval_s)
        if not len(t):
            continue
        conc = per_s / 1e6
        execs, reqs = by.get((EXECS, model)), by.get((SUCCESS, model))
        if execs is not None and reqs is not None:
            te, e = interval_rate(execs, interval_s)
            tr, r = interval_rate(reqs, interval_s)
            if len(te) and len(tr):
                e_at, r_at = np.interp(t, te, np.nan_to_num(e)), np.interp(t, tr, np.nan_to_num(r))
                conc = conc * np.where(r_at > 0, np.minimum(1.0, e_at / np.where(r_at > 0, r_at, 1.0)), 1.0)
        out[model] = (t, conc)
    return out


def held_by_resource(run: RunInputs, flags: list[str], interval_s: float) -> list[Held]:
    """Per rate-limiter resource with counted users: Σ models' executions in flight × need, per interval."""
    budgets, _ = effective_budgets(run.models.values(), parse_flags(flags))
    per_resource: dict[str, float] = defaultdict(float)
    for (resource, _device), count in budgets.items():
        per_resource[resource] += count
    rates = execution_rates(run, interval_s)
    out = []
    for resource, budget in sorted(per_resource.items()):
        users = {}
        for model, lim in run.models.items():
            needs = [n.count for ns in lim.needs.values() for n in ns if n.name == resource]
            if needs and model in rates:
                users[model] = max(needs)
        if not users or budget <= 0:
            continue
        t = min((rates[m][0] for m in users), key=len)
        held = np.zeros(len(t))
        for m, need in users.items():
            held += need * np.interp(t, rates[m][0], np.nan_to_num(rates[m][1]))
        out.append(Held(resource, budget, users, t, held))
    return out


def _plot(t: np.ndarray, y: np.ndarray, points: int = 200) -> list[list[float]]:
    step = max(1, len(t) // points)
    return [[float(a), float(b)] for a, b in zip(t[::step], y[::step], strict=True)]
