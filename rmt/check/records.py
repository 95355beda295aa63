"""Readers of the run-directory records the checkers need beyond load windows and collector samples.

The records and file names are :mod:`rmt.core.records`; this module turns their rows into the checkers' plain
inputs (:mod:`rmt.check.data`). A server log copied into the run directory (``SERVER_LOG``) is read for
Triton's own warmup lines (:func:`warmup_lines`, ``--log-verbose=1``) and for the zoo models' ``rmt_warmup``/
``rmt_exec`` lines (:func:`log_warmup_events`: the ends of warmups, for the readiness check).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from rmt.check.data import FailureEvent, ModelEvent

#: Error messages that mean an allocation failed (case-insensitive).
ALLOCATION_FAILURE = re.compile(r"out of memory|failed to allocate|cannot allocate|allocation fail", re.I)
_WARMUP_LINE = re.compile(r"(?:model '(?P<model>[^']+)' )?(?:instance )?(?P<instance>\S+) is running warmup sample "
                          r"'(?P<sample>[^']+)'")


def failure_events(records: Iterable[dict[str, Any]]) -> list[FailureEvent]:
    """``failures.jsonl`` rows as :class:`FailureEvent`."""
    return [FailureEvent(int(r["t_ns"]) / 1e9, str(r["model"]), str(r["message"]),
                         None if r.get("need_bytes") is None else float(r["need_bytes"]), r.get("device"),
                         None if r.get("free_bytes") is None else float(r["free_bytes"]))
            for r in records]


def model_events(records: Iterable[dict[str, Any]]) -> list[ModelEvent]:
    """``events.jsonl`` rows as :class:`ModelEvent`, sorted by time."""
    return sorted((ModelEvent(int(r["t_ns"]) / 1e9, str(r["model"]), str(r["event"]), dict(r.get("detail") or {}))
                   for r in records), key=lambda e: e.t_s)


def readiness_timelines(records: Iterable[dict[str, Any]], extra: dict[str, list[tuple[float, float]]] | None = None
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``readiness.jsonl`` rows (plus ``extra`` polls) → model → (epoch s, ready 0/1), sorted by time."""
    rows: dict[str, list[tuple[float, float]]] = {m: list(p) for m, p in (extra or {}).items()}
    for r in records:
        rows.setdefault(str(r["model"]), []).append((int(r["t_ns"]) / 1e9, 1.0 if r["ready"] else 0.0))
    out = {}
    for model, pts in rows.items():
        arr = np.array(sorted(pts), dtype=float).reshape(-1, 2)
        out[model] = (arr[:, 0], arr[:, 1])
    return out


def control_events(records: Iterable[dict[str, Any]]) -> tuple[list[ModelEvent], dict[str, list[tuple[float, float]]]]:
    """``model_control.jsonl`` rows → lifecycle events (a reload becomes ``reload_start``/``reload_end`` with its
    config changes, and ``max_concurrency`` when it sets ``instance_group.<i>.count`` of a one-group model) and the
    readiness polls it reports (last not-ready, first ready) per model."""
    events: list[ModelEvent] = []
    polls: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        model, action = str(r["model"]), str(r["action"])
        start, end = int(r["requested_ns"]) / 1e9, int(r["returned_ns"]) / 1e9
        changes = dict(r.get("config_changes") or {})
        if action == "reload":
            detail: dict[str, Any] = {"config_changes": changes, "ok": bool(r.get("ok"))}
            counts = [v for k, v in changes.items() if re.fullmatch(r"instance_group\.0\.count", k)]
            if counts:
                detail["max_concurrency"] = int(counts[0])
            events += [ModelEvent(start, model, "reload_start"), ModelEvent(end, model, "reload_end", detail)]
        elif action == "load":
            events += [ModelEvent(start, model, "load_start"), ModelEvent(end, model, "loaded")]
        for key, ready in (("last_not_ready_ns", 0.0), ("first_ready_ns", 1.0)):
            if r.get(key) is not None:
                polls.setdefault(model, []).append((int(r[key]) / 1e9, ready))
    return sorted(events, key=lambda e: e.t_s), polls


_MODEL_LINE = re.compile(r"\b(?P<kind>rmt_warmup|rmt_exec) (?P<fields>(?:\w+=\S+ ?)+)")


def log_warmup_events(lines: Iterable[str]) -> list[ModelEvent]:
    """``warmup_end`` events from the zoo models' own server-log lines: every ``rmt_warmup`` line (start-up work of
    an instance ended, in ``initialize`` or on a background thread) and every ``rmt_exec`` line with ``warmup=1``
    (a ``model_warmup`` execution); the time is the line's ``end_ns``."""
    out = []
    for line in lines:
        match = _MODEL_LINE.search(line)
        if match is None:
            continue
        fields = dict(item.split("=", 1) for item in match["fields"].split())
        if match["kind"] == "rmt_exec" and fields.get("warmup") != "1":
            continue
        if "model" not in fields or not fields.get("end_ns", "").isdigit():
            continue
        detail: dict[str, Any] = {k: fields[k] for k in ("instance", "mode", "exec") if k in fields}
        out.append(ModelEvent(int(fields["end_ns"]) / 1e9, fields["model"], "warmup_end",
                              {**detail, "source": match["kind"]}))
    return out


def warmup_lines(lines: Iterable[str]) -> list[tuple[str | None, str, str]]:
    """``(model or None, instance, sample)`` of every ``is running warmup sample`` line of a verbose server log."""
    out = []
    for line in lines:
        m = _WARMUP_LINE.search(line)
        if m:
            out.append((m.group("model"), m.group("instance"), m.group("sample")))
    return out
