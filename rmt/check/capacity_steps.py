"""Per-step figures of a sweep, recomputed offline from a run directory, and their CSV export.

Inputs: ``windows.jsonl`` (every window carries its step as its phase, ``step-03@120rps``), ``capacity_control.jsonl``
(when each step started and ended; without it, the span of the step's windows), and the collector's series.
Each step is measured over its *steady* seconds — whole seconds after its first (settling) second:

- throughput: succeeded requests/s and inferences/s, per stream (model × priority × pattern) and in all;
- latency percentiles (µs, from the windows' HDR histograms, intended send → reply) and failures by reason;
- in flight: mean requests outstanding by Little's law (achieved/s × mean latency);
- queue time per request: Δ``nv_inference_queue_duration_us`` / Δ``nv_inference_request_success`` (per model);
  pending requests: mean ``nv_inference_pending_request_count``; server CPU: Δ``process_cpu_s`` of the tree / Δt;
- memory (bytes, mean over the step) of every process, the process tree, each GPU and the pinned pool.

``capacity_steps.csv`` holds one row per step and scope (``all`` or a stream), columns = :class:`StepFigures`
fields, memory flattened to ``memory_bytes[<series>]`` columns.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from rmt.core.records import CAPACITY_CONTROL_FILE, parse_step_name
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, Series, load_series
from rmt.core.windows import WindowState, histogram_of

NS = 1_000_000_000
STEPS_CSV = "capacity_steps.csv"
_FAILURES = ("failed_timeout", "failed_rejected", "failed_server", "failed_client", "dropped_cap")
#: Memory measures reported per step (label that names the series).
MEMORY_MEASURES = {"process_rss_bytes": "name", "process_tree_rss_bytes": "", "gpu_memory_used_bytes": "gpu",
                   "gpu_process_memory_bytes": "pid", "nv_pinned_memory_pool_used_bytes": "",
                   "nv_gpu_memory_used_bytes": "gpu_uuid"}
#: Memory totals used for headroom (used measure → total measure).
MEMORY_TOTALS = {"gpu_memory_used_bytes": "gpu_memory_total_bytes", "nv_gpu_memory_used_bytes":
                 "nv_gpu_memory_total_bytes", "process_tree_rss_bytes": "nv_cpu_memory_total_bytes"}


@dataclass
class StepFigures:
    """The figures of one step in one scope (``all`` streams, or one stream); NaN = not measured."""

    step: int
    phase: str
    scope: str
    """``all`` or a stream name ``model/p<priority>/<pattern>``."""
    offered_per_s: float
    """Offered open-loop rate of the step (all streams; requests/s)."""
    seconds: int
    """Steady seconds measured."""
    reason: str
    """How the live controller ended the step (``stable``, ``unstable``, ``saturated``, ``slo``; '' unknown)."""
    achieved_per_s: float
    """Succeeded requests per second."""
    inferences_per_s: float
    """Batch rows of succeeded requests per second."""
    sent: int
    succeeded: int
    failed_timeout: int
    failed_rejected: int
    failed_server: int
    failed_client: int
    dropped_cap: int
    latency_p50_us: float
    latency_p90_us: float
    latency_p99_us: float
    latency_mean_us: float
    service_p50_us: float
    in_flight_mean: float
    """Little's law: achieved/s × mean latency (s)."""
    queue_us: float = math.nan
    """Mean Triton queue time per request (µs): Δqueue_duration_us / Δrequest_success."""
    pending_mean: float = math.nan
    """Mean of Triton's pending-request gauge (count)."""
    server_cpu_cores: float = math.nan
    """CPU cores the server tree used (Δprocess_cpu_s summed / Δt)."""
    machine_cpu_ratio: float = math.nan
    """Machine-wide CPU utilisation 0..1 (``nv_cpu_utilization``)."""
    start_ns: int = 0
    end_ns: int = 0
    memory_bytes: dict[str, float] = field(default_factory=dict)
    """Series (``measure[label]``) → mean bytes over the step."""
    memory_total_bytes: dict[str, float] = field(default_factory=dict)
    """Same keys → the device's size in bytes, where known (GPU total, host memory)."""

    @property
    def failed(self) -> int:
        """Every request that did not succeed, drops included."""
        return sum(getattr(self, name) for name in _FAILURES)


