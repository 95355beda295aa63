"""The one adapter from a run directory (:class:`rmt.core.rundir.RunDir`) to the checkers' plain inputs.

Everything else in :mod:`rmt.check` is a pure function of :class:`~rmt.check.data.RunInputs`; this module alone knows
the files. Read so far: ``manifest.json`` (server options → rate limiter on/off and ``--rate-limit-resource`` flags;
the model repository → per-instance rate-limiter needs and weights; the scenario's ``checks`` spec) and the
collectors' memory series (``series.jsonl``/``samples.jsonl`` through :func:`rmt.core.samples.load_series`).

Which series are judged follows :data:`rmt.core.measures.MEASURES`, not a list here: every ``bytes`` measure whose
better direction is ``lower`` is memory, except those in :data:`NOT_THE_SERVERS`; a measure from the ``shm`` source or
with ``pool`` in its name is a *pool*. The x axis is completed requests (``nv_inference_request_success`` +
``nv_inference_request_failure``, failures count: an error path can leak): of the series' own model when it has a
``model`` label, of the whole server otherwise, interpolated at the memory sample times.

Request windows (``windows.jsonl``) and probe traces (``traces.jsonl``) are read as plain JSON by the field names of
:class:`rmt.core.windows.LoadWindow` and :class:`~rmt.core.windows.ProbeTrace` (a test builds its input through
those dataclasses, so a field drift fails it). Windows of one stream are summed over protocols and phases; priority 0
(the model's default level) counts as unknown; the steady-state histogram leaves out the first :data:`STEADY_AFTER_S`
seconds of a stream; a trace's instance is named ``<model>_0_<instance_index>`` (models with
one instance group).

Model configs the load fetched from the server (``manifest.model_configs``) stand in for models the repository does
not hold (a server rmt did not start). Also read when present: the stream's pattern, phase per window, failures by
reason, ``in_flight_max`` and the slowest latency per window (leak attribution, queue policy, reload);
``timeout_us`` and pattern descriptions from the manifest's scenario; per-model counters (:data:`COUNTERS`) and free
memory from the collector's series; model configs (``ModelConfig``) from the repository; ``failures.jsonl``,
``events.jsonl``, ``readiness.jsonl``, ``model_control.jsonl``, a verbose ``tritonserver.log`` and
``model_lines.log`` (see :mod:`rmt.core.records`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from rmt.check import records
from rmt.check.data import CounterSeries, InstanceTrace, MemorySeries, ModelLimits, RunInputs, StreamWindows
from rmt.check.ratelimit import model_limits, repository_limits
from rmt.check.restarts import per_lifetime, restart_losses, restart_times, server_gaps
from rmt.core.errors import ConfigError
from rmt.core.hdr import decode_histogram, new_histogram
from rmt.core.measures import MEASURES
from rmt.core.modelconfig import config_from_json, load_config_pbtxt
from rmt.core.records import (
    EVENTS_FILE,
    FAILURES_FILE,
    MODEL_CONTROL_FILE,
    MODEL_LINES,
    READINESS_FILE,
    SEQUENCES_FILE,
    SERVER_LOG,
    SHM_FILE,
)
from rmt.core.rundir import LOSSES, RunDir
from rmt.core.samples import SAMPLES_FILE, Series, load_series
from rmt.core.windows import TRACES_FILE, WINDOWS_FILE

#: Memory measures that are not the server's own memory, with the reason they are not judged.
NOT_THE_SERVERS = {"nv_cpu_memory_used_bytes": "machine-wide (MemTotal - MemAvailable): every process of the host"}
COMPLETED = ("nv_inference_request_success", "nv_inference_request_failure")
STEADY_AFTER_S = 10.0
STEADY_AFTER_SHARE = 0.2
"""A stream shorter than 50 s counts as steady after this share of its span (see :func:`_steady_start`)."""
WARMUP_PHASE = "warmup"
"""Windows of a phase with this name never count as steady state."""
#: Per-model cumulative counters read for the black-box checks.
COUNTERS = ("nv_inference_compute_infer_duration_us", "nv_inference_exec_count", "nv_inference_request_success",
            "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model")
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


UNFINISHED = "load_end_missing"
"""Loss kind of a load whose end the manifest never recorded."""


def unfinished_load(manifest: dict[str, Any], losses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loss of a load whose start the manifest records and whose end it does not (the master writes the end
    last), unless a loss of the load (cut short) says so already; else []."""
    if not isinstance(manifest.get("load_start_ns"), int) or isinstance(manifest.get("load_end_ns"), int):
        return []
    if any(loss.get("subject") == "load" for loss in losses):
        return []
    return [{"kind": UNFINISHED, "subject": "load",
             "reason": "the manifest records the load's start but not its end: the load is still running, or the "
                       "Locust master stopped before writing it (killed, or its run directory could not be written); "
                       "the records may stop early"}]


