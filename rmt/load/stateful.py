"""Requests built one by one for the stateful paths: sequences, shared-memory tensors, a set cache hit ratio.

A stream whose pattern is :attr:`~rmt.core.scenario.Pattern.stateful` gets one :class:`StatefulStream` per user
(lane). :meth:`StatefulStream.next` gives the next request — its arrays, its request parameters (sequence id and
flags) and where its tensors lie in shared memory — and :meth:`StatefulStream.done` takes its outcome.

Sequences (:class:`SequenceDriver`): the user keeps ``in_flight`` sequences open and sends their steps round robin;
each sequence draws its length and whether it is abandoned (no END). ``idle timeout + probe_after_s`` after an
abandoned sequence's last step, one END step without START goes out unbooked (:meth:`StatefulStream.probe`):
Triton refusing it ("must specify the START flag") proves the sequence was reclaimed. Every sequence ends as one
:class:`~rmt.core.records.SequenceRecord` in ``sequences.jsonl``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rmt.core.records import SEQUENCES_FILE, SequenceRecord
from rmt.load.payloads import Placement, Pool
from rmt.load.shmio import Region, ShmControl, ShmRegistry

RECLAIMED_TEXT = "must specify the START flag"
"""Triton's answer to a step of a sequence it does not know (never started, or reclaimed)."""
_ID_BASE = int.from_bytes(os.urandom(3), "big") << 32
_ids = 0


def next_correlation_id(kind: str) -> int | str:
    """A correlation id unique to this process and run (a random per-process base, then a counter)."""
    global _ids
    _ids += 1
    return _ID_BASE + _ids if kind == "uint64" else f"rmt-{os.getpid()}-{_ids}"


class _Sequence:
    __slots__ = ("abandon", "cid", "last_ns", "length", "probe_at_ns", "sent", "start_ns")

    def __init__(self, cid: int | str, length: int, abandon: bool) -> None:
        self.cid = cid
        self.length = length
        self.abandon = abandon
        self.sent = 0
        self.start_ns = 0
        self.last_ns = 0
        self.probe_at_ns = 0


