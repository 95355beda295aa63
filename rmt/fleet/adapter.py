"""Prometheus matrices → one :class:`~rmt.check.data.RunInputs` per server and counter epoch.

The one adapter between what a fleet's Prometheus holds and rmt's checks; the judgement stays in :mod:`rmt.check`.
Series are turned into the collector's own :class:`~rmt.core.samples.Series` and read by the run-directory
adapter's functions (:func:`rmt.check.inputs.memory_series`, ``counter_series``, ``free_memory``), so a fleet
verdict names its subjects and draws its completed-request axis exactly as ``rmt check`` does on a run directory.

Metric families read (:data:`SELECTOR`):

- Triton's own ``nv_*`` (:data:`rmt.core.measures.TRITON_METRICS`), under their names;
- the rmt collector's exposition ``rmt_<measure>`` (:mod:`rmt.collect.exposition`), as ``<measure>``; where the
  server's Triton page is scraped too, its own ``nv_*`` win over the collector's copies (``rmt_nv_*``);
- DCGM exporter's ``DCGM_FI_DEV_FB_USED``/``DCGM_FI_DEV_FB_FREE`` (MiB) as ``gpu_memory_used_bytes`` /
  ``gpu_memory_free_bytes`` with ``gpu``/``uuid`` labels, unless the collector's NVML series are there.

A *server* is the value of the first of ``server_labels`` a series carries (default :data:`SERVER_LABELS`: give the
Triton, collector and DCGM targets of one server a common label, or run them in one pod). Prometheus' target
labels (:data:`TARGET_LABELS`) are dropped, so ``process_rss_bytes{model=…,name=…,role=stub}`` is the same subject
here as in the collector's run directory.

Gaps: a step without a sample is missing (Prometheus' staleness), and stays missing. Counter resets: a cumulative
Triton counter that goes down (a restarted server or pod) starts a new *epoch*; each epoch is judged on its own,
so a restart is a cut between two runs, never growth or a negative rate. Completed-request axis: Triton's
``nv_inference_request_success`` + ``_failure``, as in :mod:`rmt.check.inputs`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rmt.check.data import RunInputs, StreamWindows
from rmt.check.inputs import counter_series, free_memory, memory_series
from rmt.core.measures import MEASURES, TRITON_METRICS
from rmt.core.samples import Series
from rmt.fleet.prometheus import PromSeries

COLLECTOR_PREFIX = "rmt_"
DCGM = {"DCGM_FI_DEV_FB_USED": "gpu_memory_used_bytes", "DCGM_FI_DEV_FB_FREE": "gpu_memory_free_bytes"}
"""DCGM exporter's framebuffer fields (MiB) → rmt's NVML measures (bytes)."""
MIB = 2**20
SELECTOR = ('{__name__=~"nv_inference_.*|nv_pinned_memory_.*|nv_gpu_.*|nv_cpu_.*|rmt_.*|'
            'DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_FREE"}')
"""The one range query: every family the adapter reads."""
SERVER_LABELS = ("server", "exported_pod", "pod", "instance")
"""``exported_pod`` before ``pod``: DCGM exporter names the pod using a GPU, which Prometheus keeps as
``exported_pod`` beside the exporter's own ``pod``."""
TARGET_LABELS = frozenset({"__name__", "instance", "job", "namespace", "pod", "container", "service", "endpoint",
                           "node", "exported_pod", "exported_namespace", "exported_container", "exported_instance",
                           "exported_job", "server"})
"""Labels Prometheus (or its Kubernetes discovery) attaches to a target, not to what was measured."""
RENAMED = {"exported_instance": "instance"}
"""The collector's ``instance`` label (a model instance) as Prometheus keeps it beside the target's ``instance``."""
CUMULATIVE = frozenset(m for m, measure in TRITON_METRICS.items()
                       if measure.unit in ("count", "us") and m != "nv_inference_pending_request_count")
"""Triton's counters: a decrease is a reset (restart), which starts a new epoch."""
SUCCESS, FAILURE, PENDING = "nv_inference_request_success", "nv_inference_request_failure", \
    "nv_inference_pending_request_count"


@dataclass
class ServerData:
    """Everything Prometheus held for one server, as collector-style series."""

    server: str
    series: list[Series] = field(default_factory=list)
    origins: dict[str, set[str]] = field(default_factory=dict)
    """Measure → where it came from: ``triton``, ``collector``, ``dcgm``."""


