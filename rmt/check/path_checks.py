"""Checks of Triton's stateful request paths: sequence slots and reclaim, shared-memory regions.

- ``sequence_slots``: every abandoned sequence (no END) that rmt probed ``idle timeout + probe_after_s`` after its
  last step was refused by Triton as unknown ("must specify the START flag") — reclaimed in time — and the evidence
  says how many sequences were open at once against the batcher's slots (``oldest.max_candidate_sequences``, or
  ``direct``: ``max_batch_size`` × instances). Leak attribution *by outcome* (ended vs reclaimed) is the
  ``leak_attribution`` check on patterns that end or abandon their sequences.
- ``shm_regions``: after the run, every region rmt created (system or CUDA) was freed and every registration undone,
  the server holds no region under rmt's prefixes and ``/dev/shm`` holds no file of rmt's (``shm.jsonl`` ``status``
  records; a CUDA region has no file: its server registrations are the evidence).
- ``shm_backend_growth``: the python backend's own regions did not grow past ``max_growth`` from the load's first to
  its last sample
  (``shm_backend_growth``; Triton QA's ``ShmLeakDetector`` is byte-exact: set ``0B`` for that bar).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from rmt.check.base import Check, Param, Verdict
from rmt.check.data import MemorySeries, RunInputs
from rmt.check.quantity import parse_number, parse_size


def sequence_slots(config: Any) -> int | None:
    """Sequences the batcher serves at once: ``oldest.max_candidate_sequences`` or, for ``direct``,
    ``max_batch_size`` (at least 1) × instances; None without a sequence batcher."""
    if config is None or not config.HasField("sequence_batching"):
        return None
    batching = config.sequence_batching
    if batching.HasField("oldest"):
        return int(batching.oldest.max_candidate_sequences)
    instances = sum(max(1, int(g.count)) for g in config.instance_group) or 1
    return max(1, int(config.max_batch_size)) * instances


def peak_open(intervals: list[tuple[int, int]]) -> int:
    """Most intervals ``[start, end)`` open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


