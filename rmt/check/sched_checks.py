"""Scheduling checks: rate-limit accounting, fairness, starvation, rate-limiter weights, request priority, warmup."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from rmt.check import concurrency, fairness, latency
from rmt.check.base import Check, Param, Verdict
from rmt.check.data import InstanceTrace, RunInputs, StreamWindows
from rmt.check.quantity import parse_duration, parse_number
from rmt.check.queue_checks import budget_param, held_by_resource
from rmt.check.ratelimit import Contention, contention, effective_budgets, parse_flags

UNSERVED = ("timeout", "rejected")
"""Failure reasons that mean the scheduler never served the request (queue timeout, queue full)."""


def _nonneg(value: Any) -> float:
    return parse_number(value)


def _unit_interval(value: Any) -> float:
    return parse_number(value, high=1.0, inclusive_low=False)


def _positive(value: Any) -> float:
    return parse_number(value, inclusive_low=False)


def _backlogged(w: StreamWindows) -> bool:
    """A stream that had requests waiting in at least half of its windows wanted more than it got."""
    return bool(len(w.pending)) and float(np.mean(np.asarray(w.pending) > 0)) >= 0.5


def _model_weight(run: RunInputs, model: str) -> float:
    """The rate-limiter weight of a model (1/priority of its instances), 1 without the rate limiter."""
    limits = run.models.get(model)
    if not run.rate_limiter_on or limits is None or not limits.priority:
        return 1.0
    return 1.0 / min(limits.priority.values())


class RateLimitCheck(Check):
    """Resources held by executing instances never exceed the budget: at every instant per device from execution
    traces (the zoo's ``TRACE``), else on average per interval from Triton's counters (any model)."""

    name = "rate_limit"
    summary = "resources held by executing instances at any instant vs the rate-limiter budget"
    measure = "rate_limit_peak_held_count"
    unit = "count"
    params = (Param("tolerance", 0, _nonneg, "resource units above the budget still tolerated"),
              budget_param("budget to judge against (NAME:COUNT[:DEVICE] …) even without the server's rate "
                           "limiter; default: the server's flags"),
              Param("interval", "1s", parse_duration,
                    "without execution traces: the interval Triton's counters are averaged over"),
              Param("counter_tolerance", 0.1, _nonneg,
                    "without execution traces: share above the budget an interval average may reach (sampling "
                    "jitter of the counters)"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per (resource, device) that traced instances hold."""
        declared = list(self.values["budget"])
        if not run.rate_limiter_on and not declared:
            return self.no_evidence("rate limiter", "the server ran without --rate-limit=execution_count: nothing "
                                    "to account")
        budgets, _ = effective_budgets(run.models.values(), parse_flags(declared or run.rate_limit_flags))
        held: dict[tuple[str, int | None], list[tuple[InstanceTrace, int]]] = defaultdict(list)
        for trace in run.traces:
            limits = run.models.get(trace.model)
            for need in limits.needs.get(trace.instance, ()) if limits else ():
                held[(need.name, None if need.global_ else trace.device)].append((trace, need.count))
        if not held:
            return self._from_counters(run, declared or run.rate_limit_flags)
        return [self._judge(key, held[key], budgets.get(key, 0)) for key in sorted(held, key=str)]

    def _from_counters(self, run: RunInputs, flags: list[str]) -> list[Verdict]:
        """Without execution traces: the average units held per interval from Triton's counters (Little's law), which
        a limiter that works never lets exceed the budget; a momentary excess inside an interval cannot be seen."""
        users = sorted({w.model for w in run.windows if run.models.get(w.model) is not None
                        and any(run.models[w.model].needs.values())})
        found = held_by_resource(run, flags, self.values["interval"])
        if not found:
            if not users:
                return self.no_evidence("traffic to models whose instances hold rate-limiter resources")
            return [self.cannot_judge(", ".join(users), "no execution traces (the zoo's TRACE output) and no "
                                      "nv_inference_compute_infer_duration_us samples of these models (the "
                                      "collector's triton_metrics source): resources held cannot be seen")]
        out = []
        for h in found:
            limit = h.budget * (1 + self.values["counter_tolerance"])
            out.append(self.verdict(f"{h.resource} (Triton counters)", h.peak, limit,
                                    f"{' + '.join(h.needs)} held {h.peak:.2f} {h.resource} on average at peak over "
                                    f"{self.values['interval']:g} s (no execution traces: Δcompute time/Δt per "
                                    f"execution × need, from Triton's counters); the budget is {h.budget:g}",
                                    {"budget": h.budget, "needs": h.needs, "source": "triton counters"}))
        return out

    def _judge(self, key: tuple[str, int | None], holders: list[tuple[InstanceTrace, int]], budget: int) -> Verdict:
        resource, device = key
        starts = np.concatenate([t.start_ns for t, _ in holders])
        ends = np.concatenate([t.end_ns for t, _ in holders])
        weights = np.concatenate([np.full(len(t.start_ns), c, dtype=float) for t, c in holders])
        names = [t.instance for t, _ in holders for _ in range(len(t.start_ns))]
        prof = concurrency.profile(starts, ends, weights)
        limit = budget + self.values["tolerance"]
        where = "global" if device is None else f"device {device}"
        subject = f"{resource}@{where}"
        evidence: dict[str, Any] = {"budget": budget, "executions": len(starts),
                                    "instances": sorted({t.instance for t, _ in holders}),
                                    "time_above_budget_ns": prof.time_above_ns(limit)}
        first = prof.first_above(limit)
        if first is None:
            return self.verdict(subject, prof.peak, limit,
                                f"at most {prof.peak:g} of {budget} {resource} held on {where} at any instant",
                                evidence)
        t = int(prof.t_ns[first])
        open_now = concurrency.open_at(t, starts, ends)
        evidence.update(first_violation_ns=t,
                        executing=sorted({names[i] for i in np.flatnonzero(open_now).tolist()}))
        return self.verdict(subject, prof.peak, limit,
                            f"{prof.peak:g} {resource} held on {where} at once but the budget is {budget}: "
                            f"the rate limiter let {len(evidence['executing'])} instances run together", evidence)


class FairnessCheck(Check):
    """Served share vs (weighted) max-min fair share of each model's demand → Jain's index."""

    name = "fairness"
    summary = "Jain's index of served / max-min fair share across models"
    measure = "fairness_jain_index"
    comparison = ">="
    params = (Param("min_jain", 0.9, _unit_interval, "lowest tolerated Jain's index (1 = perfectly fair)"),)

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict over all models with traffic."""
        by_model: dict[str, list[StreamWindows]] = defaultdict(list)
        for w in run.windows:
            by_model[w.model].append(w)
        if len(by_model) < 2:
            return self.no_evidence("request windows of at least two models")
        models = sorted(by_model)
        served = [float(sum(np.sum(w.completed) for w in by_model[m])) for m in models]
        demand = [math.inf if any(_backlogged(w) for w in by_model[m]) else float(sum(np.sum(w.sent)
                                                                                   for w in by_model[m]))
                  for m in models]
        weights = [_model_weight(run, m) for m in models]
        index, fair = fairness.fairness_index(served, demand, weights)
        shares = {m: {"served": s, "fair_share": f, "demand": None if math.isinf(d) else d, "weight": wt}
                  for m, s, f, d, wt in zip(models, served, fair.tolist(), demand, weights, strict=True)}
        worst = min(shares, key=lambda m: shares[m]["served"] / shares[m]["fair_share"]
                    if shares[m]["fair_share"] > 0 else math.inf)
        return [self.verdict(", ".join(models), index, self.values["min_jain"],
                             f"Jain's index {index:.3f} over {len(models)} models; least served vs its fair share: "
                             f"{worst} ({shares[worst]['served']:.0f} of {shares[worst]['fair_share']:.0f})",
                             {"models": shares})]


class StarvationCheck(Check):
    """Longest stretch without a *successful* reply while the stream's requests waited, per stream."""

    name = "starvation"
    summary = "longest gap without a successful reply while requests waited (timeouts and rejections are no service)"
    measure = "starvation_gap_s"
    unit = "s"
    params = (Param("max_gap", "5s", parse_duration, "longest tolerated starvation gap"),
              Param("window", "1s", parse_duration, "length of a request window"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per stream: its windows on a hole-free grid up to the last window of the run."""
        if not run.windows:
            return self.no_evidence("request windows")
        step = self.values["window"]
        first = min(float(w.t_s[0]) for w in run.windows if len(w.t_s))
        end = max(float(w.t_s[-1]) for w in run.windows if len(w.t_s))
        out = []
        for w in run.windows:
            unserved = sum((np.asarray(w.failed_by[k], dtype=float) for k in UNSERVED if k in w.failed_by),
                           np.zeros(len(w.t_s)))
            # A streaming request the client cancelled by plan was being served (or gave up by design): not starved.
            done = w.completed if w.cancelled is None else np.asarray(w.completed) + np.asarray(w.cancelled)
            t, served, waiting = fairness.on_grid(w.t_s, done, w.pending, unserved, step, end)
            gap = fairness.longest_starvation(t, served, waiting, step)
            n_served, n_unserved = float(np.sum(done)), float(np.sum(unserved))
            when = "" if math.isnan(gap.start_s) else f" from t={gap.start_s - first:.0f} s"
            tally = f"{n_served:.0f} of {n_served + n_unserved:.0f} answered requests served"
            if n_unserved:
                tally += f" ({n_unserved:.0f} timed out or rejected in the queue)"
            out.append(self.verdict(w.stream, gap.length_s, self.values["max_gap"],
                                    f"{w.model}: {tally}; longest stretch without a successful reply while "
                                    f"requests waited: {gap.length_s:g} s{when}",
                                    {"start_s": gap.start_s, "model": w.model, "served": n_served,
                                     "unserved": n_unserved}))
        return out


def _expected_pairs(text: str) -> tuple[tuple[str, str, float], ...]:
    """``'a/b=2 c/d=1.5'`` → ``(("a", "b", 2.0), ("c", "d", 1.5))``; ValueError naming the fix otherwise."""
    out = []
    for item in text.split():
        names, _, ratio = item.partition("=")
        hi, _, lo = names.partition("/")
        try:
            value = float(ratio)
        except ValueError:
            value = math.nan
        if not hi or not lo or not value > 0:
            raise ValueError(f"{item!r}: write HIGH/LOW=RATIO, e.g. rl_high/rl_low=2")
        out.append((hi, lo, value))
    return tuple(out)


class WeightsCheck(Check):
    """Triton QA's weighted-priority expectations: under contention completions follow the rate-limiter weights
    (1 vs 2 → ratio ≈ 2, QA's > 1.8); with resources for every instance that has work, the weights never arbitrate
    and the pair completes alike (QA's plentiful case, |diff| small)."""

    name = "weights"
    summary = "completion ratio of models sharing a resource vs their weight ratio (under contention) or 1 (without)"
    measure = "weight_ratio_achieved"
    comparison = ">="
    params = (Param("min_ratio", 0.9, _positive,
                    "lowest tolerated observed/expected completion ratio (0.9 × 2 = Triton QA's 1.8); without "
                    "contention the ratio must lie within [min_ratio, 1/min_ratio] of 1"),
              Param("expect", "", lambda v: _expected_pairs(str(v)),
                    "pairs judged against the ratio a deployment intends, whatever the configs say: "
                    "'HIGH/LOW=RATIO …' (e.g. 'a/b=2'); backlogged pairs of different configured weights are "
                    "judged too"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per pair of backlogged models with different weights that share a resource, and per
        ``expect`` pair."""
        served: dict[str, float] = defaultdict(float)
        outstanding: dict[str, float] = defaultdict(float)
        backlogged: set[str] = set()
        for w in run.windows:
            served[w.model] += float(np.sum(w.completed))
            outstanding[w.model] += float(np.median(w.pending)) if len(w.pending) else 0.0
            if _backlogged(w):
                backlogged.add(w.model)
        keys: dict[str, set[tuple[str, int | None]]] = {
            m: {(n.name, None if n.global_ else lim.instances[i]) for i, needs in lim.needs.items() for n in needs}
            for m, lim in run.models.items()}
        pairs: list[tuple[str, str, float, bool]] = []
        for a in sorted(backlogged):
            for b in sorted(backlogged):
                wa, wb = _model_weight(run, a), _model_weight(run, b)
                if wa > wb and keys.get(a, set()) & keys.get(b, set()):
                    pairs.append((a, b, wa / wb, False))
        for hi, lo, ratio in self.values["expect"]:
            if hi in served and lo in served:
                pairs = [p for p in pairs if {p[0], p[1]} != {hi, lo}] + [(hi, lo, ratio, True)]
        if not pairs:
            return self.no_evidence("backlogged models with different rate-limiter weights sharing a resource")
        budgets, _ = effective_budgets(run.models.values(), parse_flags(run.rate_limit_flags))
        load = contention(run.models, budgets, outstanding)
        out = []
        for hi, lo, weight_ratio, declared in pairs:
            observed = served[hi] / served[lo] if served[lo] > 0 else math.inf
            evidence: dict[str, Any] = {"completed": {hi: served[hi], lo: served[lo]},
                                        "outstanding": {hi: outstanding[hi], lo: outstanding[lo]}}
            shared = [load[k] for k in sorted(keys.get(hi, set()) & keys.get(lo, set()), key=str) if k in load]
            evidence["contention"] = [{"resource": c.resource, "device": c.device, "budget": c.budget,
                                       "wanted": c.wanted, "models": list(c.models)} for c in shared]
            if declared or any(c.contended for c in shared):
                why = "declared by weights.expect" if declared else "contended: " + "; ".join(
                    f"{c.wanted:g} {c.resource} wanted at once, budget {c.budget}" for c in shared if c.contended)
                out.append(self._judged(hi, lo, observed, weight_ratio, why, evidence))
            else:
                out.append(self._uncontended(hi, lo, observed, shared, run, evidence))
        return out

    def _judged(self, hi: str, lo: str, observed: float, expected: float, why: str, evidence: dict[str, Any]
                ) -> Verdict:
        return self.verdict(f"{hi} vs {lo}", observed / expected, self.values["min_ratio"],
                            f"{hi} completed {observed:.2f}× as many requests as {lo}; weights expect {expected:g}× "
                            f"({why}; need ≥ {self.values['min_ratio'] * expected:.2f}×)",
                            {**evidence, "expected_ratio": expected})

    def _uncontended(self, hi: str, lo: str, observed: float, shared: list[Contention], run: RunInputs,
                     evidence: dict[str, Any]) -> Verdict:
        """Plentiful resources: every instance with work ran at once, so the pair completes alike — when the two
        models are alike (instances, outstanding requests); otherwise there is nothing the weights decide."""
        room = "; ".join(f"{c.wanted:g} {c.resource} wanted at once, budget {c.budget}" for c in shared)
        out = evidence["outstanding"]
        alike = (len(run.models[hi].instances) == len(run.models[lo].instances)
                 and min(out[hi], out[lo]) >= 0.8 * max(out[hi], out[lo]))
        if not alike:
            return self.cannot_judge(f"{hi} vs {lo}", f"{hi} vs {lo}: resources were not contended ({room}), so the "
                                     "weights never arbitrated, and the two models differ in instances or "
                                     "outstanding requests: there is no ratio to expect", evidence)
        achieved = min(observed, 1.0 / observed) if observed > 0 else 0.0
        return self.verdict(f"{hi} vs {lo}", achieved, self.values["min_ratio"],
                            f"{hi} completed {observed:.2f}× as many requests as {lo}; resources were not contended "
                            f"({room}): weights do not arbitrate, expect 1× (within "
                            f"{self.values['min_ratio']:g}–{1 / self.values['min_ratio']:.2f}×)",
                            {**evidence, "expected_ratio": 1.0})


class PriorityCheck(Check):
    """Under contention, the highest request priority's p99 is below the lowest priority's p99 — judged only when
    both levels were served: a level whose requests only timed out or were rejected has no latency to compare."""

    name = "priority"
    summary = "p99 latency of the highest request priority / p99 of the lowest, per model (both levels served)"
    measure = "priority_p99_ratio"
    params = (Param("max_p99_ratio", 1.0, _positive, "largest tolerated p99(high) / p99(low)"),
              Param("min_served", 20, lambda v: parse_number(v, low=1),
                    "successful requests each level needs before its p99 is compared (fewer: undecided)"),
              Param("min_served_share", 0.5, _unit_interval,
                    "share of a level's answered requests that must have succeeded (its histogram also holds "
                    "the latencies of timed-out and rejected requests; below this share: undecided)"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model whose streams use at least two priority levels."""
        levels: dict[str, dict[int, list[StreamWindows]]] = defaultdict(lambda: defaultdict(list))
        for w in run.windows:
            if w.priority is not None:
                levels[w.model][w.priority].append(w)
        models = {m: lv for m, lv in levels.items() if len(lv) >= 2}
        if not models:
            return self.no_evidence("request windows of one model at two or more request priorities")
        return [self._judge(model, lv) for model, lv in sorted(models.items())]

    def _judge(self, model: str, lv: dict[int, list[StreamWindows]]) -> Verdict:
        high, low = min(lv), max(lv)
        served = {p: float(sum(np.sum(w.completed) for w in lv[p])) for p in (high, low)}
        answered = {p: served[p] + float(sum(np.sum(w.failed) for w in lv[p])) for p in (high, low)}
        counts = {"served": {str(p): served[p] for p in (high, low)},
                  "answered": {str(p): answered[p] for p in (high, low)}}
        for p in (high, low):
            share = served[p] / answered[p] if answered[p] else 0.0
            if served[p] < self.values["min_served"] or share < self.values["min_served_share"]:
                return self.cannot_judge(model, f"{model}: priority {p} had {served[p]:.0f} of {answered[p]:.0f} "
                                         f"answered requests served: its latency cannot be compared (a level that "
                                         f"is never served is starved, see the starvation check)", counts)
        h = latency.merged(w.latency_steady for w in lv[high])
        lo = latency.merged(w.latency_steady for w in lv[low])
        ratio = latency.p99_ratio(h, lo)
        p99h, p99l = latency.percentile_us(h, 99), latency.percentile_us(lo, 99)
        return self.verdict(model, ratio, self.values["max_p99_ratio"],
                            f"priority {high} p99 {p99h / 1000:.2f} ms vs priority {low} p99 {p99l / 1000:.2f} ms",
                            {"p99_us": {str(high): p99h, str(low): p99l},
                             "requests": {str(high): h.get_total_count(), str(low): lo.get_total_count()}, **counts})