@dataclass
class Epoch:
    """One stretch of a server without a counter reset, ready for the checks."""

    server: str
    index: int
    """0 for the first epoch of the range; one more after each reset."""
    start_s: float
    end_s: float
    inputs: RunInputs


def measure_of(name: str) -> tuple[str, str] | None:
    """``(rmt measure, origin)`` of a Prometheus metric name, or None when the adapter does not read it."""
    if name in TRITON_METRICS:
        return name, "triton"
    if name in DCGM:
        return DCGM[name], "dcgm"
    if name.startswith(COLLECTOR_PREFIX) and name[len(COLLECTOR_PREFIX):] in MEASURES:
        return name[len(COLLECTOR_PREFIX):], "collector"
    return None


def server_of(labels: Mapping[str, str], server_labels: Sequence[str] = SERVER_LABELS) -> str | None:
    """The server a series belongs to: the value of the first of ``server_labels`` it carries."""
    for key in server_labels:
        if labels.get(key):
            return labels[key]
    return None


def _own_labels(labels: Mapping[str, str], origin: str, drop: frozenset[str]) -> dict[str, str]:
    if origin == "dcgm":  # DCGM's many labels (modelName, Hostname, driver…) → NVML's identity of a device
        return {k: v for k, v in (("gpu", labels.get("gpu")), ("uuid", labels.get("UUID") or labels.get("uuid")))
                if v is not None}
    own = {k: v for k, v in labels.items() if k not in drop}
    for theirs, ours in RENAMED.items():  # a measured label Prometheus renamed because a target label took its name
        if theirs in labels:
            own[ours] = labels[theirs]
    return own


def group_servers(matrix: Iterable[PromSeries], server_labels: Sequence[str] = SERVER_LABELS
                  ) -> dict[str, ServerData]:
    """Each server's series (collector-style, epoch ns), the preferred origin of each measure kept."""
    drop = TARGET_LABELS | frozenset(server_labels)
    raw: dict[str, list[tuple[str, str, dict[str, str], PromSeries]]] = defaultdict(list)
    for ps in matrix:
        found = measure_of(ps.name)
        server = server_of(ps.labels, server_labels)
        if found is None or server is None or not len(ps.t_s):
            continue
        measure, origin = found
        raw[server].append((measure, origin, _own_labels(ps.labels, origin, drop), ps))
    out: dict[str, ServerData] = {}
    for server, rows in sorted(raw.items()):
        origins: dict[str, set[str]] = defaultdict(set)
        for measure, origin, _labels, _ps in rows:
            origins[measure].add(origin)
        data = ServerData(server, origins=dict(origins))
        for measure, origin, labels, ps in rows:
            have = origins[measure]
            if (origin == "collector" and "triton" in have) or (origin == "dcgm" and "collector" in have):
                continue  # the server's own page, the collector's NVML: the closer reading wins
            t_ns = np.round(ps.t_s * 1e9).astype(np.int64)
            values = ps.values * MIB if origin == "dcgm" else ps.values
            data.series.append(Series("prometheus", len(data.series) + 1, MEASURES[measure].source, measure,
                                      labels, t_ns, t_ns.copy(), values.astype(np.float64)))
        out[server] = data
    return out


def reset_times(series: Iterable[Series]) -> list[int]:
    """Epoch ns of every sample at which a cumulative Triton counter went down (a restart), sorted."""
    cuts: set[int] = set()
    for s in series:
        if s.measure not in CUMULATIVE:
            continue
        ok = np.isfinite(s.values)
        t, v = s.t_epoch_ns[ok], s.values[ok]
        cuts.update(int(x) for x in t[1:][np.diff(v) < 0])
    return sorted(cuts)


def _clip(s: Series, lo: int, hi: int) -> Series:
    keep = (s.t_epoch_ns >= lo) & (s.t_epoch_ns < hi)
    return Series(s.collector, s.id, s.source, s.measure, dict(s.labels), s.t_epoch_ns[keep], s.t_mono_ns[keep],
                  s.values[keep])


def _sum_parts(parts: list[Series], t: np.ndarray, left: float) -> np.ndarray:
    total = np.zeros(len(t))
    for p in parts:
        ok = np.isfinite(p.values)
        if not ok.any():
            return np.full(len(t), np.nan)
        total += np.interp(t, p.t_epoch_ns[ok], p.values[ok], left=left, right=np.nan)
    return total


