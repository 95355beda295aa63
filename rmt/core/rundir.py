"""The run directory: the one contract between load, measurement and verdicts.

Everything a run produces is appended here as it happens, so that every verdict can be recomputed offline and a
crash loses at most the last flush interval. A run directory holds:

=====================  ==========================================================================================
file                   content
=====================  ==========================================================================================
``manifest.json``      one JSON object: rmt version, start/end (epoch ns), command line, scenario, server
                       (URLs, PID, options), hosts, GPUs (names, UUIDs, driver/NVML versions), sources. Keys are
                       merged by :meth:`RunDir.update_manifest`; see :data:`FILES` for what each writer adds.
``<stream>.jsonl``     one JSON object per line, each a record of the kind listed for that file in
                       :data:`FILES`; fields documented on the record's dataclass (units in the field names).
=====================  ==========================================================================================

Writers append whole lines and flush at least every ``flush_interval_s``; readers skip a torn last line. A new file
gets a row in :data:`FILES` (a static table: no import registers anything) — :meth:`RunDir.append` refuses a file
that has none.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException

from rmt.core.errors import ConfigError
from rmt.core.jsonfile import read_json, write_text_atomic

MANIFEST = "manifest.json"
#: The files whose presence says a folder holds a run (the manifest, load windows, collector samples).
RUN_MARKERS = (MANIFEST, "windows.jsonl", "samples.jsonl")
#: Manifest key: what the run lost, a list of ``{"kind", "subject", "reason", ...}`` (a worker that died, an interrupted
#: run, a server restart); every verdict of such a run rests on incomplete data and says so, and the run is never green.
LOSSES = "losses"
DAMAGED = "the run directory is damaged: rerun, or restore the file from a copy"


@dataclass(frozen=True)
class RunFile:
    """One file of the run directory."""

    name: str
    writer: str
    """Module that writes it."""
    record: str
    """Dotted name of the record type in :mod:`rmt.core` (a dataclass documenting every field with its unit)."""
    doc: str


def _files(*entries: RunFile) -> dict[str, RunFile]:
    return {entry.name: entry for entry in entries}


#: Every JSONL file of a run directory, with the record type that documents its fields. Add a row when a new writer
#: appears (one table, no second list).
FILES: dict[str, RunFile] = _files(
    RunFile("windows.jsonl", "rmt.load.plugin", "rmt.core.windows.LoadWindow",
            "per second × protocol × stream × phase load counts and µs HDR histograms, merged over workers"),
    RunFile("traces.jsonl", "rmt.load.plugin", "rmt.core.windows.ProbeTrace",
            "probe execution traces (client send/receive + server TRACE row), bounded per process and second"),
    RunFile("series.jsonl", "rmt.collect.core", "rmt.core.samples.SeriesRecord",
            "declarations of the sampled series: id, source, measure, labels (one line per series)"),
    RunFile("samples.jsonl", "rmt.collect.core", "rmt.core.samples.SampleRecord",
            "one line per source read or gap: tick, monotonic and epoch time, jitter, duration, values by id"),
    RunFile("failures.jsonl", "any load generator", "rmt.core.records.FailureRecord",
            "failed requests with the server's error message and the allocation size when known"),
    RunFile("events.jsonl", "any run driver", "rmt.core.records.ModelEventRecord",
            "model lifecycle events: load, warmup, reload windows (with the new limit)"),
    RunFile("readiness.jsonl", "a readiness poller", "rmt.core.records.ReadinessRecord",
            "model readiness polls (GET v2/models/<m>/ready), one line per poll"),
    RunFile("sequences.jsonl", "rmt.load.stateful", "rmt.core.records.SequenceRecord",
            "one sequence of a sequence-batcher model as the load drove it: length, outcome, reclaim probe"),
    RunFile("shm.jsonl", "rmt.load.shmio", "rmt.core.records.ShmRecord",
            "system and CUDA shared-memory regions the load created, registered, unregistered and freed; a final "
            "status"),
    RunFile("capacity_control.jsonl", "rmt.capacity.controller", "rmt.core.records.StepDecision",
            "capacity sweep: one line per step with how the live controller ended it (stable, saturated, ...)"),
)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null (missing), never as 0."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None, recursively: the JSON form of "missing" everywhere in rmt."""
    return _clean(value)


#: What reading a record of the wrong shape raises (a field missing, of the wrong type, out of range, a histogram
#: that does not decode).
MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, ZeroDivisionError,
             zlib.error, HdrCookieException, HdrLengthException, HdrHistogramSettingsException)


@contextlib.contextmanager
def reading(path: Path | str) -> Iterator[None]:
    """Around code that reads a run directory's records: a record of the wrong shape becomes one ConfigError line
    naming the run directory (JSON that parses but does not hold what rmt wrote, e.g. a string for a count)."""
    try:
        yield
    except ConfigError:
        raise
    except MALFORMED as exc:
        raise ConfigError(f"{path} holds a record rmt cannot read ({type(exc).__name__}: "
                          f"{str(exc)[:120]}): {DAMAGED}") from exc


def _cut_torn(path: Path) -> None:
    """Cut a JSONL file back to its last whole line (nothing to do when it ends in a newline or does not exist)."""
    if not path.exists():
        return
    with path.open("rb+") as fh:
        pos = fh.seek(0, os.SEEK_END)
        while pos > 0:
            start = max(0, pos - 65536)
            fh.seek(start)
            cut = fh.read(pos - start).rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