def _spans(run: RunDir, windows: list[dict[str, Any]]) -> dict[str, tuple[int, int, str]]:
    """Phase → (start ns, end ns, reason), from the controller's log or the windows' span."""
    spans: dict[str, tuple[int, int, str]] = {}
    for rec in run.read(CAPACITY_CONTROL_FILE):
        spans[str(rec["phase"])] = (int(rec["start_ns"]), int(rec["end_ns"]), str(rec["reason"]))
    seen: dict[str, list[int]] = defaultdict(list)
    for w in windows:
        if w.get("sent"):
            seen[str(w["phase"])].append(int(w["window_start_ns"]))
    for phase, starts in seen.items():
        if phase not in spans and parse_step_name(phase) is not None:
            spans[phase] = (min(starts), max(starts) + NS, "")
    return spans


def _in(series: Series, start_ns: int, end_ns: int) -> np.ndarray:
    mask = (series.t_epoch_ns >= start_ns) & (series.t_epoch_ns <= end_ns) & ~np.isnan(series.values)
    return np.asarray(mask)


def _mean(series: Series, start_ns: int, end_ns: int) -> float:
    mask = _in(series, start_ns, end_ns)
    return float(series.values[mask].mean()) if mask.any() else math.nan


def _delta(series: Series, start_ns: int, end_ns: int) -> tuple[float, float]:
    """(Δvalue, Δt s) of a cumulative series between its first and last sample inside the span."""
    mask = _in(series, start_ns, end_ns)
    if mask.sum() < 2:
        return math.nan, math.nan
    vals, ts = series.values[mask], series.t_epoch_ns[mask]
    return float(vals[-1] - vals[0]), float(ts[-1] - ts[0]) / NS


def _label(series: Series, label: str) -> str:
    return f"{series.measure}[{series.labels.get(label, '')}]" if label else series.measure


def _server_figures(fig: StepFigures, series: list[Series], models: set[str] | None) -> None:
    """Queue, pending, CPU and memory of the step from the collector's series (in place)."""
    start, end = fig.start_ns, fig.end_ns
    queue = success = 0.0
    pending: list[float] = []
    cpu = 0.0
    cpu_seen = False
    for s in series:
        model = s.labels.get("model")
        if s.measure in ("nv_inference_queue_duration_us", "nv_inference_request_success") and (
                models is None or model in models):
            d, _ = _delta(s, start, end)
            if not math.isnan(d):
                queue, success = (queue + d, success) if "queue" in s.measure else (queue, success + d)
        elif s.measure == "nv_inference_pending_request_count" and (models is None or model in models):
            pending.append(_mean(s, start, end))
        elif s.measure == "process_cpu_s" and models is None:
            d, dt = _delta(s, start, end)
            if not math.isnan(d) and dt > 0:
                cpu, cpu_seen = cpu + d / dt, True
        elif s.measure == "nv_cpu_utilization" and models is None:
            fig.machine_cpu_ratio = _mean(s, start, end)
        elif s.measure in MEMORY_MEASURES and models is None:
            key = _label(s, MEMORY_MEASURES[s.measure])
            fig.memory_bytes[key] = _mean(s, start, end)
            total_measure = MEMORY_TOTALS.get(s.measure)
            label = MEMORY_MEASURES[s.measure]
            for t in series:
                if t.measure == total_measure and (not label or t.labels.get(label) == s.labels.get(label)):
                    fig.memory_total_bytes[key] = _mean(t, start, end)
    fig.queue_us = queue / success if success > 0 else math.nan
    fig.pending_mean = float(np.nansum(pending)) if pending and not all(math.isnan(p) for p in pending) else math.nan
    if cpu_seen:
        fig.server_cpu_cores = cpu


