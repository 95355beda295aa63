"""Warmup completeness after READY: per-shape cold start (black-box) and CUDA-graph replay evidence.

- ``shape_warmup``: for every request combination — a model with
  one scenario pattern (its shape, dtype and batch size), all priorities and protocols merged — the first requests
  after READY (the slowest reply of the combination's first window with replies) vs that combination's steady-state
  p50 (µs HDR histograms after the warm-up windows). A combination whose first request is an outlier was not
  warmed: a warmup that covered batch 1 leaves batch 4 cold although the model-wide ``warmup`` check may see a warm
  first request. Any backend: only the client's latencies are read. Caveat: a request queued behind another
  combination's cold execution on the same instance looks cold too; send each combination's first requests one at
  a time (one closed-loop user) or read the verdict of the combination with the largest excess first. A model
  sent a single pattern is the model-wide ``warmup`` check's subject: skipped here unless the check is asked for.
- ``graph_replay``: for every model whose executions report graph use — ``rmt_graph model=M instance=I exec=N
  shape=4x16 configured=1 mode=replay|eager|capture warmup=0|1`` lines in the run's ``model_lines.log`` (or
  ``tritonserver.log``; the zoo's graph models log one per execution, see ``rmt/zoo/zoo_model.py``) — the
  executions *after warmup* of a configured graph shape that ran eagerly. A warmup that skipped a configured
  shape leaves that shape eager for good.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from rmt.check import latency
from rmt.check.base import FAIL, PASS, SKIP, Check, Param, Verdict
from rmt.check.data import RunInputs
from rmt.check.quantity import parse_duration, parse_number

GRAPH_LINE = re.compile(r"rmt_graph model=(?P<model>\S+) instance=(?P<instance>\d+) exec=(?P<exec>\d+) "
                        r"shape=(?P<shape>\S+) configured=(?P<configured>[01]) mode=(?P<mode>[a-z]+) "
                        r"warmup=(?P<warmup>[01])")


def graph_executions(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The ``rmt_graph`` lines of a server log as dicts (model, instance, exec, shape, configured, mode, warmup)."""
    out = []
    for line in lines:
        m = GRAPH_LINE.search(line)
        if m:
            out.append({"model": m["model"], "instance": int(m["instance"]), "exec": int(m["exec"]),
                        "shape": m["shape"], "configured": m["configured"] == "1", "mode": m["mode"],
                        "warmup": m["warmup"] == "1"})
    return out


def configured_graph_shapes(config: Any) -> list[str]:
    """``ROWSxD1x...`` of every ``optimization.cuda.graph_spec`` entry (first input) when graphs are on."""
    cuda = config.optimization.cuda
    if not cuda.graphs:
        return []
    out = []
    for spec in cuda.graph_spec:
        dims = [int(d) for shape in list(spec.input.values())[:1] for d in shape.dim]
        out.append("x".join(str(d) for d in [max(1, int(spec.batch_size)), *dims]))
    return out


def _positive(value: Any) -> float:
    return parse_number(value, low=0.0, inclusive_low=False)