class SequenceDriver:
    """The sequences one user sends on one stream (see the module docstring)."""

    def __init__(self, pool: Pool, note: Callable[[str, dict[str, Any]], None], rng: random.Random,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        resolved = pool.resolved
        spec = resolved.pattern.sequence
        assert spec is not None
        self.spec = spec
        self.model = resolved.stream.model
        self.stream = resolved.stream.name
        self.idle_us = resolved.idle_us
        self.note = note
        self.rng = rng
        self.clock_ns = clock_ns
        self.open: list[_Sequence] = []
        self.probes: list[_Sequence] = []
        self._turn = 0

    def next_step(self) -> tuple[_Sequence, dict[str, Any]]:
        """The sequence whose step goes next and the step's request parameters."""
        if len(self.open) < self.spec.in_flight:
            length = self.rng.randint(self.spec.length_low, self.spec.length_high)
            abandon = self.rng.random() < self.spec.abandon
            self.open.append(_Sequence(next_correlation_id(self.spec.id_kind), length, abandon))
        self._turn = (self._turn + 1) % len(self.open)
        seq = self.open[self._turn]
        last = seq.sent == seq.length - 1
        return seq, {"sequence_id": seq.cid, "sequence_start": seq.sent == 0,
                     "sequence_end": last and not seq.abandon}

    def step_done(self, seq: _Sequence, ok: bool, now_ns: int) -> None:
        """Account the answer of ``seq``'s step."""
        if seq not in self.open:
            return
        if seq.sent == 0:
            seq.start_ns = now_ns
        seq.last_ns = now_ns
        if not ok:
            self.open.remove(seq)
            self._write(seq, "failed", now_ns)
            return
        seq.sent += 1
        if seq.sent < seq.length:
            return
        self.open.remove(seq)
        if seq.abandon:
            seq.probe_at_ns = now_ns + self.idle_us * 1000 + int(self.spec.probe_after_s * 1e9)
            self.probes.append(seq)
        else:
            self._write(seq, "ended", now_ns)

    def due_probe(self, now_ns: int) -> tuple[_Sequence, dict[str, Any]] | None:
        """An abandoned sequence whose probe is due, with the probe's parameters (END without START)."""
        if not self.probes or self.probes[0].probe_at_ns > now_ns:
            return None
        seq = self.probes.pop(0)
        return seq, {"sequence_id": seq.cid, "sequence_start": False, "sequence_end": True}

    def probe_done(self, seq: _Sequence, ok: bool, error: str, now_ns: int) -> None:
        """Record the probe's answer: refused with the START text = reclaimed."""
        probe = "live" if ok else "reclaimed" if RECLAIMED_TEXT in error else "error"
        self._write(seq, "abandoned", now_ns, probe_ns=now_ns, probe=probe, probe_error="" if ok else error[:300])

    def close(self, now_ns: int) -> None:
        """Record the sequences the run ended before they did (open ones, abandoned ones not yet probed)."""
        for seq in self.open:
            self._write(seq, "open", now_ns)
        for seq in self.probes:
            self._write(seq, "abandoned", now_ns)
        self.open.clear()
        self.probes.clear()

    def _write(self, seq: _Sequence, outcome: str, now_ns: int, **probe: Any) -> None:
        record = SequenceRecord(now_ns, self.model, self.stream, str(seq.cid), self.spec.id_kind, seq.start_ns,
                                seq.last_ns, seq.length, seq.sent, outcome, self.idle_us, self.spec.probe_after_s,
                                **probe)
        self.note(SEQUENCES_FILE, asdict(record))


@dataclass
class Prepared:
    """One request of a stateful stream, ready to encode."""

    arrays: dict[str, np.ndarray]
    extra: dict[str, Any]
    """Request parameters (sequence id and flags)."""
    placement: Placement
    """Tensors in shared memory (empty: every tensor in-band)."""
    sequence: Any = None
    region: Region | None = None
    """A region to release once the request is answered (``per_request`` lifecycle)."""


def _layout(arrays: dict[str, np.ndarray], outputs: list[str], output_bytes: int, region: str,
            base: int = 0) -> tuple[Placement, int]:
    """Shared-memory parameters of the inputs (back to back from ``base``) and outputs after them; the end offset."""
    placement: Placement = {}
    offset = base
    for name, array in arrays.items():
        placement[name] = {"shared_memory_region": region, "shared_memory_byte_size": int(array.nbytes),
                           "shared_memory_offset": offset}
        offset += int(array.nbytes)
    size = output_bytes or (offset - base)
    for name in outputs:
        placement[name] = {"shared_memory_region": region, "shared_memory_byte_size": size,
                           "shared_memory_offset": offset}
        offset += size
    return placement, offset


class StatefulStream:
    """Builds one user's requests of one stateful stream (see the module docstring)."""

    def __init__(self, pool: Pool, note: Callable[[str, dict[str, Any]], None], registry: ShmRegistry | None,
                 make_control: Callable[[], ShmControl] | None, rng: random.Random, owner: Any = None) -> None:
        self.pool = pool
        pattern = pool.resolved.pattern
        self.rng = rng
        self.sequences = SequenceDriver(pool, note, rng) if pattern.sequence is not None else None
        self.shm = pattern.shm
        self.cache = pattern.cache
        self.registry = registry
        self.make_control = make_control
        self.owner = owner
        """Key of the process-wide region of a ``once`` stream (protocol and stream name)."""
        self.control: ShmControl | None = None
        self.region: Region | None = None
        self.outputs = [o.name for o in pool.resolved.outputs if o.datatype != "BYTES"] \
            if self.shm is not None and self.shm.outputs else []
        self._cursor = rng.randrange(len(pool.arrays))
        self._unique = 0
        self._salt = rng.random() * 1e6

    # -- bodies ------------------------------------------------------------------------------------------------------
    def _arrays(self) -> tuple[int, dict[str, np.ndarray]]:
        """The next body (index, arrays): round robin, or the cache mix of hits and never-seen inputs."""
        n = len(self.pool.arrays)
        if self.cache is None or self.rng.random() < self.cache.hit_ratio:
            limit = n if self.cache is None else min(n, self.cache.repeated)
            self._cursor = (self._cursor + 1) % limit
            return self._cursor, self.pool.arrays[self._cursor]
        k = self.rng.randrange(n)
        arrays = {name: a.copy() for name, a in self.pool.arrays[k].items()}
        self._unique += 1
        first = next((a for a in arrays.values() if a.dtype != np.object_ and a.size), None)
        if first is not None:  # a value never sent before: a miss, then an insertion
            flat = first.reshape(-1)
            flat[0] = self._unique
            if flat.size > 1:
                flat[1] = self._salt
        return k, arrays

    # -- shared memory -----------------------------------------------------------------------------------------------
    def _control(self) -> ShmControl:
        assert self.make_control is not None and self.registry is not None
        if self.registry.make_control is None:
            self.registry.make_control = self.make_control
        if self.control is None:
            self.control = self.make_control()
        return self.control

    def _place(self, k: int, arrays: dict[str, np.ndarray]) -> tuple[Placement, Region | None]:
        spec, registry = self.shm, self.registry
        assert spec is not None and registry is not None
        if spec.lifecycle == "once":
            region = registry.shared.get(self.owner)
            if region is None or region.name not in registry.live:
                region = registry.shared[self.owner] = self._once_region()
            offset = sum(int(a.nbytes) for body in self.pool.arrays[:k] for a in body.values())
            return _layout(arrays, [], 0, region.name, offset)[0], None
        need = _layout(arrays, self.outputs, spec.output_bytes, "")[1]
        if spec.lifecycle == "per_request":
            region = registry.create(need, self._control(), kind=spec.kind, device=spec.device,
                                     contents=list(arrays.values()))
            return _layout(arrays, self.outputs, spec.output_bytes, region.name)[0], region
        if self.region is None or self.region.name not in registry.live:
            most = max(_layout(body, self.outputs, spec.output_bytes, "")[1] for body in self.pool.arrays)
            self.region = registry.create(max(most, need), self._control(), kind=spec.kind, device=spec.device)
        registry.write(self.region, list(arrays.values()))
        return _layout(arrays, self.outputs, spec.output_bytes, self.region.name)[0], None

    def _once_region(self) -> Region:
        """The process's read-only region holding every body of the pool back to back (written once)."""
        assert self.registry is not None and self.make_control is not None and self.shm is not None
        self.registry.make_control = self.registry.make_control or self.make_control
        bodies = [a for body in self.pool.arrays for a in body.values()]
        return self.registry.create(sum(int(a.nbytes) for a in bodies), self.make_control(), own_control=True,
                                    kind=self.shm.kind, device=self.shm.device, contents=bodies)

    # -- requests ----------------------------------------------------------------------------------------------------
    def next(self) -> Prepared:
        """The next request (a region it needs is created and registered first; raises when that fails)."""
        k, arrays = self._arrays()
        extra: dict[str, Any] = {}
        seq = None
        if self.sequences is not None:
            seq, extra = self.sequences.next_step()
        placement, region = self._place(k, arrays) if self.shm is not None else ({}, None)
        return Prepared(arrays, extra, placement, seq, region)

    def done(self, prepared: Prepared, ok: bool, now_ns: int) -> None:
        """The request was answered (``ok``) or failed; a per-request region is released either way."""
        if prepared.region is not None and self.registry is not None:
            self.registry.release(prepared.region)
        if self.sequences is not None and prepared.sequence is not None:
            self.sequences.step_done(prepared.sequence, ok, now_ns)

    def failed_before_send(self, now_ns: int) -> None:
        """A request could not be prepared (its region failed): the sequence it was for fails."""
        if self.sequences is not None and self.sequences.open:
            self.sequences.step_done(self.sequences.open[self.sequences._turn], False, now_ns)

    def probe(self, now_ns: int) -> Prepared | None:
        """A due reclaim probe (in-band tensors), or None."""
        due = self.sequences.due_probe(now_ns) if self.sequences is not None else None
        if due is None:
            return None
        return Prepared(self.pool.arrays[0], due[1], {}, due[0])

    def probe_done(self, prepared: Prepared, ok: bool, error: str, now_ns: int) -> None:
        """The probe's answer."""
        assert self.sequences is not None
        self.sequences.probe_done(prepared.sequence, ok, error, now_ns)

    def close(self, now_ns: int) -> None:
        """Release this user's region and control client; record unfinished sequences."""
        region, self.region = self.region, None  # claimed first: the drain and on_stop may both close
        control, self.control = self.control, None
        if region is not None and self.registry is not None:
            self.registry.release(region)
        if control is not None:
            control.close()
        if self.sequences is not None:
            self.sequences.close(now_ns)
