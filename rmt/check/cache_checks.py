"""Checks of Triton's response cache: the hit ratio the load set on purpose, and memory bounded by the cache size.

- ``cache_hit_ratio``: per model with a ``cache`` pattern, Triton's own hits / (hits + misses)
  (``nv_cache_num_hits_per_model`` / ``_misses_per_model`` over the run) matches the ratio the streams asked for
  (each stream's requests × its pattern's ``hit_ratio``), within ``tolerance`` plus the first use of each repeated
  body (a miss by construction). A cache that never hits (no ``--cache-config``) fails here.
- ``cache_bounded``: with the cache on, the server process's memory grows over the load by at most the configured
  cache size + ``margin`` (judged on whole loads only), and over the load's second half (or of its ``phase``, one
  where the cache's traffic runs alone) by at most ``max_late_growth`` (Triton's later QA: a
  10 MB cache, 10k random inputs, growth ≤ 2 MB) while misses continue there (no late misses: undecided).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from rmt.check.base import Check, Param, Verdict
from rmt.check.data import CounterSeries, RunInputs
from rmt.check.quantity import parse_number, parse_size
from rmt.core.fmt import format_bytes

HITS, MISSES = "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model"


def _delta(counters: list[CounterSeries], measure: str, model: str) -> float:
    """Increase of a cumulative per-model counter over the run (NaN when it was not sampled)."""
    for c in counters:
        if c.measure == measure and c.model == model:
            ok = np.isfinite(c.values)
            if ok.sum() >= 1:
                return float(c.values[ok][-1] - (c.values[ok][0] if ok.sum() > 1 else 0.0))
    return math.nan


def cache_patterns(traffic: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """Pattern name → (hit_ratio, repeated) for the patterns with a ``cache`` mix."""
    out = {}
    for name, p in (traffic.get("patterns") or {}).items():
        cache = p.get("cache") if isinstance(p, dict) else None
        if isinstance(cache, dict) and "hit_ratio" in cache:
            out[str(name)] = (float(cache["hit_ratio"]), int(cache.get("repeated", 4)))
    return out


class CacheHitRatioCheck(Check):
    """Triton's measured cache hit ratio is the one the load asked for."""

    name = "cache_hit_ratio"
    summary = "|measured − intended| response-cache hit ratio per model (Triton's hit/miss counters)"
    measure = "cache_hit_ratio_error"
    params = (Param("tolerance", 0.05, lambda v: parse_number(v, high=1.0), "tolerated |measured − intended|"),
              Param("min_lookups", 100, lambda v: parse_number(v), "cache lookups needed to judge a model"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model that received a cache pattern's requests."""
        patterns = cache_patterns(run.traffic)
        sent: dict[str, float] = defaultdict(float)
        wanted: dict[str, float] = defaultdict(float)
        repeated: dict[str, int] = defaultdict(int)
        for w in run.windows:
            if w.pattern in patterns:
                n = float(np.sum(w.requests))
                ratio, bodies = patterns[w.pattern]
                sent[w.model] += n
                wanted[w.model] += n * ratio
                repeated[w.model] += bodies if ratio > 0 else 0
        if not sent:
            return self.no_evidence("requests of a pattern with a cache mix")
        return [self._judge(m, sent[m], wanted[m] / sent[m], repeated[m], run) for m in sorted(sent)]

    def _judge(self, model: str, sent: float, intended: float, repeated: int, run: RunInputs) -> Verdict:
        hits, misses = _delta(run.counters, HITS, model), _delta(run.counters, MISSES, model)
        lookups = hits + misses
        evidence = {"hits": hits, "misses": misses, "requests_sent": sent, "intended": intended,
                    "repeated_bodies": repeated}
        if math.isnan(lookups) or lookups < self.values["min_lookups"]:
            return self.verdict(model, math.nan, self.values["tolerance"],
                                f"{model}: {0 if math.isnan(lookups) else lookups:.0f} cache lookups counted by "
                                f"Triton (need {self.values['min_lookups']:g}; is nv_cache_* sampled and the cache "
                                "on?): too little data", evidence, status="skip")
        measured = hits / lookups
        first_uses = repeated / lookups  # each repeated body misses once before it hits
        error = max(0.0, abs(measured - intended) - first_uses)
        evidence.update(measured=measured, first_use_allowance=first_uses)
        return self.verdict(model, error, self.values["tolerance"],
                            f"{model}: hit ratio {measured:.3f} measured by Triton, {intended:.3f} intended "
                            f"({hits:.0f} hits, {misses:.0f} misses)", evidence)


def phase_span(run: RunInputs, phase: str) -> tuple[float, float] | None:
    """(first window start, last window end) in seconds of the windows issued in ``phase``, or None."""
    starts = [float(t) for w in run.windows if w.phase is not None
              for t, p in zip(w.t_s, w.phase, strict=False) if p == phase]
    return (min(starts), max(starts) + 1.0) if starts else None


class CacheBoundedCheck(Check):
    """The server's memory stays within the response cache's size while misses keep inserting."""

    name = "cache_bounded"
    summary = "server memory growth over the load's second half while cache misses continue"
    measure = "cache_late_growth_bytes"
    unit = "bytes"
    params = (Param("max_late_growth", "2MiB", lambda v: parse_size(str(v)),
                    "growth tolerated over the second half of the load"),
              Param("margin", "16MiB", lambda v: parse_size(str(v)),
                    "growth beyond the cache size tolerated over the whole load"),
              Param("series", "process_rss_bytes*role=server*", str, "the server memory series (glob)"),
              Param("phase", "", str, "judge only this phase of the load (one where the cache's traffic runs alone), "
                    "'' for the whole load"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per server memory series, when the run had the cache on and cache misses."""
        import fnmatch

        if run.cache_size_bytes is None:
            return self.no_evidence("response cache size (server option cache_size_bytes)")
        misses = [c for c in run.counters if c.measure == MISSES]
        series = [s for s in run.memory if fnmatch.fnmatchcase(s.name, self.values["series"])]
        if not misses or not series:
            return self.no_evidence("server memory and nv_cache_num_misses_per_model series")
        span = phase_span(run, self.values["phase"]) if self.values["phase"] else None
        if self.values["phase"] and span is None:
            return self.no_evidence(f"load windows of phase {self.values['phase']!r}")
        return [self._judge(s, misses, run.cache_size_bytes, span) for s in series]

    def _judge(self, s: Any, misses: list[CounterSeries], cache_bytes: int,
               span: tuple[float, float] | None) -> Verdict:
        ok = np.isfinite(s.values)
        if span is not None:
            ok &= (s.t_s >= span[0]) & (s.t_s <= span[1])
        t, v = s.t_s[ok], s.values[ok]
        limit = float(self.values["max_late_growth"])
        if len(v) < 4:
            return self.verdict(s.name, math.nan, limit, f"{s.name}: fewer than 4 samples", status="skip")
        mid = t[0] + (t[-1] - t[0]) / 2
        late = t >= mid
        late_misses = 0.0
        for c in misses:
            fine = np.isfinite(c.values)
            if fine.sum() >= 2:
                late_misses += float(np.interp(t[-1], c.t_s[fine], c.values[fine]) -
                                     np.interp(mid, c.t_s[fine], c.values[fine]))
        late_growth = float(np.median(v[late][-3:]) - np.median(v[late][:3]))
        total = float(np.max(v) - v[0])
        evidence = {"late_growth_bytes": late_growth, "total_growth_bytes": total, "cache_size_bytes": cache_bytes,
                    "late_misses": late_misses}
        if late_misses <= 0:
            return self.verdict(s.name, math.nan, limit, f"{s.name}: no cache misses in the load's second half: "
                                "the cache was not exercised, cannot judge", evidence, status="skip")
        # Within a phase the server still carries what the phases before it grew: only its late growth is the cache's.
        over = span is None and total > cache_bytes + float(self.values["margin"])
        why = (f"server memory +{format_bytes(late_growth)} over the second half ({late_misses:.0f} misses there), "
               f"+{format_bytes(total)} in all for a {format_bytes(cache_bytes)} cache")
        if over:
            why += f": beyond cache size + {format_bytes(float(self.values['margin']))}"
        return self.verdict(s.name, late_growth, limit, why, evidence, status="fail" if over else None)