class ShapeWarmupCheck(Check):
    """Per shape/batch combination: its first request after READY vs its own steady-state p50."""

    name = "shape_warmup"
    summary = "first request / steady-state p50 latency per model x request pattern (shape, batch size)"
    measure = "shape_cold_start_ratio"
    params = (Param("max_cold_ratio", 3.0, _positive, "largest tolerated first-request / steady p50 ratio"),
              Param("min_excess", "50ms", parse_duration,
                    "a first request at most this much slower than the combination's steady p50 passes whatever "
                    "the ratio (a scheduling hiccup on a loaded box is not a cold start)"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per (model, pattern) with first-request latencies and a steady-state histogram."""
        first: dict[tuple[str, str], list[float]] = defaultdict(list)
        steady: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for w in run.windows:
            key = (w.model, w.pattern)
            if w.latency_first_us is not None and len(w.latency_first_us):
                first[key] += [float(x) for x in np.asarray(w.latency_first_us, dtype=float)]
            if w.latency_steady is not None:
                steady[key].append(w.latency_steady)
        keys = sorted(k for k in first if k in steady)
        if not keys:
            return self.no_evidence("first-request latencies with a steady-state histogram per request pattern")
        out = []
        patterns_of: dict[str, int] = defaultdict(int)
        for model, _ in keys:
            patterns_of[model] += 1
        for model, pattern in keys:
            if patterns_of[model] == 1 and not self.required:
                out.append(Verdict(self.name, f"{model} {pattern}", SKIP, self.measure, None, None, self.comparison,
                                   f"{model} is sent one pattern only: the warmup check judges its cold start"))
                continue
            firsts = np.asarray(first[(model, pattern)])
            hist = latency.merged(steady[(model, pattern)])
            ratio = latency.cold_ratio(firsts, hist)
            p50 = latency.percentile_us(hist, 50)
            excess_us = float(np.max(firsts)) - p50
            what = run.patterns.get(pattern, "")
            status = FAIL if math.isnan(ratio) or (ratio > self.values["max_cold_ratio"]
                                                   and excess_us > self.values["min_excess"] * 1e6) else PASS
            warmed = "not warmed" if status == FAIL else "warm"
            out.append(self.verdict(
                f"{model} {pattern}", ratio, self.values["max_cold_ratio"],
                f"{model} pattern {pattern!r}{f' ({what})' if what else ''} is {warmed}: first request "
                f"{np.max(firsts) / 1000:.2f} ms vs its steady p50 {p50 / 1000:.2f} ms ({ratio:.1f}x)",
                {"first_us": firsts.tolist()[:32], "steady_p50_us": p50, "excess_us": excess_us,
                 "steady_count": int(hist.get_total_count()), "pattern": what}, status=status))
        return out


class GraphReplayCheck(Check):
    """After warmup, every execution of a configured graph shape replays a captured graph (none runs eagerly)."""

    name = "graph_replay"
    summary = "post-warmup executions of configured CUDA-graph shapes that ran eagerly, per model (rmt_graph log)"
    measure = "graph_eager_executions_count"
    unit = "count"
    params = (Param("max_eager", 0, lambda v: parse_number(v), "eager post-warmup executions tolerated per model"),)

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model with ``rmt_graph`` lines after its warmup."""
        by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in graph_executions(run.model_lines or run.server_log):
            by_model[e["model"]].append(e)
        out = []
        for model, execs in sorted(by_model.items()):
            served = [e for e in execs if not e["warmup"] and e["configured"]]
            configured = configured_graph_shapes(run.configs[model]) if model in run.configs else []
            configured = configured or sorted({e["shape"] for e in execs if e["configured"]})
            if not served:
                out += self.no_evidence(f"post-warmup executions of {model}'s configured graph shapes")
                continue
            modes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for e in served:
                modes[e["shape"]][e["mode"]] += 1
            eager = {s: m["eager"] for s, m in modes.items() if m.get("eager")}
            captured = sorted({e["shape"] for e in execs if e["mode"] == "capture"})
            unseen = [s for s in configured if s not in modes]
            n = float(sum(eager.values()))
            why = (f"{model}: {n:.0f} of {len(served)} post-warmup executions of configured graph shapes ran eagerly "
                   f"(shapes {', '.join(sorted(eager))}; warmup captured {', '.join(captured) or 'none'})" if eager
                   else f"{model}: all {len(served)} post-warmup executions of configured shapes replayed a graph "
                        f"({', '.join(sorted(modes))})")
            if unseen:
                why += f"; configured shapes not requested after warmup: {', '.join(unseen)}"
            out.append(self.verdict(model, n, self.values["max_eager"], why,
                                    {"modes": {s: dict(m) for s, m in sorted(modes.items())}, "eager": eager,
                                     "captured": captured, "configured": configured, "unseen": unseen,
                                     "warmup_executions": sum(1 for e in execs if e["warmup"])}))
        served_models = {w.model for w in run.windows}
        for model in sorted(m for m, c in run.configs.items() if m in served_models and m not in by_model
                            and configured_graph_shapes(c)):
            out.append(self.cannot_judge(model, f"{model}: CUDA graphs are configured but the model reports no graph "
                                         "use (the zoo's rmt_graph lines): whether an execution replayed a graph "
                                         "cannot be seen from outside; shape_warmup judges each shape's first "
                                         "requests"))
        return out or self.no_evidence("rmt_graph lines in model_lines.log or tritonserver.log "
                                       "(a model that reports graph replay)")
