"""Model-lifecycle checks: cold start after READY, warmup executed per instance, readiness gating, reloads under load,
cross-device.

- ``warmup``: the slowest reply of a model's first window after READY against the slowest reply of a typical steady
  window (black-box: rmt's own timings).

- ``warmup_executed``: for every model with ``model_warmup``, each traced instance's executions prove the warmup ran
  (the first traced execution's ``exec_index`` ≥ the warmup executions the config asks for; no traced request paid a
  cold start), and a verbose server log, when the run holds one, shows ``is running warmup sample`` for every
  instance and sample.
- ``readiness``: a readiness poller's first READY of a model comes after the model's last ``warmup_end`` event.
- ``reload``: no request of the model failed during a reload window (``reload_start`` … ``reload_end``, ± a margin).
- ``reload_limit``: after ``reload_end``, the model's traced executions never exceed the concurrency the new
  config allows (``detail.max_concurrency``), and the evidence says whether the new limit was reached.
- ``cross_device``: while one device is saturated (running its peak number of executions at once: its rate-limiter
  budget, or all its instances), another device keeps executing as much as it does overall — devices are independent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from rmt.check import concurrency, latency
from rmt.check.base import FAIL, PASS, Check, Param, Verdict
from rmt.check.data import InstanceTrace, ModelEvent, RunInputs, StreamWindows
from rmt.check.quantity import parse_duration, parse_number
from rmt.check.records import warmup_lines


def _positive(value: Any) -> float:
    return parse_number(value, inclusive_low=False)


def warmup_executions(config: Any) -> int:
    """Executions each instance runs before READY: Σ over ``model_warmup`` samples of ``count`` (0 counts as 1)."""
    return sum(max(1, int(s.count)) for s in config.model_warmup)


class WarmupExecutedCheck(Check):
    """Every instance of a model with ``model_warmup`` ran its warmup before serving (traces, verbose log)."""

    name = "warmup_executed"
    summary = "warmup executions missing per model (probe traces: exec_index/cold; verbose log lines)"
    measure = "warmup_missing_count"
    unit = "count"
    params = (Param("max_missing", 0, lambda v: parse_number(v), "instances or samples without evidence tolerated"),)

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model with ``model_warmup`` and traces or log lines."""
        warmed = {m: c for m, c in run.configs.items() if len(c.model_warmup)}
        traces: dict[str, list[InstanceTrace]] = defaultdict(list)
        for t in run.traces:
            if t.model in warmed:
                traces[t.model].append(t)
        logged = warmup_lines(run.server_log)
        out = []
        served = {w.model for w in run.windows}
        for model, config in sorted(warmed.items()):
            lines = [x for x in logged if x[0] == model or (x[0] is None and x[1].startswith(model))]
            if traces.get(model) or lines:
                out.append(self._judge(model, config, traces.get(model, []), lines, bool(run.server_log), run))
            elif model in served:
                out.append(self.cannot_judge(model, f"{model}: no execution traces (the zoo's TRACE output) and no "
                                             "verbose server log ('is running warmup sample' lines: --log-verbose 1)"
                                             ": nothing shows its warmup ran; the warmup check judges its first "
                                             "requests from outside"))
        return out or self.no_evidence("traces or a verbose server log of a model with model_warmup")

    def _judge(self, model: str, config: Any, traces: list[InstanceTrace], lines: list[tuple[str | None, str, str]],
               have_log: bool, run: RunInputs) -> Verdict:
        need = warmup_executions(config)
        problems: list[str] = []
        for t in traces:
            if t.exec_index is not None and len(t.exec_index) and int(t.exec_index.min()) < need:
                problems.append(f"{t.instance}: a request ran as execution {int(t.exec_index.min())}, before the "
                                f"{need} warmup executions")
            if t.cold is not None and int(np.sum(t.cold)):
                problems.append(f"{t.instance}: {int(np.sum(t.cold))} requests paid the cold start")
        limits = run.models.get(model)
        instances = sorted(limits.instances) if limits else []
        samples = [s.name for s in config.model_warmup]
        if have_log and instances:
            seen = {(inst, sample) for _, inst, sample in lines}
            for inst in instances:
                for sample in samples:
                    if not any(i.startswith(inst) and s == sample for i, s in seen):
                        problems.append(f"{inst}: no 'is running warmup sample {sample!r}' line in the server log")
        why = (f"{model}: " + "; ".join(problems[:3]) if problems else
               f"{model}: warmup evidence for {len(traces)} traced instances and {len(lines)} log lines "
               f"({need} warmup executions per instance)")
        return self.verdict(model, float(len(problems)), self.values["max_missing"], why,
                            {"problems": problems[:20], "warmup_executions": need, "samples": samples,
                             "log_lines": len(lines), "traced_instances": [t.instance for t in traces]})