class RunDir:
    """A run directory: append JSONL records, merge manifest keys, read everything back."""

    def __init__(self, path: Path | str, *, flush_interval_s: float = 1.0, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create run directory {self.path} ({exc.strerror}): choose another") from exc
        elif not self.path.is_dir():
            raise ConfigError(f"run directory {self.path} does not exist: pass the folder a run wrote")
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._last_flush: dict[str, float] = {}

    # -- writing ----------------------------------------------------------------------------------------------------
    def append(self, name: str, records: Iterable[dict[str, Any]], *, flush: bool = False) -> int:
        """Append records (dicts) as JSON lines to ``name``; returns how many were written."""
        self._check_registered(name)
        return self.append_lines(
            name, [json.dumps(_clean(r), default=_json_default, separators=(",", ":")) for r in records], flush=flush)

    def append_lines(self, name: str, lines: Sequence[str], *, flush: bool = False) -> int:
        """Append records its writer encoded already, one JSON object per string (no newline, NaN/inf as null): the
        path of a writer that encodes many records cheaply itself (:meth:`append` cleans and encodes every value)."""
        self._check_registered(name)
        text = "\n".join(lines) + "\n" if lines else ""
        with self._lock:
            fh = self._handles.get(name)
            try:
                if fh is None:
                    _cut_torn(self.path / name)  # a writer killed mid-line: the next record starts a line of its own
                    fh = self._handles[name] = (self.path / name).open("a", encoding="utf-8")
                fh.write(text)
                now = time.monotonic()
                if flush or now - self._last_flush.get(name, 0.0) >= self.flush_interval_s:
                    fh.flush()
                    os.fsync(fh.fileno())
                    self._last_flush[name] = now
            except OSError as exc:
                self._handles.pop(name, None)
                if fh is not None:
                    with contextlib.suppress(OSError):
                        fh.close()
                raise self._write_failed(self.path / name, exc) from exc
        return len(lines)

    @staticmethod
    def _write_failed(path: Path, exc: OSError) -> ConfigError:
        """The one-line error of a write that failed (a full filesystem), after cutting ``path`` back to its last
        whole record: what was written before stays readable, and a later append starts on a line of its own."""
        with contextlib.suppress(OSError):
            _cut_torn(path)
        return ConfigError(f"cannot write {path} ({exc.strerror or exc}): free space on that filesystem or choose "
                           "another run directory (the records written before are kept)")

    @staticmethod
    def _check_registered(name: str) -> None:
        if name not in FILES:
            raise ValueError(f"{name} is not a run-directory file of rmt (add a row to rmt.core.rundir.FILES)")

    def flush(self) -> None:
        """Flush every open file to disk."""
        with self._lock:
            for name, fh in list(self._handles.items()):
                try:
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError as exc:
                    del self._handles[name]
                    with contextlib.suppress(OSError):
                        fh.close()
                    raise self._write_failed(self.path / name, exc) from exc

    def close(self) -> None:
        """Flush and close every open file (all are closed even when a flush fails; that failure is raised)."""
        try:
            self.flush()
        finally:
            with self._lock:
                for fh in self._handles.values():
                    with contextlib.suppress(OSError):
                        fh.close()
                self._handles.clear()

    def update_manifest(self, **keys: Any) -> dict[str, Any]:
        """Merge ``keys`` into ``manifest.json`` (atomically replaced); returns the new manifest."""
        with self._lock:
            manifest = self.manifest()
            manifest.update(_clean(keys))
            try:
                write_text_atomic(self.path / MANIFEST, json.dumps(manifest, indent=2, default=_json_default,
                                                                   sort_keys=True))
            except OSError as exc:
                raise ConfigError(f"cannot write {self.path / MANIFEST} ({exc.strerror or exc}): free space on that "
                                  "filesystem or choose another run directory (the previous manifest is kept)") from exc
            return manifest

    # -- reading ----------------------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest (empty when none was written yet); ConfigError when it is not a JSON object."""
        path = self.path / MANIFEST
        if not path.exists():
            return {}
        data = read_json(path, "run manifest", DAMAGED)
        if not isinstance(data, dict):
            raise ConfigError(f"run manifest {path} is not a JSON object: {DAMAGED}")
        return data

    def holds_run(self) -> bool:
        """Whether the folder holds a run: a non-empty manifest, windows or collector samples."""
        return any((self.path / name).is_file() for name in RUN_MARKERS[1:]) or bool(self.manifest())

    def require_run(self) -> RunDir:
        """This run directory; ConfigError when the folder holds no run (empty, or someone else's files)."""
        if not self.holds_run():
            raise ConfigError(f"{self.path} holds no run (no {', '.join(RUN_MARKERS)}): pass the folder a run "
                              "wrote")
        return self

    def read(self, name: str) -> Iterator[dict[str, Any]]:
        """The records of ``name`` in order; a torn (unterminated) last line is skipped, any other line that is not
        a JSON object is a ConfigError naming the file and line."""
        path = self.path / name
        if not path.exists():
            return
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    break
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    record = None
                if not isinstance(record, dict):
                    raise ConfigError(f"{path} line {number} is not a JSON record: {DAMAGED}")
                yield record

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
