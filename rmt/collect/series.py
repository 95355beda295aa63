"""How sources hand values to the collector (points, readings) and how the collector numbers series and encodes samples.

The records themselves (``series.jsonl``, ``samples.jsonl``) and their reader are :mod:`rmt.core.samples`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from rmt.core.measures import MEASURES
from rmt.core.rundir import json_safe
from rmt.core.samples import SampleRecord, SeriesRecord

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


class SeriesTable:
    """Assigns ids to ``(measure, labels)`` and builds the declarations of new series (thread-safe)."""

    def __init__(self, collector: str) -> None:
        self.collector = collector
        self._ids: dict[tuple[str, Labels], int] = {}
        self._records: list[SeriesRecord] = []
        self._lock = threading.Lock()
        self._seq = 0

    def resume(self, declared: Iterable[dict[str, Any]], last_seq: int = 0) -> None:
        """Continue a run directory's series of this collector (a restarted collector): the same series keep their
        ids, new ones are numbered after them, and record numbers go on from ``last_seq``."""
        with self._lock:
            for rec in declared:
                if rec.get("collector") != self.collector or int(rec["id"]) != len(self._records) + 1:
                    continue
                record = SeriesRecord(self.collector, int(rec["id"]), int(rec["seq"]), str(rec["source"]),
                                      str(rec["measure"]), dict(rec["labels"]), int(rec["t_epoch_ns"]))
                self._records.append(record)
                self._ids[(record.measure, labels_of(**record.labels))] = record.id
                self._seq = max(self._seq, record.seq)
            self._seq = max(self._seq, last_seq)

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
                        raise KeyError(f"measure {point.measure!r} of source {source} is not in "
                                       f"rmt.core.measures: add it to the source's table there")
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