class ReadinessCheck(Check):
    """READY is reported only after the model's last warmup execution ended."""

    name = "readiness"
    summary = "first READY poll minus last warmup end per model (negative: READY before warmup finished)"
    measure = "readiness_after_warmup_s"
    unit = "s"
    comparison = ">="
    params = (Param("min_gap", "0s", parse_duration, "READY must come at least this long after warmup ended"),)

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model with warmup_end events and readiness polls."""
        ends: dict[str, float] = {}
        for e in run.events:
            if e.event == "warmup_end":
                ends[e.model] = max(ends.get(e.model, -math.inf), e.t_s)
        models = sorted(m for m in ends if m in run.readiness)
        unknown = [self.cannot_judge(m, f"{m}: READY was polled but nothing says when its start-up work ended "
                                     "(the zoo's rmt_warmup lines, taken from the server's log: an embedded server's "
                                     "or --server-log FILE); the warmup check judges its first requests from outside")
                   for m in sorted(set(run.readiness) - set(ends))]
        if not models:
            return unknown or self.no_evidence("warmup_end events (events.jsonl) with readiness polls "
                                               "(readiness.jsonl)")
        out = unknown
        for m in models:
            t, ready = run.readiness[m]
            first = np.flatnonzero(ready > 0)
            if not len(first):
                out.append(self.verdict(m, math.nan, self.values["min_gap"], f"{m} never reported READY",
                                        {"polls": len(t)}))
                continue
            gap = float(t[first[0]] - ends[m])
            out.append(self.verdict(m, gap, self.values["min_gap"],
                                    f"{m} first READY {gap * 1000:+.1f} ms after its last warmup execution ended",
                                    {"first_ready_s": float(t[first[0]]), "warmup_end_s": ends[m],
                                     "polls": len(t)}))
        return out


def reload_windows(events: list[ModelEvent]) -> list[tuple[str, float, float, dict[str, Any]]]:
    """(model, start s, end s, end detail) of every ``reload_start`` … ``reload_end`` pair."""
    open_: dict[str, float] = {}
    out = []
    for e in events:
        if e.event == "reload_start":
            open_[e.model] = e.t_s
        elif e.event == "reload_end" and e.model in open_:
            out.append((e.model, open_.pop(e.model), e.t_s, e.detail))
    return out


class ReloadCheck(Check):
    """No request of a model fails while it is reloaded under load."""

    name = "reload"
    summary = "failed requests of a model during its reload window (reload_start … reload_end ± margin)"
    measure = "reload_failed_requests_count"
    unit = "count"
    params = (Param("max_failed", 0, lambda v: parse_number(v), "failed requests tolerated across a reload"),
              Param("margin", "1s", parse_duration, "time before and after the reload window also judged"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per reload window."""
        windows = reload_windows(run.events)
        if not windows:
            return self.no_evidence("reload_start/reload_end events (events.jsonl)")
        out = []
        margin = self.values["margin"]
        for model, t0, t1, _ in windows:
            failed, sent = 0.0, 0.0
            reasons: dict[str, float] = defaultdict(float)
            for w in run.windows:
                if w.model != model:
                    continue
                inside = (w.t_s + 1.0 > t0 - margin) & (w.t_s < t1 + margin)
                failed += float(np.asarray(w.failed)[inside].sum())
                sent += float(np.asarray(w.sent)[inside].sum())
                for reason, counts in w.failed_by.items():
                    reasons[reason] += float(np.asarray(counts)[inside].sum())
            status = None if sent > 0 else FAIL
            why = (f"{model}: {failed:.0f} of {sent:.0f} requests around the reload ({t1 - t0:.2f} s) failed"
                   if sent else f"{model}: no request was sent during the reload: load it to judge in-flight safety")
            out.append(self.verdict(f"{model} @ {t0:.0f}", failed, self.values["max_failed"], why,
                                    {"reload_s": [t0, t1], "sent": sent, "failed_by": dict(reasons)},
                                    status=status))
        return out


