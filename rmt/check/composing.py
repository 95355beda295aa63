"""``composing_attribution``: memory of the models behind an ensemble or a BLS model, charged per top-level request.

A composing model's stub is charged to nobody by the ``leak`` check's own-request view (its requests come from the
server, not the load). Here each composing model's memory series is judged against the requests of the models that
call it: an ensemble's ``ensemble_scheduling`` steps name its composing models; a model the load never sent to but
that executed anyway (Triton counted its requests) is called through BLS — black-box: it is charged to the one set of
non-ensemble top-level models whose requests add up to its own (:func:`callers`), else to all of them. The trend test
and thresholds are the ``leak`` check's; the evidence adds the composing model's executions per top-level request.
"""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict
from typing import Any

import numpy as np

from rmt.check.base import SKIP, Verdict
from rmt.check.data import CounterSeries, MemorySeries, RunInputs
from rmt.check.memory_checks import LeakCheck

SUCCESS = "nv_inference_request_success"
EXECUTIONS = "nv_inference_exec_count"


def _counter(counters: list[CounterSeries], measure: str, model: str) -> CounterSeries | None:
    return next((c for c in counters if c.measure == measure and c.model == model), None)


def _grew(c: CounterSeries | None) -> float:
    if c is None:
        return 0.0
    ok = np.isfinite(c.values)
    return float(c.values[ok][-1] - c.values[ok][0]) if ok.sum() >= 2 else 0.0


def composing_parents(run: RunInputs) -> dict[str, list[str]]:
    """Composing model → the top-level models whose requests it serves (see the module docstring)."""
    top = sorted({w.model for w in run.windows})
    parents: dict[str, list[str]] = defaultdict(list)
    for model in top:
        config = run.configs.get(model)
        if config is not None and config.HasField("ensemble_scheduling"):
            for step in config.ensemble_scheduling.step:
                if step.model_name not in parents or model not in parents[step.model_name]:
                    parents[step.model_name].append(model)
    direct = [m for m in top if not (run.configs.get(m) is not None and
                                     run.configs[m].HasField("ensemble_scheduling"))]
    sent = {m: _grew(_counter(run.counters, SUCCESS, m)) for m in direct}
    for c in run.counters:
        if c.measure == SUCCESS and c.model not in top and c.model not in parents and _grew(c) > 0 and direct:
            parents[c.model] = callers(_grew(c), sent)
    return dict(parents)


def callers(requests: float, sent: dict[str, float], tolerance: float = 0.02) -> list[str]:
    """The top-level models whose requests add up to a BLS callee's (one call per request, within ``tolerance``):
    the only such set when exactly one matches, else every candidate (who called it cannot be told apart)."""
    names = sorted(sent)
    if len(names) > 12:
        return names
    matches = []
    for mask in range(1, 1 << len(names)):
        subset = [n for i, n in enumerate(names) if mask >> i & 1]
        total = sum(sent[n] for n in subset)
        if abs(total - requests) <= tolerance * max(requests, 1.0):
            matches.append(subset)
    return matches[0] if len(matches) == 1 else names


class ComposingAttributionCheck(LeakCheck):
    """A composing model's memory growth per request of the top-level models that call it."""

    name = "composing_attribution"
    summary = "composing model's stub growth per top-level request (ensemble steps; BLS callees found black-box)"
    measure = "composing_growth_per_10k_bytes"

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per memory series of a composing model."""
        parents = composing_parents(run)
        if not parents:
            return self.no_evidence("ensemble or BLS composing models with request counters")
        out = []
        for series in run.memory:
            if series.kind != self.kind or series.model not in parents or \
                    not fnmatch.fnmatchcase(series.name, self.values["series"]):
                continue
            out.append(self._judge(series, parents[series.model], run.counters))
        return out or self.no_evidence("memory series of the composing models' stubs")

    def _judge(self, s: MemorySeries, parents: list[str], counters: list[CounterSeries]) -> Verdict:
        subject = f"{s.name} <- {'+'.join(parents)}"
        top = np.zeros(len(s.t_s))
        for p in parents:
            c = _counter(counters, SUCCESS, p)
            if c is None:
                return Verdict(self.name, subject, SKIP, self.measure, None, None, self.comparison,
                               f"no request counter of top-level model {p}: cannot charge {s.model} to it")
            ok = np.isfinite(c.values)
            top += np.interp(s.t_s, c.t_s[ok], c.values[ok], left=np.nan, right=np.nan)
        verdict = self.judge_series(MemorySeries(subject, s.t_s, top, s.values, s.kind, s.model, s.device))
        execs = _grew(_counter(counters, EXECUTIONS, str(s.model)))
        requests = sum(_grew(_counter(counters, SUCCESS, p)) for p in parents)
        per: Any = execs / requests if requests else math.nan
        verdict.evidence.update(composing_executions=execs, top_level_requests=requests,
                                executions_per_top_level_request=per, parents=parents)
        verdict.explanation = f"{s.model} (called by {', '.join(parents)}): {verdict.explanation}"
        return verdict
