"""The one adapter from a run directory (:class:`rmt.rundir.RunDir`) to the checkers' plain inputs.

Everything else in :mod:`checkers` is a pure function of :class:`~checkers.data.RunInputs`; this module alone knows
the files. Read so far: ``manifest.json`` (server options → rate limiter on/off and ``--rate-limit-resource`` flags;
the model repository → per-instance rate-limiter needs and weights; the scenario's ``checks`` spec) and the
collectors' memory series (``series.jsonl``/``samples.jsonl`` through :func:`collectors.series.load_series`).

Which series are judged follows :data:`rmt.measures.MEASURES`, not a list here: every ``bytes`` measure whose better
direction is ``lower`` is memory, except those in :data:`NOT_THE_SERVERS`; a measure from the ``shm`` source or
with ``pool`` in its name is a *pool*. The x axis is completed requests (``nv_inference_request_success`` +
``nv_inference_request_failure``, failures count: an error path can leak): of the series' own model when it has a
``model`` label, of the whole server otherwise, interpolated at the memory sample times.

Request windows (``windows.jsonl``) and probe traces (``traces.jsonl``) are read as plain JSON by the field names of
``rmt_users.windows.LoadWindow`` and ``ProbeTrace`` (a test builds its input through those dataclasses, so a field
drift fails it). Windows of one stream are summed over protocols and phases;
priority 0 (the model's default level) counts as unknown; the steady-state histogram leaves out the first
:data:`STEADY_AFTER_S` seconds of a stream; a trace's instance is named ``<model>_0_<instance_index>`` (models with
one instance group).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from checkers.data import InstanceTrace, MemorySeries, RunInputs, StreamWindows
from checkers.latency import new_histogram
from checkers.ratelimit import repository_limits
from collectors import sidecar  # noqa: F401 - imports every source, so their measures are registered
from collectors.series import SAMPLES_FILE, Series, load_series
from rmt.errors import ConfigError
from rmt.measures import MEASURES
from rmt.rundir import RunDir

#: Memory measures that are not the server's own memory, with the reason they are not judged.
NOT_THE_SERVERS = {"nv_cpu_memory_used_bytes": "machine-wide (MemTotal - MemAvailable): every process of the host"}
COMPLETED = ("nv_inference_request_success", "nv_inference_request_failure")
WINDOWS_FILE = "windows.jsonl"
TRACES_FILE = "traces.jsonl"
STEADY_AFTER_S = 10.0
FAILED_FIELDS = ("failed_timeout", "failed_rejected", "failed_server", "failed_client")


def server_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """The server options recorded in the manifest (``server.options``), or {}."""
    server = manifest.get("server") or {}
    options = server.get("options") if isinstance(server, dict) else None
    return options if isinstance(options, dict) else {}


def scenario_checks(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``checks`` mapping of the run's scenario (``scenario.checks`` or top-level ``checks``), or {}."""
    scenario = manifest.get("scenario")
    if isinstance(scenario, dict) and isinstance(scenario.get("checks"), dict):
        return dict(scenario["checks"])
    checks = manifest.get("checks")
    return dict(checks) if isinstance(checks, dict) else {}


def load_inputs(run: RunDir) -> RunInputs:
    """Read a run directory into :class:`RunInputs`; what cannot be read is noted in ``notes``, never guessed."""
    manifest = run.manifest()
    inputs = RunInputs()
    if not manifest:
        inputs.notes.append(f"no manifest.json in {run.path}: server options and model configs unknown")
    options = server_options(manifest)
    flags = [str(f) for f in options.get("rate_limit_resources") or []]
    inputs.rate_limit_flags = flags
    inputs.rate_limiter_on = options.get("rate_limit") == "execution_count" or (
        bool(flags) and options.get("rate_limit") != "off")
    repo = options.get("model_repository")
    if repo:
        try:
            inputs.models = repository_limits(Path(repo))
        except ConfigError as exc:
            inputs.notes.append(f"model configs not read: {exc}")
    if (run.path / SAMPLES_FILE).exists():
        inputs.memory = memory_series(load_series(run))
        if not inputs.memory:
            inputs.notes.append("no memory series with completed-request counts (is triton_metrics sampled?)")
    else:
        inputs.notes.append(f"no {SAMPLES_FILE}: no collector ran, memory checks have nothing to judge")
    if (run.path / WINDOWS_FILE).exists():
        inputs.windows = stream_windows(run.read(WINDOWS_FILE))
    else:
        inputs.notes.append(f"no {WINDOWS_FILE}: no load ran, request checks have nothing to judge")
    if (run.path / TRACES_FILE).exists():
        inputs.traces = instance_traces(run.read(TRACES_FILE))
    return inputs


def _decode(text: str | None) -> HdrHistogram | None:
    return HdrHistogram.decode(text.encode("ascii")) if text else None