class ReloadLimitCheck(Check):
    """After a reload, the model's executions respect the new config's concurrency limit."""

    name = "reload_limit"
    summary = "peak traced concurrency of a model after reload_end vs the new limit (detail.max_concurrency)"
    measure = "reload_peak_concurrency_count"
    unit = "count"

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per reload window whose ``reload_end`` declares ``max_concurrency``."""
        windows = [w for w in reload_windows(run.events) if "max_concurrency" in w[3]]
        if not windows:
            return self.no_evidence("reload_end events with detail.max_concurrency")
        out = []
        for i, (model, t0, t1, detail) in enumerate(windows):
            later = [w[1] for w in windows[i + 1:] if w[0] == model]
            until = min(later) if later else math.inf
            starts, ends = [], []
            for t in run.traces:
                if t.model == model:
                    keep = (t.start_ns >= t1 * 1e9) & (t.start_ns < until * 1e9)
                    starts.append(t.start_ns[keep])
                    ends.append(t.end_ns[keep])
            n = sum(len(s) for s in starts)
            limit = float(detail["max_concurrency"])
            if not any(t.model == model for t in run.traces):
                out.append(self.cannot_judge(f"{model} @ {t0:.0f}", f"{model}: no execution traces (the zoo's TRACE "
                                             "output): per-execution concurrency after the reload cannot be seen; "
                                             "the concurrency check judges Triton's counters"))
                continue
            if not n:
                out.append(self.verdict(model, math.nan, limit, f"{model}: no traced execution after the reload",
                                        {"reload_s": [t0, t1]}))
                continue
            prof = concurrency.profile(np.concatenate(starts), np.concatenate(ends))
            out.append(self.verdict(f"{model} @ {t0:.0f}", prof.peak, limit,
                                    f"{model}: at most {prof.peak:g} executions at once after the reload (new limit "
                                    f"{limit:g}{', reached' if prof.peak >= limit else ', not reached'})",
                                    {"executions": n, "reached": prof.peak >= limit, "reload_s": [t0, t1]}))
        return out


class CrossDeviceCheck(Check):
    """While one device is saturated, the others keep executing: per-device concurrency is independent."""

    name = "cross_device"
    summary = "busy share of device B while device A is saturated / B's overall busy share"
    measure = "cross_device_busy_ratio"
    comparison = ">="
    params = (Param("min_ratio", 0.5, lambda v: parse_number(v, high=1.0),
                    "lowest tolerated (B busy while A saturated) / (B busy overall)"),
              Param("min_saturated", "0.25s", parse_duration,
                    "device A must spend at least this long at its peak for the pair to be judged"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per ordered pair of devices (A saturated at some point, B busy at some point)."""
        by_device: dict[int, list[InstanceTrace]] = defaultdict(list)
        for t in run.traces:
            by_device[t.device].append(t)
        if not by_device and run.windows:
            return [self.cannot_judge(", ".join(sorted({w.model for w in run.windows})),
                                      "no execution traces (the zoo's TRACE output with each execution's device): "
                                      "Triton's counters are per model, not per device, so device independence "
                                      "cannot be seen")]
        if len(by_device) < 2:
            return self.no_evidence("executions traced on two or more devices")
        profiles = {d: concurrency.profile(np.concatenate([t.start_ns for t in ts]),
                                           np.concatenate([t.end_ns for t in ts])) for d, ts in by_device.items()}
        # Saturated = running as many executions at once as the device ever does in the run: under a rate limiter
        # that is the device's budget (R:1:0 lets one of GPU 0's instances run), without one its instance count.
        capacity = {d: p.peak for d, p in profiles.items()}
        instances = {d: len({(t.model, t.instance) for t in ts}) for d, ts in by_device.items()}
        saturated_s = {d: p.time_above_ns(capacity[d] - 0.5) / 1e9 for d, p in profiles.items()}
        t0 = min(int(p.t_ns[0]) for p in profiles.values() if len(p.t_ns))
        t1 = max(int(p.t_ns[-1]) for p in profiles.values() if len(p.t_ns))
        everywhere = concurrency.Profile(np.array([t0, t1], dtype=np.int64), np.array([1.0, 0.0]))
        out = []
        for a in sorted(profiles):
            for b in sorted(profiles):
                if a == b:
                    continue
                if saturated_s[a] < self.values["min_saturated"]:
                    continue  # a peak reached for a moment says nothing about independence
                during = concurrency.busy_fraction_while(profiles[b], profiles[a], capacity[a])
                overall = concurrency.busy_fraction_while(profiles[b], everywhere, 1.0)
                if math.isnan(during) or not overall > 0:
                    continue
                ratio = min(1.0, during / overall)
                out.append(self.verdict(f"device {b} while device {a} saturated", ratio, self.values["min_ratio"],
                                        f"device {b} executed {during:.0%} of the time device {a} ran its "
                                        f"peak of {capacity[a]:g} executions at once ({instances[a]} instances), "
                                        f"vs {overall:.0%} overall",
                                        {"busy_while_saturated": during, "busy_overall": overall,
                                         "capacity": capacity[a], "instances": instances[a],
                                         "saturated_s": saturated_s[a]},
                                        status=PASS if ratio >= self.values["min_ratio"] else FAIL))
        return out or self.no_evidence("a saturated device beside a busy one")