class SequenceSlotsCheck(Check):
    """Abandoned sequences are reclaimed within the idle timeout (+ slack); open sequences vs slots as evidence."""

    name = "sequence_slots"
    summary = "abandoned sequences still live at their reclaim probe (idle timeout + probe_after_s) per model"
    measure = "sequence_unreclaimed_count"
    unit = "count"
    params = (Param("max_unreclaimed", 0, lambda v: parse_number(v), "probed sequences found still live tolerated"),
              Param("min_probed", 5, lambda v: parse_number(v), "probes needed to judge a model"))

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per model whose sequences the run recorded."""
        by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in run.sequences:
            by_model[str(record.get("model"))].append(record)
        if not by_model:
            return self.no_evidence("sequences (sequences.jsonl)")
        return [self._judge(model, records, run.configs.get(model)) for model, records in sorted(by_model.items())]

    def _judge(self, model: str, records: list[dict[str, Any]], config: Any) -> Verdict:
        outcomes: dict[str, int] = defaultdict(int)
        for r in records:
            outcomes[str(r.get("outcome"))] += 1
        probed = [r for r in records if r.get("probe")]
        live = [r for r in probed if r["probe"] != "reclaimed"]
        intervals = []
        for r in records:
            if not r.get("start_ns"):
                continue
            end = int(r.get("last_ns") or r["start_ns"])
            if r.get("outcome") == "abandoned":  # holds its slot until Triton reclaims it
                end = int(r.get("probe_ns") or end + int(r.get("idle_us", 0)) * 1000)
            intervals.append((int(r["start_ns"]), max(end, int(r["start_ns"]) + 1)))
        slots = sequence_slots(config)
        peak = peak_open(intervals)
        idle_us = max((int(r.get("idle_us", 0)) for r in records), default=0)
        slack = max((float(r.get("probe_after_s", 0)) for r in records), default=0.0)
        evidence = {"outcomes": dict(outcomes), "probed": len(probed), "still_live": len(live),
                    "examples": [{k: r.get(k) for k in ("correlation_id", "probe", "probe_error", "last_ns",
                                                        "probe_ns")} for r in live[:5]],
                    "peak_open_sequences": peak, "slots": slots, "idle_timeout_us": idle_us,
                    "probe_after_s": slack}
        over = (f"; at peak {peak} sequences were open for {slots} slots (the rest waited in the backlog)"
                if slots is not None and peak > slots else
                f"; at most {peak} sequences open at once" + (f" for {slots} slots" if slots is not None else ""))
        if len(probed) < self.values["min_probed"]:
            return self.verdict(model, math.nan, self.values["max_unreclaimed"],
                                f"{model}: only {len(probed)} abandoned sequences were probed (need "
                                f"{self.values['min_probed']:g}): too little data to judge reclaim{over}",
                                evidence, status="skip")
        why = (f"{model}: {len(live)} of {len(probed)} abandoned sequences still live "
               f"{idle_us / 1000:.0f} ms + {slack:g} s after their last step" if live else
               f"{model}: all {len(probed)} probed abandoned sequences were reclaimed within "
               f"{idle_us / 1000:.0f} ms + {slack:g} s")
        return self.verdict(model, float(len(live)), self.values["max_unreclaimed"], why + over, evidence)


class ShmRegionsCheck(Check):
    """Nothing rmt put in shared memory outlives the run; the python backend's regions do not grow."""

    name = "shm_regions"
    summary = "shared-memory regions left by the run (rmt's, server-registered, /dev/shm)"
    measure = "shm_regions_left_count"
    unit = "count"
    params = (Param("max_left", 0, lambda v: parse_number(v), "regions left behind tolerated"),)

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict on rmt's regions, when the run made any."""
        if not run.shm_records:
            return self.no_evidence("shared-memory regions created by rmt (shm.jsonl)")
        return [self._regions(run.shm_records)]

    def _regions(self, records: list[dict[str, Any]]) -> Verdict:
        created: dict[str, int] = {}
        kinds: dict[str, int] = {}
        registered: set[str] = set()
        errors = []
        statuses = []
        for r in records:
            name, event = str(r.get("region")), r.get("event")
            if event == "create":
                created[name] = int(r.get("byte_size", 0))
                kind = str(r.get("kind", "system"))  # a record without a kind is a system region
                kinds[kind] = kinds.get(kind, 0) + 1
            elif event == "destroy":
                created.pop(name, None)
            elif event == "register":
                registered.add(name)
            elif event == "unregister":
                registered.discard(name)
            elif event == "error":
                errors.append(f"{name}: {r.get('detail')}")
            elif event == "status":
                statuses.append(r)
        server_left = sum(max(0, int(s.get("registered_left", 0))) for s in statuses)
        unknown = sum(1 for s in statuses if int(s.get("registered_left", 0)) < 0)
        files_left = sum(int(s.get("files_left", 0)) for s in statuses)
        left = len(created) + len(registered) + server_left + files_left
        evidence = {"not_unlinked": sorted(created)[:20], "still_registered": sorted(registered)[:20],
                    "server_registered_left": server_left, "dev_shm_left": files_left, "errors": errors[:10],
                    "processes_with_status": len(statuses), "status_unknown": unknown, "created_by_kind": kinds}
        if not statuses:
            return self.verdict("rmt regions", math.nan, self.values["max_left"],
                                "no final status of rmt's regions (the load did not drain): cannot judge",
                                evidence, status="skip")
        made = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        why = (f"{len(created)} regions not freed, {len(registered)} still registered by rmt's account, "
               f"{server_left} still registered on the server, {files_left} files left in /dev/shm" if left else
               f"every region rmt created ({made or 'none'}) was unregistered and freed ({len(statuses)} load "
               "processes checked the server and /dev/shm)")
        if unknown and left <= self.values["max_left"]:
            return self.verdict("rmt regions", math.nan, self.values["max_left"],
                                f"{why}, but {unknown} load processes could not ask the server what it still holds: "
                                "cannot judge", evidence, status="skip")
        return self.verdict("rmt regions", float(left), self.values["max_left"], why, evidence)



class ShmBackendGrowthCheck(Check):
    """The python backend's own shared-memory regions do not grow over a run that used shared-memory I/O."""

    name = "shm_backend_growth"
    summary = "growth of the python backend's /dev/shm regions from the load's first to its last sample"
    measure = "shm_backend_growth_bytes"
    unit = "bytes"
    params = (Param("max_growth", "1MiB", lambda v: parse_size(str(v)),
                    "growth tolerated (Triton QA's ShmLeakDetector is byte-exact: 0B)"),)

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per python-backend shm series (``shm_allocated_bytes``)."""
        out = [self._judge(s) for s in run.memory if s.name.startswith("shm_allocated_bytes")]
        return out or self.no_evidence("python-backend shm series (shm_allocated_bytes)")

    def _judge(self, series: MemorySeries) -> Verdict:
        values = np.asarray(series.values, dtype=float)
        ok = ~np.isnan(values)
        limit = float(self.values["max_growth"])
        if ok.sum() < 2:
            return self.verdict(series.name, math.nan, limit, f"{series.name}: fewer than 2 samples", status="skip")
        first, last = float(values[ok][0]), float(values[ok][-1])
        return self.verdict(series.name, last - first, limit,
                            f"python backend shm {first / 2**20:.2f} MiB → {last / 2**20:.2f} MiB over the run",
                            {"first_bytes": first, "last_bytes": last})
