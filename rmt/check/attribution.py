"""Memory checks that explain *what* leaks or fails: leak attribution per request pattern, fragmentation.

Leak attribution: a model's memory series is cut into the load phases its traffic went through; in each phase the
growth per completed request is fitted (the leak check's statistics over the whole phase after its warm-up) and
then split over the request patterns that ran in the phase by non-negative least squares
(``slope_phase = Σ share_p × b_p``). With one pattern per phase this is exact; a pattern whose bytes per request
exceed the threshold, with a sustained rise in a phase it dominates, is named with its shape/dtype — or as an error
path when its requests failed.
A model that streamed (a decoupled model) is also split by request lifecycle outcome the same way — completed,
cancelled by the client, timed out, error — so a leak on the cancellation path is pinned on ``outcome:cancelled``.

Fragmentation: an allocation failure (``out of memory``, ``failed to allocate``) while the device still had at least
the requested bytes free is fragmentation, not exhaustion. The high-water mark of the device's memory vs its steady
state (median after warm-up) is reported as evidence.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from typing import Any

import numpy as np
from scipy.optimize import nnls

from rmt.check.base import FAIL, PASS, UNDECIDED, Check, Param, Verdict
from rmt.check.data import FailureEvent, MemorySeries, RunInputs, StreamWindows
from rmt.check.memory_checks import _alpha, _glob
from rmt.check.quantity import parse_growth, parse_number
from rmt.check.records import ALLOCATION_FAILURE
from rmt.check.trend import LEAK, PER_REQUESTS, SOUND, decide, sustained_growth
from rmt.check.trend import UNDECIDED as TOO_CLOSE
from rmt.core.fmt import format_bytes

#: A pattern "dominates" a phase when it issued at least this share of the phase's requests of the model.
DOMINANT_SHARE = 0.5
#: What allocator settling can add to a process within one phase (the leak check's ``settle`` default).
SETTLE_BYTES = 128 * 1024
#: A pattern whose requests failed at least this often is reported as an error path.
ERROR_PATH_SHARE = 0.5


#: Lifecycle outcomes of streaming requests, as :func:`outcome_mix` names them.
LIFECYCLE = ("completed", "cancelled", "timed_out", "error")


def outcome_mix(streams: list[StreamWindows]) -> dict[str, tuple[float, float, dict[str, float], dict[str, float]]]:
    """Like :func:`phase_mix`, keyed by lifecycle outcome (``outcome:completed`` …) instead of pattern."""
    out: dict[str, tuple[float, float, dict[str, float], dict[str, float]]] = {}
    for w in streams:
        if w.phase is None or not w.streaming:
            continue
        timed_out = np.asarray(w.failed_by.get("timeout", np.zeros(len(w.t_s))))
        counts = dict(zip(LIFECYCLE, (np.asarray(w.completed), np.asarray(w.cancelled), timed_out,
                                      np.asarray(w.failed) - timed_out), strict=True))
        for phase in set(w.phase.tolist()):
            m = w.phase == phase
            t0, t1, req, fail = out.get(phase, (np.inf, -np.inf, defaultdict(float), defaultdict(float)))
            for name, values in counts.items():
                req[f"outcome:{name}"] += float(values[m].sum())
            fail["outcome:error"] += float(counts["error"][m].sum())
            out[phase] = (min(t0, float(w.t_s[m].min())), max(t1, float(w.t_s[m].max()) + 1.0), req, fail)
    return out


def phase_mix(streams: list[StreamWindows]) -> dict[str, tuple[float, float, dict[str, float], dict[str, float]]]:
    """Phase → (first window start s, last window end s, requests per pattern, failures per pattern)."""
    out: dict[str, tuple[float, float, dict[str, float], dict[str, float]]] = {}
    for w in streams:
        if w.phase is None:
            continue
        requests, failed = w.requests, np.asarray(w.failed)
        for phase in set(w.phase.tolist()):
            m = w.phase == phase
            t0, t1, req, fail = out.get(phase, (np.inf, -np.inf, defaultdict(float), defaultdict(float)))
            req[w.pattern] += float(requests[m].sum())
            fail[w.pattern] += float(failed[m].sum())
            out[phase] = (min(t0, float(w.t_s[m].min())), max(t1, float(w.t_s[m].max()) + 1.0), req, fail)
    return out


class LeakAttributionCheck(Check):
    """Growth per request pattern of a model: names the shape, dtype or error path that leaks."""

    name = "leak_attribution"
    summary = "memory growth per request pattern of a model (phases split by pattern), projected per 10k requests"
    measure = "leak_attribution_growth_per_10k_bytes"
    unit = "bytes"
    params = (
        Param("max_growth", "512KiB/10k", parse_growth, "largest tolerated growth of one pattern, SIZE/REQUESTS (the "
              "leak check's bound, judged by its shape rule on the later half of each phase)"),
        Param("alpha", 0.01, _alpha, "significance level of the trend test within a phase"),
        Param("warmup", 0.1, lambda v: parse_number(v, high=0.9),
              "share of each phase's completed requests left out at its start (phase transitions settle)"),
        Param("series", "*", _glob, "glob of the memory series to attribute (those with a model label)"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per (memory series of a model with windows, pattern)."""
        by_model: dict[str, list[StreamWindows]] = defaultdict(list)
        for w in run.windows:
            by_model[w.model].append(w)
        series = [s for s in run.memory if s.kind == "memory" and s.model in by_model
                  and fnmatch.fnmatchcase(s.name, self.values["series"])]
        if not series:
            return self.no_evidence("memory series of a model that received traffic")
        out: list[Verdict] = []
        for s in series:
            out += self._attribute(s, phase_mix(by_model[str(s.model)]), run.patterns)
            if any(w.streaming for w in by_model[str(s.model)]):
                out += self._attribute(s, outcome_mix(by_model[str(s.model)]), {}, kind="outcome")
        return out or self.no_evidence("phases with enough samples to fit a trend")

    def _attribute(self, s: MemorySeries, mix: dict[str, Any], described: dict[str, str],
                   kind: str = "pattern") -> list[Verdict]:
        patterns = sorted({p for _, _, req, _ in mix.values() for p, n in req.items() if n > 0})
        rows, slopes, fits = [], [], {}
        limit_b = self.values["max_growth"]
        for phase, (t0, t1, req, _) in sorted(mix.items(), key=lambda kv: kv[1][0]):
            inside = (s.t_s >= t0) & (s.t_s <= t1)
            sus = sustained_growth(s.t_s[inside], s.requests[inside], s.values[inside],
                                   warmup_fraction=self.values["warmup"], share=1.0, to_the_end=False,
                                   alpha=self.values["alpha"], min_quantum=4096.0)
            total = sum(req.values())
            if sus is None or total <= 0:
                continue
            fits[phase] = (sus, decide(sus, limit_b, self.values["alpha"], SETTLE_BYTES))
            rows.append([req.get(p, 0.0) / total for p in patterns])
            slopes.append(sus.slope_bytes_per_request)
        if not fits:
            return []
        per_pattern, _ = nnls(np.array(rows, dtype=float), np.clip(np.array(slopes, dtype=float), 0.0, None))
        limit = limit_b * PER_REQUESTS
        out = []
        for i, pattern in enumerate(patterns):
            b = float(per_pattern[i])
            dominated = [ph for ph in fits if mix[ph][2].get(pattern, 0.0) / sum(mix[ph][2].values())
                         >= DOMINANT_SHARE]
            significant = [ph for ph in dominated if fits[ph][1].outcome == LEAK]
            unsure = [ph for ph in dominated if fits[ph][1].outcome == TOO_CLOSE]
            flat = [ph for ph in dominated if fits[ph][1].outcome == SOUND]
            requests = sum(m[2].get(pattern, 0.0) for m in mix.values())
            failed = sum(m[3].get(pattern, 0.0) for m in mix.values())
            error_path = requests > 0 and failed / requests >= ERROR_PATH_SHARE
            # a leak of the pattern grows in every phase the pattern dominates; growth in one of them and none in
            # another it dominates as much is settling (a cache that filled, an allocator that grew once)
            leaking = b * PER_REQUESTS > limit and bool(significant) and not flat
            what = (f"pattern {pattern!r}" + (f" ({described[pattern]})" if pattern in described else "")
                    if kind == "pattern" else f"requests {pattern.removeprefix('outcome:')}")
            if error_path:
                what += f", whose requests failed ({failed:.0f} of {requests:.0f}): the error path"
            grows = f"{format_bytes(b)}/request = {format_bytes(b * PER_REQUESTS)}/10k"
            status = FAIL if leaking else PASS
            if leaking:
                explanation = f"{s.model}: {what} leaks {grows} (sustained in phase {', '.join(significant)})"
            elif significant and flat:
                explanation = (f"{s.model}: {what} grew in phase {', '.join(significant)} but not in "
                               f"{', '.join(flat)}, which it dominates too: settling, not a sustained leak")
            elif b * PER_REQUESTS > limit and unsure:
                status = UNDECIDED
                explanation = (f"undecided: {s.model}: {what} grows {grows}, but phase {', '.join(unsure)} is too "
                               "short to tell a sustained rise from settling")
            else:
                explanation = (f"{s.model}: {what} grows {grows}, within {format_bytes(limit)}/10k or without a "
                               "sustained rise in a phase it dominates")
            out.append(self.verdict(f"{s.name} / {pattern}", b * PER_REQUESTS, limit, explanation, {
                "bytes_per_request": b, "error_path": error_path, "requests": requests, "failed": failed,
                "phases": {ph: {"slope_bytes_per_request": sus.slope_bytes_per_request, "kendall_tau": sus.tau,
                                "p_value": sus.p_value, "margin": dec.margin, "decision": dec.outcome,
                                "time_range_s": [mix[ph][0], mix[ph][1]], "requests_by_pattern": dict(mix[ph][2])}
                           for ph, (sus, dec) in fits.items()},
            }, status=status))
        return out