def stream_windows(records: Iterable[dict[str, Any]]) -> list[StreamWindows]:
    """``windows.jsonl`` records → one :class:`StreamWindows` per stream (protocols and phases summed)."""
    rows: dict[str, dict[int, list[float]]] = {}
    meta: dict[str, tuple[str, int | None]] = {}
    hists: dict[str, list[tuple[int, str]]] = {}
    first: dict[str, tuple[int, float]] = {}
    for rec in records:
        stream, t = str(rec["stream"]), int(rec["window_start_ns"])
        meta.setdefault(stream, (str(rec["model"]), int(rec["priority"]) or None))
        acc = rows.setdefault(stream, {}).setdefault(t, [0.0, 0.0, 0.0, 0.0])
        acc[0] += rec["sent"]
        acc[1] += rec["succeeded"]
        acc[2] += sum(rec[f] for f in FAILED_FIELDS)
        acc[3] += rec["in_flight"]
        if rec["succeeded"]:
            hists.setdefault(stream, []).append((t, rec["latency_us_hdr"]))
            if rec.get("latency_max_us") is not None and (stream not in first or t < first[stream][0]):
                first[stream] = (t, float(rec["latency_max_us"]))
    out = []
    for stream, by_t in sorted(rows.items()):
        ts = np.array(sorted(by_t), dtype=np.int64)
        cols = np.array([by_t[t] for t in ts.tolist()], dtype=float).reshape(-1, 4)
        start = int(ts[0])
        steady = new_histogram()
        for t, text in hists.get(stream, []):
            h = _decode(text) if t - start >= STEADY_AFTER_S * 1e9 else None
            if h is not None:
                steady.add(h)
        model, priority = meta[stream]
        out.append(StreamWindows(stream, model, ts / 1e9, cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], priority,
                                 steady if steady.get_total_count() else None,
                                 np.array([first[stream][1]]) if stream in first else None))
    return out


def instance_traces(records: Iterable[dict[str, Any]]) -> list[InstanceTrace]:
    """``traces.jsonl`` rows → one :class:`InstanceTrace` per instance (one row per execution, batch rows merged)."""
    execs: dict[tuple[str, int, int], dict[tuple[int, int], tuple[int, int, int]]] = {}
    for rec in records:
        model = str(rec["stream"]).split("/", 1)[0]
        key = (model, int(rec["instance_index"]), int(rec["device_id"]))
        execs.setdefault(key, {})[(int(rec["pid"]), int(rec["exec_index"]))] = (
            int(rec["start_ns"]), int(rec["end_ns"]), int(rec.get("cold") or 0))
    out = []
    for (model, index, device), rows in sorted(execs.items()):
        arr = np.array(sorted(rows.values()), dtype=np.int64).reshape(-1, 3)
        out.append(InstanceTrace(model, f"{model}_0_{index}", device, arr[:, 0], arr[:, 1], arr[:, 2]))
    return out


def memory_kind(measure: str) -> str | None:
    """``memory``, ``pool`` or None (not judged) for a registered measure."""
    m = MEASURES.get(measure)
    if m is None or m.unit != "bytes" or m.better != "lower" or measure in NOT_THE_SERVERS:
        return None
    return "pool" if m.source == "shm" or "pool" in measure else "memory"


def series_name(s: Series) -> str:
    """``measure{label=value,...}`` without the volatile ``pid``."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "pid")
    return f"{s.measure}{{{labels}}}" if labels else s.measure


def completed_counters(series: Mapping[tuple[str, int], Series]) -> dict[str | None, tuple[np.ndarray, np.ndarray]]:
    """Cumulative completed requests per model (key None: the whole server) as (t_epoch_ns, count) step series."""
    per_model: dict[str, list[Series]] = {}
    for s in series.values():
        if s.measure in COMPLETED and "model" in s.labels:
            per_model.setdefault(s.labels["model"], []).append(s)
    out: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    for model, parts in per_model.items():
        out[model] = _sum_on_union(parts)
    if per_model:
        out[None] = _sum_on_union([p for parts in per_model.values() for p in parts])
    return out


def _sum_on_union(parts: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    t = np.unique(np.concatenate([p.t_epoch_ns for p in parts]))
    total = np.zeros(len(t))
    for p in parts:
        ok = np.isfinite(p.values)
        if ok.any():
            total += np.interp(t, p.t_epoch_ns[ok], p.values[ok], left=0.0)
    return t, total


def memory_series(series: Mapping[tuple[str, int], Series]) -> list[MemorySeries]:
    """Every judged memory/pool series with completed requests at each sample (dropped when there are none)."""
    counters = completed_counters(series)
    out: list[MemorySeries] = []
    for s in series.values():
        kind = memory_kind(s.measure)
        counter = counters.get(s.labels.get("model")) or counters.get(None)
        if kind is None or counter is None or len(s.values) == 0:
            continue
        t_ns, done = counter
        requests = np.interp(s.t_epoch_ns, t_ns, done, left=np.nan, right=np.nan)
        out.append(MemorySeries(series_name(s), s.t_epoch_ns / 1e9, requests, s.values, kind))
    return sorted(out, key=lambda m: m.name)