def load_inputs(run: RunDir) -> RunInputs:
    """Read a run directory into :class:`RunInputs`; what cannot be read is noted in ``notes``, never guessed."""
    manifest = run.manifest()
    inputs = RunInputs(run_path=run.path)
    losses = manifest.get(LOSSES)
    inputs.losses = [dict(loss) for loss in losses if isinstance(loss, dict)] if isinstance(losses, list) else []
    inputs.losses += unfinished_load(manifest, inputs.losses)
    if not manifest:
        inputs.notes.append(f"no manifest.json in {run.path}: server options and model configs unknown")
    options = server_options(manifest)
    flags = [str(f) for f in options.get("rate_limit_resources") or []]
    inputs.rate_limit_flags = flags
    inputs.rate_limiter_on = options.get("rate_limit") == "execution_count" or (
        bool(flags) and options.get("rate_limit") != "off")
    repo = options.get("model_repository")
    if repo:
        gpus = range(len(manifest.get("gpus") or [])) or (0,)  # KIND_GPU groups without `gpus` use every GPU
        try:
            inputs.models = repository_limits(Path(repo), gpus=gpus)
            inputs.configs = {cfg.parent.name: load_config_pbtxt(cfg) for cfg in sorted(Path(repo).glob(
                "*/config.pbtxt"))}
        except ConfigError as exc:
            inputs.notes.append(f"model configs not read: {exc}")
    live_configs(manifest, inputs)
    if (run.path / SAMPLES_FILE).exists():
        series = load_series(run)
        restarts = restart_times(series)
        inputs.memory = per_lifetime(memory_series(series), restarts)
        start = manifest.get("load_start_ns")
        origin = start if isinstance(start, int) else None
        inputs.losses += restart_losses(restarts, origin) + server_gaps(series, origin)
        inputs.counters = counter_series(series)
        inputs.free_memory = free_memory(series)
        if not inputs.memory:
            inputs.notes.append("no memory series with completed-request counts (is triton_metrics sampled?)")
    else:
        inputs.notes.append(f"no {SAMPLES_FILE}: no collector ran, memory checks have nothing to judge")
    traffic = scenario_traffic(manifest)
    inputs.patterns = pattern_descriptions(traffic)
    inputs.promised_responses = promised_responses(traffic)
    inputs.traffic = traffic
    inputs.cache_size_bytes = int(options["cache_size_bytes"]) if options.get("cache_size_bytes") else None
    if (run.path / WINDOWS_FILE).exists():
        inputs.windows = stream_windows(run.read(WINDOWS_FILE), stream_timeouts(traffic))
    else:
        inputs.notes.append(f"no {WINDOWS_FILE}: no load ran, request checks have nothing to judge")
    if (run.path / TRACES_FILE).exists():
        inputs.traces = instance_traces(run.read(TRACES_FILE), inputs.models)
    inputs.failures = records.failure_events(run.read(FAILURES_FILE))
    control, polls = records.control_events(run.read(MODEL_CONTROL_FILE))
    inputs.events = sorted(records.model_events(run.read(EVENTS_FILE)) + control, key=lambda e: e.t_s)
    inputs.readiness = records.readiness_timelines(run.read(READINESS_FILE), polls)
    inputs.sequences = list(run.read(SEQUENCES_FILE))
    inputs.shm_records = list(run.read(SHM_FILE))
    log = run.path / SERVER_LOG
    if log.exists():
        inputs.server_log = log.read_text(errors="replace").splitlines()
    lines = run.path / MODEL_LINES
    inputs.model_lines = lines.read_text(errors="replace").splitlines() if lines.exists() else inputs.server_log
    inputs.events = sorted(inputs.events + records.log_warmup_events(inputs.model_lines), key=lambda e: e.t_s)
    return inputs


