"""The collector's run-directory format: series declarations (``series.jsonl``), samples (``samples.jsonl``), reader.

A *series* is one measure (in :data:`rmt.core.measures.MEASURES`) with one set of labels, e.g. ``process_rss_bytes``
of ``pid=123, name=leak_host_0_0``. It is declared once, with a small integer id, before the first sample that uses
it; a *sample* is one read of one source at one tick and maps series ids to values. A failed read is a *gap*: a
sample with ``ok: false``, the reason in ``error``, and ``null`` (NaN) for every series the source had — never 0.

>>> series = load_series(RunDir("runs/x", create=False))        # {(collector, id): Series}
>>> [s for s in series.values() if s.measure == "process_rss_bytes"][0].values   # numpy, NaN in gaps
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmt.core.rundir import RunDir

SERIES_FILE = "series.jsonl"
SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class SeriesRecord:
    """One line of ``series.jsonl``: the declaration of a series (written before its first sample)."""

    collector: str
    """Which collector sampled it: ``local`` for an embedded one, the sidecar's URL for a polled one."""
    id: int
    """Unique within ``collector``; the key of ``values`` in samples."""
    seq: int
    """Declaration order within the collector (the ``after`` cursor of the HTTP API counts these with samples)."""
    source: str
    """The source module that reads it: ``nvml``, ``process``, ``triton_metrics``, ``shm``, ``model_stats``."""
    measure: str
    """Name in :data:`rmt.core.measures.MEASURES` (unit in the name; unit, source and better-direction there)."""
    labels: dict[str, str]
    """Identity of the series, e.g. ``{"pid": "123", "name": "leak_host_0_0", "role": "stub"}``."""
    t_epoch_ns: int
    """Wall-clock time (ns since the epoch) of the tick that first saw it."""


@dataclass
class SampleRecord:
    """One line of ``samples.jsonl``: one read (or gap) of one source at one tick."""

    collector: str
    """See :attr:`SeriesRecord.collector`."""
    seq: int
    """Increasing number of this record within its collector (shared counter with series declarations)."""
    source: str
    """The source read."""
    tick: int
    """Index k of the scheduled tick (scheduled at ``start + k * interval``); skipped ticks leave gap records."""
    t_mono_ns: int
    """Monotonic clock (ns) when the read started: the time axis for rates within one collector."""
    t_epoch_ns: int
    """Wall clock (ns since the epoch) when the read started: the time axis across hosts and files."""
    jitter_us: float
    """How late the read started after its scheduled time (µs)."""
    duration_us: float
    """How long the read took (µs); NaN for a skipped tick. For a split source (Triton's metrics, see
    :mod:`rmt.collect.core`), from sending the request to taking the complete answer: an upper bound when the answer
    was taken at a later tick than its own (up to one interval more than the server needed)."""
    ok: bool
    """False for a gap: the read failed, timed out or was skipped; ``values`` are then all null."""
    error: str | None = None
    """Reason of a gap, or a note on the values that are null in a good read; null otherwise."""
    values: dict[str, float | None] = field(default_factory=dict)
    """Series id (as a string, JSON keys are strings) → value in the series' unit; null = missing (NaN)."""

    def to_json(self) -> dict[str, Any]:
        """The record as a dict of its fields (NaN values become null when written); ``values`` is shared."""
        return dict(self.__dict__)


@dataclass
class Series:
    """One series read back from a run directory: its declaration and its time-ordered values."""

    collector: str
    id: int
    source: str
    measure: str
    labels: dict[str, str]
    t_epoch_ns: np.ndarray
    """int64 ns since the epoch of each sample."""
    t_mono_ns: np.ndarray
    """int64 monotonic ns of each sample (comparable within one collector only)."""
    values: np.ndarray
    """float64 values in the measure's unit; NaN where the source had a gap or the value was missing."""


def load_series(run: RunDir, *, measure: str | None = None) -> dict[tuple[str, int], Series]:
    """Every series of a run directory (optionally only one measure), keyed by ``(collector, id)``."""
    decls: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in run.read(SERIES_FILE):
        if measure is None or rec["measure"] == measure:
            decls[(rec["collector"], int(rec["id"]))] = rec
    cols: dict[tuple[str, int], tuple[list[int], list[int], list[float]]] = {k: ([], [], []) for k in decls}
    for rec in run.read(SAMPLES_FILE):
        collector = rec["collector"]
        for sid, value in rec["values"].items():
            col = cols.get((collector, int(sid)))
            if col is not None:
                col[0].append(int(rec["t_epoch_ns"]))
                col[1].append(int(rec["t_mono_ns"]))
                col[2].append(math.nan if value is None else float(value))
    out: dict[tuple[str, int], Series] = {}
    for key, d in decls.items():
        epoch, mono, vals = cols[key]
        out[key] = Series(d["collector"], int(d["id"]), d["source"], d["measure"], dict(d["labels"]),
                          np.asarray(epoch, dtype=np.int64), np.asarray(mono, dtype=np.int64),
                          np.asarray(vals, dtype=np.float64))
    return out


def find_series(series: Mapping[tuple[str, int], Series], measure: str, **labels: str) -> list[Series]:
    """The series of ``measure`` whose labels include every ``labels`` item."""
    return [s for s in series.values()
            if s.measure == measure and all(s.labels.get(k) == v for k, v in labels.items())]