class WarmupCheck(Check):
    """Cold start: the slowest reply of a model's first window after READY vs the slowest reply of a typical steady
    window (the median of the steady windows' maxima: the same statistic, so a busy or contended model whose every
    second holds a slow reply is not a cold start); the steady p99 stands in where windows carry no maximum."""

    name = "warmup"
    summary = "slowest first reply after READY / slowest reply of a typical steady window, per model"
    measure = "cold_start_ratio"
    params = (Param("max_cold_ratio", 3.0, _positive,
                    "largest tolerated first-window max / median steady-window max"),
              Param("min_excess", "50ms", parse_duration,
                    "a first reply at most this much slower than a typical steady window's slowest passes whatever "
                    "the ratio (a scheduling hiccup is not a cold start)"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model with first-request latencies and a steady state."""
        by_model: dict[str, list[StreamWindows]] = defaultdict(list)
        for w in run.windows:
            by_model[w.model].append(w)
        models = sorted(m for m, ws in by_model.items() if any(w.latency_first_us is not None
                                                               and len(w.latency_first_us) for w in ws)
                        and any(w.latency_steady is not None for w in ws))
        if not models:
            return self.no_evidence("first-request latencies with a steady-state latency histogram")
        return [self._judge(m, by_model[m]) for m in models]

    def _judge(self, model: str, streams: list[StreamWindows]) -> Verdict:
        firsts = np.concatenate([np.asarray(w.latency_first_us, dtype=float) for w in streams
                                 if w.latency_first_us is not None])
        hist = latency.merged(w.latency_steady for w in streams)
        maxima = np.concatenate([steady_maxima(w) for w in streams])
        p50, p99 = latency.percentile_us(hist, 50), latency.percentile_us(hist, 99)
        reference, basis = ((float(np.median(maxima)), f"a typical steady window's slowest reply ({len(maxima)} "
                             "windows)") if len(maxima) >= MIN_STEADY_WINDOWS else (p99, "the steady p99"))
        first = float(np.max(firsts))
        ratio = first / reference if reference > 0 else math.nan
        excess_us = first - reference
        status = FAIL if math.isnan(ratio) or (ratio > self.values["max_cold_ratio"]
                                               and excess_us > self.values["min_excess"] * 1e6) else PASS
        return self.verdict(model, ratio, self.values["max_cold_ratio"],
                            f"slowest first reply {first / 1000:.2f} ms vs {basis} {reference / 1000:.2f} ms: "
                            f"{ratio:.1f}× (steady p50 {p50 / 1000:.2f} ms)",
                            {"first_us": firsts.tolist()[:32], "reference_us": reference, "steady_p50_us": p50,
                             "steady_p99_us": p99, "excess_us": excess_us, "steady_windows": len(maxima)},
                            status=status)


MIN_STEADY_WINDOWS = 3
"""Steady windows with a slowest reply needed before their median is the warmup check's reference."""


def steady_maxima(w: StreamWindows) -> np.ndarray:
    """The slowest reply of each steady window of a stream: past its first :data:`STEADY_SHARE` of windows (and at
    least its first window), outside a ``warmup`` phase, where the window had a reply."""
    if w.latency_max_us is None or not len(w.latency_max_us):
        return np.zeros(0)
    mx = np.asarray(w.latency_max_us, dtype=float)
    keep = np.arange(len(mx)) >= max(1, math.ceil(STEADY_SHARE * len(mx)))
    if w.phase is not None:
        keep &= np.asarray(w.phase) != "warmup"
    return mx[keep & np.isfinite(mx)]


STEADY_SHARE = 0.2
"""Share of a stream's windows before its steady state (as the steady histogram's short-run rule)."""