def live_configs(manifest: Mapping[str, Any], inputs: RunInputs) -> None:
    """Add the configs the load fetched from the server (``manifest.model_configs``, JSON of ``v2/models/<m>/config``)
    for every model the repository did not give: a server rmt did not start still has its configs judged."""
    gpus = range(len(manifest.get("gpus") or [])) or (0,)
    for name, data in (manifest.get("model_configs") or {}).items():
        if name in inputs.configs or not isinstance(data, dict):
            continue
        try:
            config = config_from_json(data)
        except ValueError as exc:  # json_format.ParseError
            inputs.notes.append(f"model config of {name} from the server not read: {exc}")
            continue
        inputs.configs[name] = config
        inputs.models[name] = model_limits(name, config, gpus=gpus)


def scenario_traffic(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``traffic`` section of the run's scenario (``rmt.load`` format), or {}."""
    scenario = manifest.get("scenario")
    if isinstance(scenario, str):  # a path or a JSON text
        try:
            scenario = json.loads(Path(scenario).read_text() if not scenario.lstrip().startswith("{") else scenario)
        except (OSError, ValueError):
            return {}
    if not isinstance(scenario, dict):
        return {}
    traffic = scenario.get("traffic", scenario)
    return traffic if isinstance(traffic, dict) else {}


def pattern_descriptions(traffic: Mapping[str, Any]) -> dict[str, str]:
    """Pattern name → ``shape [8192], dtype FP32, data random`` style text for explanations."""
    out = {}
    for name, p in (traffic.get("patterns") or {}).items():
        if isinstance(p, dict):
            parts = [f"{k} {json.dumps(p[k]) if not isinstance(p[k], str) else p[k]}"
                     for k in ("shape", "dtype", "batch_size", "data") if k in p]
            out[str(name)] = ", ".join(parts) or "the model's defaults"
    return out


def promised_responses(traffic: Mapping[str, Any]) -> dict[str, int]:
    """Streaming pattern name → the responses per request its ``stream`` section promises (0: not stated)."""
    return {str(name): int((p.get("stream") or {}).get("responses", 0) or 0)
            for name, p in (traffic.get("patterns") or {}).items() if isinstance(p, dict) and "stream" in p}


def stream_timeouts(traffic: Mapping[str, Any]) -> dict[str, int]:
    """Stream name (``model/p<priority>/<pattern>``) → its requests' ``timeout_us``, for streams that set one."""
    out = {}
    for st in traffic.get("streams") or []:
        if isinstance(st, dict) and st.get("timeout_us"):
            out[f"{st['model']}/p{int(st.get('priority', 0))}/{st.get('pattern', 'default')}"] = int(st["timeout_us"])
    return out


def counter_series(series: Mapping[tuple[str, int], Series]) -> list[CounterSeries]:
    """Every per-model ``triton_metrics`` counter of :data:`COUNTERS` (epoch s, cumulative value)."""
    return sorted((CounterSeries(s.measure, s.labels["model"], s.t_epoch_ns / 1e9, s.values)
                   for s in series.values() if s.measure in COUNTERS and "model" in s.labels),
                  key=lambda c: (c.measure, c.model))


def free_memory(series: Mapping[tuple[str, int], Series]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Device → (epoch s, free bytes): NVML's free memory per GPU, else Triton's total − used per GPU."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    totals = {s.labels.get("gpu_uuid"): s for s in series.values() if s.measure == "nv_gpu_memory_total_bytes"}
    for s in series.values():
        if s.measure == "nv_gpu_memory_used_bytes" and s.labels.get("gpu_uuid") in totals:
            total = totals[s.labels.get("gpu_uuid")]
            values = np.interp(s.t_epoch_ns, total.t_epoch_ns, total.values) - s.values
            out[f"gpu={s.labels['gpu_uuid']}"] = (s.t_epoch_ns / 1e9, values)
    for s in series.values():
        if s.measure == "gpu_memory_free_bytes":
            out[f"gpu={s.labels.get('gpu', s.labels.get('index', '0'))}"] = (s.t_epoch_ns / 1e9, s.values)
    return out


def _decode(text: str | None) -> HdrHistogram | None:
    return decode_histogram(text) if text else None  # rmt's factory: freed by refcounting (rmt.core.hdr)


def _steady_start(ts: np.ndarray) -> int:
    """Window start (ns) from which a stream counts as steady: :data:`STEADY_AFTER_S` seconds in, or
    :data:`STEADY_AFTER_SHARE` of the stream's span for a short (CI-sized) run, whichever comes first."""
    start, end = int(ts[0]), int(ts[-1])
    return start + int(min(STEADY_AFTER_S * 1e9, STEADY_AFTER_SHARE * (end - start)))


_COLS = ("sent", "succeeded", "failed", "in_flight", "failed_timeout", "failed_rejected", "failed_server",
         "failed_client", "in_flight_max", "latency_max_us", "cancelled", "responses", "finals",
         "completed_responses")


def stream_windows(records: Iterable[dict[str, Any]], timeouts: Mapping[str, int] | None = None
                   ) -> list[StreamWindows]:
    """``windows.jsonl`` records → one :class:`StreamWindows` per stream (protocols and phases summed).

    ``timeouts``: stream name → the ``timeout_us`` its requests carried (from the scenario)."""
    rows: dict[str, dict[int, list[float]]] = {}
    phases: dict[str, dict[int, dict[str, int]]] = {}
    meta: dict[str, tuple[str, int | None, str]] = {}
    hists: dict[str, list[tuple[int, str, str]]] = {}
    first: dict[str, tuple[int, float]] = {}
    streaming: set[str] = set()
    gaps: dict[str, list[str]] = {}
    for rec in records:
        stream, t = str(rec["stream"]), int(rec["window_start_ns"])
        meta.setdefault(stream, (str(rec["model"]), int(rec["priority"]) or None, str(rec.get("pattern", ""))))
        acc = rows.setdefault(stream, {}).setdefault(t, [0.0] * 9 + [math.nan] + [0.0] * 4)
        acc[0] += rec["sent"]
        acc[1] += rec["succeeded"]
        acc[2] += sum(rec[f] for f in FAILED_FIELDS)
        acc[3] += rec["in_flight"]
        for i, f in enumerate(FAILED_FIELDS):
            acc[4 + i] += rec[f]
        acc[8] += rec.get("in_flight_max") or 0
        acc[10] += rec.get("cancelled") or 0
        acc[11] += rec.get("responses") or 0
        acc[12] += rec.get("finals") or 0
        acc[13] += rec.get("completed_responses") or 0
        if rec.get("responses") or rec.get("cancelled") or rec.get("finals"):
            streaming.add(stream)
            gaps.setdefault(stream, []).append(rec.get("gap_us_hdr") or "")
        phase = str(rec.get("phase", ""))
        by_phase = phases.setdefault(stream, {}).setdefault(t, {})
        by_phase[phase] = by_phase.get(phase, 0) + int(rec["sent"]) + int(rec["succeeded"]) + 1
        if rec["succeeded"]:
            hists.setdefault(stream, []).append((t, phase, rec["latency_us_hdr"]))
            if rec.get("latency_max_us") is not None:
                acc[9] = float(np.fmax(acc[9], float(rec["latency_max_us"])))
                if stream not in first or t < first[stream][0]:
                    first[stream] = (t, float(rec["latency_max_us"]))
    out = []
    for stream, by_t in sorted(rows.items()):
        ts = np.array(sorted(by_t), dtype=np.int64)
        cols = np.array([by_t[t] for t in ts.tolist()], dtype=float).reshape(-1, len(_COLS))
        steady_from = _steady_start(ts)
        steady = new_histogram()
        for t, phase, text in hists.get(stream, []):
            h = _decode(text) if t >= steady_from and phase != WARMUP_PHASE else None
            if h is not None:
                steady.add(h)
        model, priority, pattern = meta[stream]
        phase_of = np.array([max(phases[stream][t].items(), key=lambda kv: kv[1])[0] for t in ts.tolist()],
                            dtype=object)
        out.append(StreamWindows(
            stream, model, ts / 1e9, cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], priority,
            steady if steady.get_total_count() else None,
            np.array([first[stream][1]]) if stream in first else None,
            pattern=pattern, phase=phase_of,
            failed_by={f.removeprefix("failed_"): cols[:, 4 + i] for i, f in enumerate(FAILED_FIELDS)},
            in_flight_max=cols[:, 8], latency_max_us=cols[:, 9],
            timeout_us=int((timeouts or {}).get(stream, 0)),
            **(_stream_columns(cols, gaps.get(stream, [])) if stream in streaming else {})))
    return out


def _stream_columns(cols: np.ndarray, gaps: list[str]) -> dict[str, Any]:
    """The streaming fields of a :class:`StreamWindows` (cancelled, responses, finals per window; merged gaps)."""
    hist = new_histogram()
    for text in gaps:
        h = _decode(text)
        if h is not None:
            hist.add(h)
    return {"cancelled": cols[:, 10], "responses": cols[:, 11], "finals": cols[:, 12],
            "completed_responses": cols[:, 13], "gap_us": hist if hist.get_total_count() else None}


def instance_name(model: str, index: int, device: int, limits: ModelLimits | None) -> str:
    """Triton's name of the instance a probe trace came from: the probe reports the index within its instance group
    and its device, so the group is the one whose instance of that index sits on that device (``<model>_0_<index>``
    when the configs are unknown or several groups match)."""
    if limits is not None:
        match = [name for name, dev in limits.instances.items() if dev == device and name.endswith(f"_{index}")]
        if len(match) == 1:
            return match[0]
    return f"{model}_0_{index}"


def instance_traces(records: Iterable[dict[str, Any]], models: Mapping[str, ModelLimits] | None = None
                    ) -> list[InstanceTrace]:
    """``traces.jsonl`` rows → one :class:`InstanceTrace` per instance (one row per execution, batch rows merged);
    ``models`` (the rate limiter's view of the configs) names instances of models with several instance groups."""
    execs: dict[tuple[str, int, int], dict[tuple[int, int], tuple[int, int, int, int]]] = {}
    for rec in records:
        model = str(rec["stream"]).split("/", 1)[0]
        key = (model, int(rec["instance_index"]), int(rec["device_id"]))
        execs.setdefault(key, {})[(int(rec["pid"]), int(rec["exec_index"]))] = (
            int(rec["start_ns"]), int(rec["end_ns"]), int(rec.get("cold") or 0), int(rec["exec_index"]))
    out = []
    for (model, index, device), rows in sorted(execs.items()):
        arr = np.array(sorted(rows.values()), dtype=np.int64).reshape(-1, 4)
        name = instance_name(model, index, device, (models or {}).get(model))
        out.append(InstanceTrace(model, name, device, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]))
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
        gpu = s.labels.get("gpu", s.labels.get("gpu_uuid"))
        device = f"gpu={gpu}" if gpu is not None else ("host" if MEASURES[s.measure].source == "process" else None)
        out.append(MemorySeries(series_name(s), s.t_epoch_ns / 1e9, requests, s.values, kind,
                                s.labels.get("model"), device))
    return sorted(out, key=lambda m: m.name)