class FragmentationCheck(Check):
    """Allocation failures while the device still had the requested bytes free: fragmentation."""

    name = "fragmentation"
    summary = "allocation failures while free memory ≥ the request's need, per device"
    measure = "fragmentation_failures_count"
    unit = "count"
    params = (
        Param("max_failures", 0, lambda v: parse_number(v), "allocation failures with enough free memory tolerated"),
        Param("margin", 1.0, lambda v: parse_number(v, low=1.0),
              "free memory must be at least margin × need for a failure to count as fragmentation"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per device with allocation failures, or with memory samples but none; failures whose
        allocator stated its free bytes (an arena, a pool) are judged per model instead, and every other model
        that answered requests gets a verdict too (none of its failures was an allocation failure)."""
        allocs = [f for f in run.failures if ALLOCATION_FAILURE.search(f.message)]
        own = [f for f in allocs if f.free_bytes is not None]
        allocs = [f for f in allocs if f.free_bytes is None]
        devices = sorted({f.device or "unknown" for f in allocs} | set(run.free_memory))
        models = sorted({f.model for f in own})
        if not devices and not models:
            return self.no_evidence("allocation failures (failures.jsonl) or free-memory samples")
        out = [self._judge(d, [f for f in allocs if (f.device or "unknown") == d], run) for d in devices]
        for m in models:
            mine = [f for f in own if f.model == m]
            out.append(self._judge(f"{m} ({mine[0].device or 'unknown'})", mine, run))
        if models:
            answered: dict[str, float] = defaultdict(float)
            for w in run.windows:
                answered[w.model] += float(np.sum(w.requests))
            for m in sorted(set(answered) - set(models)):
                out.append(self.verdict(m, 0.0, self.values["max_failures"],
                                        f"no allocation failure in {answered[m]:.0f} answered requests",
                                        {"allocation_failures": 0, "answered": answered[m]}))
        return out

    def _judge(self, device: str, allocs: list[FailureEvent], run: RunInputs) -> Verdict:
        free = run.free_memory.get(device)
        fragmented: list[tuple[FailureEvent, float]] = []
        exhausted: list[tuple[FailureEvent, float]] = []
        unknown: list[FailureEvent] = []
        for f in allocs:
            if f.need_bytes is not None and f.free_bytes is not None:  # the allocator's own count at the failure
                (fragmented if f.free_bytes >= self.values["margin"] * f.need_bytes else exhausted).append(
                    (f, f.free_bytes))
                continue
            if free is None or f.need_bytes is None or not len(free[0]):
                unknown.append(f)
                continue
            before = np.flatnonzero(free[0] <= f.t_s)
            avail = float(free[1][before[-1]] if len(before) else free[1][0])
            (fragmented if avail >= self.values["margin"] * f.need_bytes else exhausted).append((f, avail))
        used = [s for s in run.memory if s.device == device and s.model is None]
        marks = {s.name: {"high_water_bytes": float(np.nanmax(s.values)),
                          "steady_bytes": float(np.nanmedian(s.values[len(s.values) // 10:]))}
                 for s in used if np.isfinite(s.values).any()}
        evidence = {"allocation_failures": len(allocs), "exhaustion": len(exhausted), "need_unknown": len(unknown),
                    "fragmentation_examples": [{"t_s": f.t_s, "model": f.model, "need_bytes": f.need_bytes,
                                                "free_bytes": a, "message": f.message[:200]}
                                               for f, a in fragmented[:10]],
                    "high_water_vs_steady": marks}
        if fragmented:
            f, a = fragmented[0]
            why = (f"{len(fragmented)} allocation failures on {device} while enough memory was free, e.g. {f.model} "
                   f"asked {format_bytes(f.need_bytes or 0)} with {format_bytes(a)} free: fragmentation")
        else:
            why = (f"{len(allocs)} allocation failures on {device}, none with the requested bytes free "
                   f"({len(exhausted)} exhaustion, {len(unknown)} of unknown size)")
        return self.verdict(device, float(len(fragmented)), self.values["max_failures"], why, evidence)
