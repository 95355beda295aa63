"""Checks of streaming (decoupled) traffic: time to first response per model × priority, stream completeness.

Both read only rmt's own windows (``windows.jsonl``): for a streaming request ``latency_us`` is the time from its
intended send to its *first* response, and the windows count data responses, final flags, cancelled requests and the
responses of the completed ones — black-box evidence that holds for any decoupled model, not only the zoo's.
"""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict

import numpy as np

from rmt.check import latency
from rmt.check.base import FAIL, PASS, SKIP, Check, Param, Verdict
from rmt.check.data import RunInputs, StreamWindows
from rmt.check.quantity import parse_number


def _streaming(run: RunInputs) -> list[StreamWindows]:
    return [w for w in run.windows if w.streaming]


def _total(values: np.ndarray | None) -> float:
    return float(np.sum(values)) if values is not None else 0.0


class FirstResponseCheck(Check):
    """p99 time to first response of each model × request priority that streamed, against an SLO."""

    name = "first_response"
    summary = "p99 time to the first response of streaming requests per model × priority vs an SLO (µs)"
    measure = "first_response_p99_us"
    unit = "us"
    params = (
        Param("p99_ms", 1000.0, lambda v: parse_number(v, low=0.0, inclusive_low=False),
              "SLO: largest tolerated p99 time to first response, ms"),
        Param("min_requests", 20, lambda v: parse_number(v, low=1.0),
              "fewer first responses than this (after warm-up) leave the subject undecided"),
        Param("models", "*", lambda v: tuple(g.strip() for g in str(v).split(",") if g.strip()) or ("*",),
              "comma-separated globs of the models held to the SLO"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per (model, priority) with streaming requests."""
        groups: dict[tuple[str, int | None], list[StreamWindows]] = defaultdict(list)
        for w in _streaming(run):
            if any(fnmatch.fnmatchcase(w.model, g) for g in self.values["models"]):
                groups[(w.model, w.priority)].append(w)
        if not groups:
            return self.no_evidence("streaming requests (a pattern with a \"stream\" section)")
        out = []
        slo_ms = float(self.values["p99_ms"])
        slo = slo_ms * 1000
        for (model, priority), streams in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            subject = f"{model}/p{priority or 0}"
            hist = latency.merged(w.latency_steady for w in streams)
            n = hist.get_total_count()
            p99_us = latency.percentile_us(hist, 99.0)
            p99_ms = p99_us / 1000
            evidence = {"first_responses": n, "p50_ms": latency.percentile_us(hist, 50.0) / 1000,
                        "p99_ms": p99_ms, "streams": sorted(w.stream for w in streams)}
            if n < self.values["min_requests"]:
                out.append(self.verdict(subject, p99_us, slo, f"{subject}: only {n} first responses after warm-up "
                                        f"(< {self.values['min_requests']:g}): too little data to judge the SLO",
                                        evidence, status=FAIL if self.required else SKIP))
                continue
            within = "within" if p99_us <= slo else "above"
            out.append(self.verdict(subject, p99_us, slo, f"{subject}: p99 time to first response {p99_ms:.1f} ms "
                                    f"over {n} requests, {within} the {slo_ms:g} ms SLO", evidence))
        return out


class StreamCompletenessCheck(Check):
    """Every streaming request that was not cancelled ended (final flag, or the server's error), and completed
    requests brought the responses their pattern promises."""

    name = "stream_completeness"
    summary = "non-cancelled streaming requests without an end (final flag or server error), and response counts"
    measure = "stream_incomplete_requests_count"
    unit = "count"
    params = (
        Param("max_incomplete", 0, lambda v: parse_number(v), "non-cancelled requests without an end tolerated"),
    )

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per streaming stream (model/p<priority>/<pattern>)."""
        streams = _streaming(run)
        if not streams:
            return self.no_evidence("streaming requests (a pattern with a \"stream\" section)")
        return [self._judge(w, run.promised_responses.get(w.pattern, 0)) for w in streams]

    def _judge(self, w: StreamWindows, promised: int) -> Verdict:
        sent, cancelled, finals = _total(w.sent), _total(w.cancelled), _total(w.finals)
        answered = sum(_total(w.failed_by.get(k)) for k in ("timeout", "rejected", "server"))
        completed, responses = _total(w.completed), _total(w.completed_responses)
        incomplete = max(0.0, sent - cancelled - finals - answered)
        evidence = {"sent": sent, "cancelled": cancelled, "finals": finals, "server_errors": answered,
                    "client_failures": _total(w.failed_by.get("client")), "completed": completed,
                    "responses_of_completed": responses, "responses": _total(w.responses),
                    "promised_per_request": promised}
        if sent == 0:
            return self.verdict(w.stream, math.nan, self.values["max_incomplete"], f"{w.stream}: no request sent",
                                evidence, status=FAIL if self.required else SKIP)
        why = (f"{w.stream}: {incomplete:.0f} of {sent - cancelled:.0f} non-cancelled requests ended without a final "
               f"response or a server error ({cancelled:.0f} cancelled on purpose)")
        status = PASS if incomplete <= self.values["max_incomplete"] else FAIL
        if promised and completed and responses != promised * completed:
            status = FAIL
            why += (f"; the completed ones brought {responses:.0f} responses, {promised} × {completed:.0f} = "
                    f"{promised * completed:.0f} promised")
        elif promised and completed:
            why += f"; each completed one brought the {promised} responses promised"
        return self.verdict(w.stream, incomplete, self.values["max_incomplete"], why, evidence, status=status)