def model_windows(series: Iterable[Series], step_s: float) -> list[StreamWindows]:
    """One :class:`StreamWindows` per model from Triton's counters, one window per pair of consecutive steps.

    Completed = Δ``nv_inference_request_success``, failed = Δ``_failure`` (every reason), pending = the queued
    gauge at the window's end, sent = completed + failed + the rise of pending (what arrived at the server). A
    window spanning a gap (no sample for more than 1.5 steps) is left out — never a long window — and each step of
    the gap is an empty window: what happened then is unknown, so no check counts it as service,
    demand or starvation."""
    by_model: dict[str, dict[str, list[Series]]] = defaultdict(lambda: defaultdict(list))
    for s in series:
        if s.measure in (SUCCESS, FAILURE, PENDING) and "model" in s.labels and len(s.values):
            by_model[s.labels["model"]][s.measure].append(s)
    out = []
    for model, parts in sorted(by_model.items()):
        if not parts[SUCCESS]:
            continue
        t = np.unique(np.concatenate([p.t_epoch_ns[np.isfinite(p.values)] for p in parts[SUCCESS]]))
        if len(t) < 2:
            continue
        succ = _sum_parts(parts[SUCCESS], t, np.nan)
        fail = _sum_parts(parts[FAILURE], t, 0.0) if parts[FAILURE] else np.zeros(len(t))
        pend = _sum_parts(parts[PENDING], t, np.nan) if parts[PENDING] else np.zeros(len(t))
        done, failed, rise = np.diff(succ), np.diff(fail), np.diff(np.nan_to_num(pend))
        keep = (np.diff(t) <= 1.5 * step_s * 1e9) & np.isfinite(done) & np.isfinite(failed)
        if not keep.any():
            continue
        starts = t[:-1][keep] / 1e9
        pending = np.nan_to_num(pend[1:])[keep]
        completed, failures = done[keep], failed[keep]
        sent = completed + failures + np.maximum(rise[keep], 0.0)
        # A hole is unknown, not idle: the checks read a missing window as one where nothing was served while the
        # requests outstanding before it still waited. Each step of a hole gets a window with nothing in it, pending
        # included, so a stretch of starvation ends where the evidence does. No phase or pattern: Prometheus does not
        # know the load's (leak attribution says it has no evidence).
        grid = starts[0] + step_s * np.arange(round((starts[-1] - starts[0]) / step_s) + 1)
        at = np.clip(np.round((starts - starts[0]) / step_s).astype(int), 0, len(grid) - 1)
        cols = np.zeros((4, len(grid)))
        for row, col in enumerate((sent, completed, failures, pending)):
            np.add.at(cols[row], at, col)
        out.append(StreamWindows(model, model, grid, cols[0], cols[1], cols[2], cols[3],
                                 failed_by={"server": cols[2]}))
    return out


def epochs(data: ServerData, step_s: float, *, base: RunInputs | None = None) -> list[Epoch]:
    """The server's data cut at counter resets, each stretch as :class:`RunInputs` (``base`` supplies the model
    configs and rate-limiter flags, which Prometheus does not hold)."""
    cuts = reset_times(data.series)
    t_all = np.concatenate([s.t_epoch_ns for s in data.series]) if data.series else np.zeros(0, dtype=np.int64)
    if not len(t_all):
        return []
    bounds = [int(t_all.min()), *cuts, int(t_all.max()) + 1]
    out = []
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        clipped = {("prometheus", c.id): c for c in (_clip(s, lo, hi) for s in data.series) if len(c.values)}
        inputs = RunInputs(memory=memory_series(clipped), counters=counter_series(clipped),
                           free_memory=free_memory(clipped), windows=model_windows(clipped.values(), step_s))
        if base is not None:
            inputs.models, inputs.configs = base.models, base.configs
            inputs.rate_limit_flags, inputs.rate_limiter_on = base.rate_limit_flags, base.rate_limiter_on
        if not inputs.memory:
            inputs.notes.append(f"{data.server}: no memory series with completed requests (is Triton's "
                                f"{SUCCESS} scraped for this server?)")
        if len(cuts):
            inputs.notes.append(f"{data.server}: epoch {k} of {len(cuts) + 1} (a counter reset: the server "
                                "restarted)")
        out.append(Epoch(data.server, k, lo / 1e9, (hi - 1) / 1e9, inputs))
    return out