def _figures(step: int, phase: str, scope: str, offered: float, span: tuple[int, int, str],
             records: list[dict[str, Any]], seconds: int) -> StepFigures:
    counts = {name: sum(int(r.get(name) or 0) for r in records) for name in WindowState.COUNTERS}
    lat = histogram_of(records)
    svc = histogram_of(records, "service_us_hdr")

    def pct(hist: Any, q: float) -> float:
        return float(hist.get_value_at_percentile(q)) if hist.get_total_count() else math.nan

    achieved = counts["succeeded"] / seconds if seconds else math.nan
    mean_us = float(lat.get_mean_value()) if lat.get_total_count() else math.nan
    return StepFigures(
        step=step, phase=phase, scope=scope, offered_per_s=offered, seconds=seconds, reason=span[2],
        achieved_per_s=achieved, inferences_per_s=counts["inferences"] / seconds if seconds else math.nan,
        sent=counts["sent"], succeeded=counts["succeeded"], failed_timeout=counts["failed_timeout"],
        failed_rejected=counts["failed_rejected"], failed_server=counts["failed_server"],
        failed_client=counts["failed_client"], dropped_cap=counts["dropped_cap"],
        latency_p50_us=pct(lat, 50), latency_p90_us=pct(lat, 90), latency_p99_us=pct(lat, 99), latency_mean_us=mean_us,
        service_p50_us=pct(svc, 50), in_flight_mean=achieved * mean_us / 1e6, start_ns=span[0], end_ns=span[1])


def step_figures(run_dir: Path | str) -> list[StepFigures]:
    """Every step's figures, ``all`` first then each stream, in step order (empty for a run without steps)."""
    run = RunDir(run_dir, create=False)
    windows = list(run.read("windows.jsonl"))
    spans = _spans(run, windows)
    series = list(load_series(run).values()) if (run.path / SAMPLES_FILE).exists() else []
    by_phase: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for w in windows:
        by_phase[str(w["phase"])].append(w)
    out: list[StepFigures] = []
    for phase, span in sorted(spans.items(), key=lambda kv: (parse_step_name(kv[0]) or (0, 0.0))[0]):
        parsed = parse_step_name(phase)
        if parsed is None:
            continue
        index, offered = parsed
        first = math.ceil(span[0] / NS + 1) * NS  # skip the settling second
        last = span[1] - span[1] % NS  # windows that end by the step's end
        steady = [w for w in by_phase.get(phase, []) if first <= int(w["window_start_ns"]) < last]
        seconds = max(0, (last - first) // NS)
        if seconds < 1:  # a step the sweep stopped in before it had a steady second
            continue
        fig = _figures(index, phase, "all", offered, (first, last, span[2]), steady, seconds)
        _server_figures(fig, series, None)
        out.append(fig)
        for stream in sorted({str(w["stream"]) for w in steady}):
            rows = [w for w in steady if w["stream"] == stream]
            sfig = _figures(index, phase, stream, offered, (first, last, span[2]), rows, seconds)
            _server_figures(sfig, series, {stream.split("/", 1)[0]})
            out.append(sfig)
    return out


def write_csv(figures: list[StepFigures], path: Path | str) -> Path:
    """The per-step table as CSV (one row per step and scope; memory as ``memory_bytes[<series>]`` columns)."""
    base = [f.name for f in fields(StepFigures) if f.name not in ("memory_bytes", "memory_total_bytes")]
    memory = sorted({k for f in figures for k in f.memory_bytes})
    out = Path(path)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(base + [f"memory_bytes[{k}]" for k in memory])
        for fig in figures:
            row: list[Any] = [getattr(fig, name) for name in base]
            row += [fig.memory_bytes.get(k, math.nan) for k in memory]
            writer.writerow(["" if isinstance(v, float) and math.isnan(v) else
                             (f"{v:.6g}" if isinstance(v, float) else v) for v in row])
    return out
