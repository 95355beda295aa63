"""What the sidecar writes: series declarations (``series.jsonl``) and samples (``samples.jsonl``), and the reader.

A *series* is one measure (registered in :mod:`rmt.core.measures`) with one set of labels, e.g. ``process_rss_bytes``
of ``pid=123, name=leak_host_0_0``. It is declared once, with a small integer id, before the first sample that uses
it; a *sample* is one read of one source at one tick and maps series ids to values. A failed read is a *gap*: a
sample with ``ok: false``, the reason in ``error``, and ``null`` (NaN) for every series the source had — never 0.

>>> series = load_series(RunDir("runs/x", create=False))        # {(collector, id): Series}
>>> [s for s in series.values() if s.measure == "process_rss_bytes"][0].values   # numpy, NaN in gaps
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from rmt.core.measures import MEASURES
from rmt.core.rundir import RunDir, json_safe, register_file

SERIES_FILE = "series.jsonl"
SAMPLES_FILE = "samples.jsonl"

Labels = tuple[tuple[str, str], ...]
"""Sorted ``(name, value)`` pairs: hashable, so a series is found by ``(measure, labels)`` in O(1)."""


def labels_of(**labels: object) -> Labels:
    """Labels from keyword arguments (``None`` values dropped, values as strings, sorted by name)."""
    return tuple(sorted((k, str(v)) for k, v in labels.items() if v is not None))


class Point(NamedTuple):
    """One value read by a source: a registered measure, its labels and the value (NaN when missing)."""

    measure: str
    labels: Labels
    value: float


class Reading:
    """What one successful read of a source returns: its points, or (cheaper, for a source read every tick) a
    *layout* and the values.

    A layout is a list of points naming the series read, in order, whose own values are not used; the source keeps
    returning the same list object while its series stay the same, so the collector looks their ids up once per
    layout, not once per tick, and the source allocates no point per value."""

    __slots__ = ("_points", "layout", "note", "values")

    def __init__(self, points: list[Point] | None = None, note: str = "", *, layout: list[Point] | None = None,
                 values: list[float] | None = None) -> None:
        if (layout is None) != (values is None) or (points is None) == (layout is None):
            raise ValueError("a reading has either points, or a layout and its values")
        if layout is not None and values is not None and len(layout) != len(values):
            raise ValueError(f"a layout of {len(layout)} series with {len(values)} values")
        self._points = points
        self.note = note
        """Why some values are NaN (e.g. ``uss unreadable for pid 12: AccessDenied``); empty when all are present."""
        self.layout = layout
        """The series read, in order (values not used): the same list object while they do not change."""
        self.values = values
        """The value of each ``layout`` series (NaN when missing)."""

    @property
    def points(self) -> list[Point]:
        """Every point read (built from the layout and values on first use, for a reading that has them)."""
        if self._points is None:
            assert self.layout is not None and self.values is not None
            self._points = [p._replace(value=v) for p, v in zip(self.layout, self.values, strict=True)]
        return self._points


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
    """Name registered in :mod:`rmt.core.measures` (unit in the name; unit, source and better-direction there)."""
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


_JSON = json.JSONEncoder(separators=(",", ":"))
"""Compact, NaN/inf written as ``NaN``/``Infinity`` (then found and written again as null)."""


def encode_values(values: Mapping[str, float | None]) -> str:
    """The JSON object of a sample's ``values``, NaN and inf as null."""
    text = _JSON.encode(values)
    if "NaN" in text or "Infinity" in text:  # keys are series ids (digits): only a value can spell these
        text = _JSON.encode(json_safe(dict(values)))
    return text


class SampleEncoder:
    """Encodes samples as ``samples.jsonl`` lines (the same JSON as ``json.dumps(json_safe(rec.to_json()))``).

    A read that returned its previous points unchanged shares the previous record's ``values`` dict (see
    :mod:`rmt.collect.core`): its JSON is encoded once per source and reused while the dict is the same object (one
    writer thread; the dict is never changed once in a record)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[dict[str, float | None], str]] = {}
        """Per source, the latest values dict encoded and its JSON."""

    def line(self, rec: SampleRecord) -> str:
        """One line (no newline) for ``rec``."""
        cached = self._values.get(rec.source)
        if cached is not None and cached[0] is rec.values:
            values = cached[1]
        else:
            values = encode_values(rec.values)
            self._values[rec.source] = (rec.values, values)
        head = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in rec.__dict__.items() if k != "values"}
        return f'{_JSON.encode(head)[:-1]},"values":{values}}}'


register_file(SERIES_FILE, "rmt.collect.core", "rmt.collect.series.SeriesRecord",
              "declarations of the sampled series: id, source, measure, labels (one line per series)")
register_file(SAMPLES_FILE, "rmt.collect.core", "rmt.collect.series.SampleRecord",
              "one line per source read or gap: tick, monotonic and epoch time, jitter, duration, values by id")


class SeriesTable:
    """Assigns ids to ``(measure, labels)`` and builds the declarations of new series (thread-safe)."""

    def __init__(self, collector: str) -> None:
        self.collector = collector
        self._ids: dict[tuple[str, Labels], int] = {}
        self._records: list[SeriesRecord] = []
        self._lock = threading.Lock()
        self._seq = 0

    def next_seq(self) -> int:
        """The next record number of this collector (series and samples share the counter)."""
        with self._lock:
            self._seq += 1
            return self._seq

    def ids_for(self, source: str, points: Iterable[Point], t_epoch_ns: int) -> tuple[list[int], list[SeriesRecord]]:
        """The id of each point's series, and the declarations of series seen for the first time."""
        ids: list[int] = []
        new: list[SeriesRecord] = []
        with self._lock:
            for point in points:
                key = (point.measure, point.labels)
                sid = self._ids.get(key)
                if sid is None:
                    if point.measure not in MEASURES:
                        raise KeyError(f"measure {point.measure!r} of source {source} is not registered in "
                                       f"rmt.core.measures: register it in the source's module")
                    sid = self._ids[key] = len(self._ids) + 1
                    self._seq += 1
                    rec = SeriesRecord(self.collector, sid, self._seq, source, point.measure, dict(point.labels),
                                       t_epoch_ns)
                    self._records.append(rec)
                    new.append(rec)
                ids.append(sid)
        return ids, new

    def records(self) -> list[SeriesRecord]:
        """Every declaration so far, in order."""
        with self._lock:
            return list(self._records)

    def get(self, sid: int) -> SeriesRecord:
        """The declaration of series ``sid``."""
        with self._lock:
            return self._records[sid - 1]


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
