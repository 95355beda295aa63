"""The rmt model zoo: one python-backend model whose resource behaviour is set by its config ``parameters``.

Every zoo model's ``1/model.py`` is a symbolic link to this file, so a defect and its healthy twin run the *same
code*; only ``config.pbtxt`` differs. Inputs are read through DLPack (``np.from_dlpack``), which works under every
stub. Outputs need care: the numpy bridge (``pb_utils.Tensor(name, ndarray)``) is broken under some Python 3.12
builds, and ``Tensor.from_dlpack`` of a numpy<2 array kills the stub (capsule renamed to ``used_dlpack``);
:func:`_pick_encoder` picks what was proven to work where it runs.

Inputs: ``INPUT0`` (FP32, ``[-1]``, batched). Outputs (each emitted only when the config declares it):

- ``OUTPUT0``: ``INPUT0`` unchanged.
- ``TRACE`` (INT64 ``[7]`` per batch row): ``pid, instance_index, exec_index, start_ns, end_ns, device_id, cold``.
  ``start_ns``/``end_ns`` are ``time.time_ns()`` (CLOCK_REALTIME, comparable across the processes of a host)
  around the execution; ``exec_index`` counts executions of this instance from 0 (warmup included);
  ``cold`` is 1 when this execution paid the simulated cold start.
- ``POOL_STATS`` (INT64 ``[3]`` per row): ``buffers_owned, buffers_in_use, bytes_owned`` of the buffer pool
  *after* the request returned its buffer — ``in_use`` is always 0: by allocator accounting nothing leaks.

Parameters (``parameters { key: "..." value { string_value: "..." } }``; all optional, default off):

- ``execute_delay_us``: busy-free sleep per execution (the probe's service time).
- ``cold_start_us``: extra sleep on the first execution of each instance (simulated JIT / graph build).
- ``leak_bytes_per_request``: bytes kept forever per request (host memory, pages touched so RSS counts them;
  device memory on KIND_GPU instances).
- ``scratch_bytes_per_request``: a buffer allocated, written and dropped per request (healthy churn: a caching
  allocator must reuse it, so memory stays flat).
- ``leak_min_elements``: leak only for requests with at least this many elements (``leak_on_shape``).
- ``error_on_negative``: ``true`` fails requests whose input has a negative element (the error path).
- ``leak_on_error_only``: ``true`` leaks only on that error path (``leak_on_error``).
- ``pool_buffer_bytes``: each request takes a buffer of this size from a pool and gives it back.
- ``pool_reuse``: ``true`` (healthy) reuses returned buffers; ``false`` (the defect) always allocates a fresh one,
  so the free list — and the process — grows though every buffer is "returned".
- ``cold_per_shape_us``: extra sleep on the first execution of each *execution shape* per instance (rows summed
  over the execution's requests × row dims; a shape-specialised JIT/autotune). Warmup pays it for the shapes its
  samples exercise; every other shape pays it on its first request after READY.
- ``graph_shapes``: execution shapes that get a (simulated or CUDA) graph, written ``ROWSxD1xD2`` and separated by
  commas (``1x16,4x16``); ``optimization { cuda { graphs: true graph_spec [...] } }`` entries count too. A graph is
  captured only while the instance runs its warmup executions (the first Σ ``count`` executions, as Triton runs
  ``model_warmup`` per instance before READY); afterwards a configured shape without a graph runs **eagerly**.
  On a KIND_GPU instance with torch the graph is a real ``torch.cuda.CUDAGraph`` (``y = 2x + 1``) replayed on the
  request's data; elsewhere a twin keeps the same bookkeeping without CUDA. Each execution logs one INFO line
  ``rmt_graph model=M instance=I exec=N shape=4x16 configured=1 mode=replay|eager|capture warmup=0|1
  graphs=cuda|host`` (the run
  directory's ``tritonserver.log`` is the checkers' evidence), and the optional output ``GRAPH`` (INT64 ``[4]`` per
  row) carries ``mode`` (0 eager, 1 replay, 2 capture), ``configured``, graphs captured by the instance, and
  ``round(sum(2x + 1))`` over the request's rows as computed by the graph or eagerly.
- ``log_executions``: ``true`` prints one line per execution to stdout (the server log):
  ``rmt_exec model=M instance=I exec=N start_ns=S end_ns=E warmup=0|1`` (``warmup=1``: one of the instance's first
  Σ ``model_warmup`` ``count`` executions, which Triton runs before READY).
- ``init_work_us``: slow start-up work of each instance (simulated compile / autotune) done in ``initialize``; every
  request waits until it is done. When it ends the instance prints
  ``rmt_warmup model=M instance=I start_ns=S end_ns=E mode=sync|background`` (stdout, so the server log).
- ``init_work_background``: ``true`` (the ``ready_too_early`` defect) starts that work on a background thread and
  returns from ``initialize`` at once, so Triton reports READY before the work ended and the first requests wait.
- ``keep_bytes_per_request``: bytes written per request into anonymous private mappings and kept (RSS grows by
  exactly these bytes, page by page: no allocator headers, the real-world magnitudes of hundreds of bytes per
  request). ``keep_release_every``: every N requests all kept pages are handed back (``MADV_DONTNEED``): 1 is the
  healthy twin (each request's bytes go back at once), N > 1 a GC-like sawtooth, 0 (default) never — the leak.
  ``keep_capacity_bytes``: a bounded cache: once it holds this many bytes, new entries overwrite old ones in place,
  so memory fills early and then stays flat.
- ``shm_creep_bytes_per_request``: the model owns a region in ``/dev/shm`` named with the server's python-backend
  prefix (so rmt's shm source sums it with the stub regions) and appends these bytes per request, never reusing
  them — a shared-memory pool growing a few bytes per request (Triton issue 7481, the 480-byte BLS shm leak).
  ``shm_creep_reuse``: ``true`` (the twin) writes each request's bytes at the region's start again.
- ``arena_bytes``: each request reserves ``arena_scale`` (default 16) × its input bytes in a fixed arena of this
  size and keeps it until evicted: blocks are evicted at random while the live bytes plus the new need exceed
  ``arena_fill`` (default 0.9) × the arena, so free space always covers the need. Placement is first fit;
  ``arena_compact``: ``false`` (the ``fragmenting_pool`` defect) fails the request with ``arena: failed to allocate N
  bytes (free M bytes, largest hole H bytes)`` when no hole fits, ``true`` (healthy) slides the live blocks together
  and retries, so it never fails.
- Sequences (``sequence_state_bytes``, ``sequence_idle_reclaim``) and BLS calls (``bls_target``,
  ``bls_keep_responses``): see ``zoo_state.py``.

Decoupled models (``model_transaction_policy { decoupled: true }``) stream: each request gets ``stream_responses``
(default 4) responses through its response sender, ``stream_gap_us`` apart (the first after ``execute_delay_us``,
and ``cold_start_us`` on the instance's first execution), each carrying ``OUTPUT0`` and a ``TRACE`` row stamped at
that response, then the final flag. A cancelled request (``request.is_cancelled()``, checked before every response)
gets no more data responses, only the final flag.

- ``stream_state_bytes``: per-request state allocated when the request starts and released at its normal end.
- ``stream_release_on_cancel``: ``false`` (the ``stream_leak_on_cancel`` defect) keeps a cancelled request's state
  forever, so every cancelled request leaks; ``true`` (healthy, the default) releases it on cancellation too.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# zoo_state.py lies beside the real file: this one through a model's 1/model.py link, or three folders up from an
# installed copy (rmt/zoo/<repository>/<model>/1/model.py).
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, next((d for d in (_HERE, os.path.normpath(os.path.join(_HERE, "..", "..", "..")))
                         if os.path.isfile(os.path.join(d, "zoo_state.py"))), _HERE))
from zoo_state import BlsCaller, SequenceStates  # noqa: E402 - found through the path set above

TRACE_FIELDS = ("pid", "instance_index", "exec_index", "start_ns", "end_ns", "device_id", "cold")
GRAPH_FIELDS = ("mode", "configured", "graphs", "checksum")
GRAPH_MODES = ("eager", "replay", "capture")


def _param(config: dict[str, Any], key: str, default: str = "") -> str:
    value = config.get("parameters", {}).get(key, {})
    return str(value.get("string_value", default)) if isinstance(value, dict) else default


def _pick_encoder() -> Callable[[str, np.ndarray], Any]:
    """How outputs are handed to the stub, in order of what was proven to work (docs/gpu-validation.md):

    1. torch's DLPack, where torch is installed (correct on Python 3.11 and on Ubuntu's 3.12.3 + numpy 2.5);
    2. numpy's own DLPack with numpy >= 2 (correct there too; numpy < 2 kills the stub: capsule renamed);
    3. the numpy bridge ``pb_utils.Tensor(name, ndarray)`` with numpy < 2 (correct on 3.11 and pyenv's 3.12.1;
       on Ubuntu's 3.12.3 it sends empty outputs although a DLPack read-back in the stub looks right).
    """
    try:
        import torch

        return lambda name, arr: pb_utils.Tensor.from_dlpack(name, torch.from_numpy(np.ascontiguousarray(arr)))
    except ImportError:
        pass
    if int(np.__version__.split(".")[0]) >= 2:
        return lambda name, arr: pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(arr))
    return lambda name, arr: pb_utils.Tensor(name, arr)


class _Device:
    """Allocates leak/pool buffers: host numpy arrays, or device memory through torch or cupy on GPU instances."""

    def __init__(self, kind: str, device_id: int) -> None:
        self.kind = kind
        self.device_id = device_id
        self._torch: Any = None
        self._cupy: Any = None
        if kind == "GPU":
            try:
                import torch

                self._torch = torch
            except ImportError:
                import cupy

                self._cupy = cupy

    def allocate(self, nbytes: int) -> Any:
        """A buffer of ``nbytes`` whose every page is written (so RSS / device usage really grows)."""
        if self._torch is not None:
            return self._torch.ones(nbytes, dtype=self._torch.uint8, device=f"cuda:{self.device_id}")
        if self._cupy is not None:
            with self._cupy.cuda.Device(self.device_id):
                return self._cupy.ones(nbytes, dtype=self._cupy.uint8)
        return np.ones(nbytes, dtype=np.uint8)

    def touch(self, buf: Any) -> None:
        """Write the buffer (a request 'using' it)."""
        if self._torch is not None:
            buf.fill_(2)
        else:
            buf.fill(2)


Shape = tuple[int, ...]
"""An execution shape: rows (summed over the execution's requests) first, then the row dims."""


def _shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def graph_shapes(config: dict[str, Any]) -> set[Shape]:
    """The execution shapes that get a graph: the ``graph_shapes`` parameter and, when ``optimization.cuda.graphs``
    is on, every ``graph_spec`` entry (``batch_size`` rows, the first input's dims)."""
    shapes = {tuple(int(d) for d in item.strip().split("x")) for item in _param(config, "graph_shapes").split(",")
              if item.strip()}
    cuda = config.get("optimization", {}).get("cuda", {})
    if cuda.get("graphs"):
        for spec in cuda.get("graph_spec", []):
            dims = next(iter(spec.get("input", {}).values()), {}).get("dim", [])
            shapes.add((max(1, int(spec.get("batch_size", 1) or 1)), *(int(d) for d in dims)))
    return shapes


class _Graphs:
    """Per-shape graphs of ``y = 2x + 1``: real ``torch.cuda.CUDAGraph`` objects on a GPU instance with torch,
    plain bookkeeping (the same modes, computed by numpy) elsewhere."""

    def __init__(self, shapes: set[Shape], device: _Device) -> None:
        self.shapes = shapes
        self.torch = device._torch
        self.device = f"cuda:{device.device_id}"
        self.captured: dict[Shape, Any] = {}

    def run(self, x: np.ndarray, capture_allowed: bool) -> tuple[int, np.ndarray]:
        """(mode index in :data:`GRAPH_MODES`, per-row sums of ``2x + 1``) for the execution's stacked rows."""
        shape = tuple(x.shape)
        mode = 0
        if shape in self.captured:
            mode = 1
        elif shape in self.shapes and capture_allowed:
            self.captured[shape] = self._capture(shape)
            mode = 2
        if self.torch is None:
            return mode, (x.astype(np.float64) * 2 + 1).reshape(len(x), -1).sum(axis=1)
        torch = self.torch
        if mode:
            static_in, static_out, graph = self.captured[shape]
            static_in.copy_(torch.from_numpy(x))
            graph.replay()
            out = static_out
        else:
            out = torch.from_numpy(x).to(self.device) * 2 + 1
        return mode, out.reshape(len(x), -1).double().sum(dim=1).cpu().numpy()

    def _capture(self, shape: Shape) -> Any:
        if self.torch is None:
            return shape
        torch = self.torch
        static_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm the kernels outside the graph, as torch's docs ask
            static_in * 2 + 1
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = static_in * 2 + 1
        torch.cuda.synchronize(self.device)
        return static_in, static_out, graph


class _Arena:
    """A fixed arena handed out first fit; ``compact`` slides live blocks together when no hole fits."""

    def __init__(self, size: int, fill: float, compact: bool, seed: int) -> None:
        self.size = size
        self.limit = int(size * fill)
        self.compact = compact
        self.memory = np.zeros(size, dtype=np.uint8)
        self.blocks: list[list[int]] = []
        """Live blocks ``[offset, size]`` sorted by offset."""
        self.used = 0
        self.rng = random.Random(seed)

    def _first_fit(self, need: int) -> tuple[int | None, int]:
        """(offset of the first hole of ``need`` bytes or None, largest hole)."""
        prev, largest = 0, 0
        for offset, size in self.blocks:
            if offset - prev >= need:
                return prev, offset - prev
            largest = max(largest, offset - prev)
            prev = offset + size
        if self.size - prev >= need:
            return prev, self.size - prev
        return None, max(largest, self.size - prev)

    def _compact(self) -> None:
        top = 0
        for block in self.blocks:
            offset, size = block
            if offset != top:
                self.memory[top:top + size] = self.memory[offset:offset + size]
                block[0] = top
            top += size

    def reserve(self, need: int) -> str:
        """Reserve ``need`` bytes (evicting at random to stay under the fill limit); an error message or ''."""
        need = max(1, min(need, self.limit))
        while self.blocks and self.used + need > self.limit:
            _, size = self.blocks.pop(self.rng.randrange(len(self.blocks)))
            self.used -= size
        offset, largest = self._first_fit(need)
        if offset is None and self.compact:
            self._compact()
            offset, largest = self._first_fit(need)
        if offset is None:
            return (f"arena: failed to allocate {need} bytes (free {self.size - self.used} bytes, largest hole "
                    f"{largest} bytes)")
        self.memory[offset:offset + need] = 1
        self.blocks.append([offset, need])
        self.blocks.sort()
        self.used += need
        return ""


class _Kept:
    """Bytes kept per request in anonymous private mappings: exact, page-granular RSS growth, and hand-back."""

    CHUNK = 64 << 20

    def __init__(self, per_request: int, release_every: int, capacity: int) -> None:
        self.per_request = per_request
        self.release_every = release_every
        self.capacity = capacity
        self.payload = b"\x01" * per_request
        self.chunks: list[mmap.mmap] = []
        self.pos = 0
        """Bytes written since the last hand-back (the cursor over the chunks)."""
        self.requests = 0

    def keep(self) -> None:
        """Write this request's bytes (in place once the cache is full); hand everything back when it is time."""
        if self.capacity and self.pos + self.per_request > self.capacity:
            self.pos = 0  # a full cache: the oldest entries are overwritten
        left = self.payload
        while left:
            index, offset = divmod(self.pos, self.CHUNK)
            while index >= len(self.chunks):
                self.chunks.append(mmap.mmap(-1, self.CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
            n = min(len(left), self.CHUNK - offset)
            self.chunks[index][offset:offset + n] = left[:n]
            self.pos += n
            left = left[n:]
        self.requests += 1
        if self.release_every and self.requests % self.release_every == 0:
            for chunk in self.chunks:
                chunk.madvise(mmap.MADV_DONTNEED)
            self.pos = 0


class _ShmCreep:
    """A region in ``/dev/shm`` under the server's python-backend prefix that grows by a few bytes per request."""

    def __init__(self, per_request: int, reuse: bool, name: str) -> None:
        self.payload = b"\x01" * per_request
        self.reuse = reuse
        self.path = f"/dev/shm/{_shm_prefix()}rmt_creep_{name}_{os.getpid()}"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.pos = 0

    def grow(self) -> None:
        """Write this request's bytes at the end (the defect) or at the start (the twin)."""
        os.pwrite(self.fd, self.payload, 0 if self.reuse else self.pos)
        if not self.reuse:
            self.pos += len(self.payload)

    def close(self) -> None:
        """Remove the region (the model unloads)."""
        os.close(self.fd)
        if os.path.exists(self.path):
            os.unlink(self.path)


def _shm_prefix() -> str:
    """The python backend's shm region prefix, from the server's (the stub's parent's) command line."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        argv = []
    for arg in argv:
        if "shm-region-prefix-name=" in arg:
            return arg.split("shm-region-prefix-name=", 1)[1]
    return "triton_python_backend_shm_region_"


class TritonPythonModel:
    """A zoo model; behaviour comes from the config ``parameters`` (see the module docstring)."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.outputs = {o["name"] for o in config.get("output", [])}
        self.batched = int(config.get("max_batch_size", 0)) > 0
        name = args.get("model_instance_name", "")
        tail = name.rsplit("_", 1)[-1]
        self.instance_index = int(tail) if tail.isdigit() else 0
        self.device_id = int(args.get("model_instance_device_id", "0") or 0)
        self.device = _Device(args.get("model_instance_kind", "CPU"), self.device_id)
        self.delay_s = int(_param(config, "execute_delay_us", "0") or 0) / 1e6
        self.cold_s = int(_param(config, "cold_start_us", "0") or 0) / 1e6
        self.leak_bytes = int(_param(config, "leak_bytes_per_request", "0") or 0)
        self.scratch_bytes = int(_param(config, "scratch_bytes_per_request", "0") or 0)
        self.leak_min_elements = int(_param(config, "leak_min_elements", "0") or 0)
        self.error_on_negative = _param(config, "error_on_negative") == "true"
        self.leak_on_error_only = _param(config, "leak_on_error_only") == "true"
        self.pool_bytes = int(_param(config, "pool_buffer_bytes", "0") or 0)
        self.pool_reuse = _param(config, "pool_reuse", "true") == "true"
        self.model_name = args.get("model_name", "")
        self.shape_cold_s = int(_param(config, "cold_per_shape_us", "0") or 0) / 1e6
        self.shapes_seen: set[Shape] = set()
        shapes = graph_shapes(config)
        self.graphs = _Graphs(shapes, self.device) if shapes else None
        self.warmup_execs = sum(max(1, int(s.get("count", 0) or 0)) for s in config.get("model_warmup", []))
        self.exec_index = 0
        self.leaked: list[Any] = []
        self.pool_free: list[Any] = []
        self.pool_owned = 0
        self.pid = os.getpid()
        self.encode = _pick_encoder()
        self.log_executions = _param(config, "log_executions") == "true"
        arena = int(_param(config, "arena_bytes", "0") or 0)
        self.arena = _Arena(arena, float(_param(config, "arena_fill", "0.9") or 0.9),
                            _param(config, "arena_compact", "true") == "true", self.pid + self.instance_index) \
            if arena > 0 else None
        self.arena_scale = int(_param(config, "arena_scale", "16") or 16)
        self.decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))
        self.stream_responses = int(_param(config, "stream_responses", "4") or 4)
        self.stream_gap_s = int(_param(config, "stream_gap_us", "0") or 0) / 1e6
        self.stream_state_bytes = int(_param(config, "stream_state_bytes", "0") or 0)
        self.stream_release_on_cancel = _param(config, "stream_release_on_cancel", "true") == "true"
        keep = int(_param(config, "keep_bytes_per_request", "0") or 0)
        self.kept = _Kept(keep, int(_param(config, "keep_release_every", "0") or 0),
                          int(_param(config, "keep_capacity_bytes", "0") or 0)) if keep > 0 else None
        creep = int(_param(config, "shm_creep_bytes_per_request", "0") or 0)
        self.creep = _ShmCreep(creep, _param(config, "shm_creep_reuse") == "true",
                               f"{self.model_name}_{self.instance_index}") if creep > 0 else None
        self.sequences = SequenceStates(config) if config.get("sequence_batching") else None
        self.bls = BlsCaller(config, self.encode) if _param(config, "bls_target") else None
        self.init_done = threading.Event()
        work_s = int(_param(config, "init_work_us", "0") or 0) / 1e6
        if work_s <= 0:
            self.init_done.set()
        elif _param(config, "init_work_background") == "true":
            threading.Thread(target=self._init_work, args=(work_s, "background"), daemon=True).start()
        else:
            self._init_work(work_s, "sync")

    def _init_work(self, seconds: float, mode: str) -> None:
        """The instance's slow start-up work; prints its ``rmt_warmup`` line when done."""
        start_ns = time.time_ns()
        time.sleep(seconds)
        print(f"rmt_warmup model={self.model_name} instance={self.instance_index} start_ns={start_ns} "
              f"end_ns={time.time_ns()} mode={mode}", flush=True)
        self.init_done.set()

    # -- defects ----------------------------------------------------------------------------------------------------
    def _leak(self) -> None:
        if self.leak_bytes > 0:
            self.leaked.append(self.device.allocate(self.leak_bytes))

    def _use_pool(self) -> None:
        if self.pool_bytes <= 0:
            return
        if self.pool_reuse and self.pool_free:
            buf = self.pool_free.pop()
        else:
            buf = self.device.allocate(self.pool_bytes)
            self.pool_owned += 1
        self.device.touch(buf)
        self.pool_free.append(buf)  # returned: "in use" is 0 again, whatever the pool holds

    # -- execution --------------------------------------------------------------------------------------------------
    def execute(self, requests: list[Any]) -> list[Any] | None:
        self.init_done.wait()
        if self.decoupled:
            self._stream(requests)
            return None
        start_ns = time.time_ns()
        cold = self.exec_index == 0 and self.cold_s > 0
        if cold:
            time.sleep(self.cold_s)
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        responses = [self._one(request) for request in requests]
        graph_rows = self._shapes(responses) if self.shape_cold_s > 0 or self.graphs is not None else None
        end_ns = time.time_ns()
        trace_row = [self.pid, self.instance_index, self.exec_index, start_ns, end_ns, self.device_id, int(cold)]
        if self.log_executions:
            print(f"rmt_exec model={self.model_name} instance={self.instance_index} exec={self.exec_index} "
                  f"start_ns={start_ns} end_ns={end_ns} warmup={int(self.exec_index < self.warmup_execs)}", flush=True)
        self.exec_index += 1
        return [self._respond(r, trace_row, None if graph_rows is None else graph_rows[i])
                for i, r in enumerate(responses)]

    def _shapes(self, results: list[Any]) -> list[np.ndarray | None]:
        """Per-shape cold start and graphs for this execution; the ``GRAPH`` rows of each request (None: error)."""
        arrays = [r for r in results if isinstance(r, np.ndarray)]
        out: list[np.ndarray | None] = [None] * len(results)
        if not arrays:
            return out
        rows = [a.reshape(1, *a.shape) if not self.batched or a.ndim == 0 else a for a in arrays]
        if len({r.shape[1:] for r in rows}) != 1:
            return out  # rows of different dims: no common execution shape, nothing to key on
        stacked = np.ascontiguousarray(np.concatenate(rows).astype(np.float32, copy=False))
        shape = tuple(stacked.shape)
        if self.shape_cold_s > 0 and shape not in self.shapes_seen:
            time.sleep(self.shape_cold_s)
        self.shapes_seen.add(shape)
        if self.graphs is None:
            return out
        in_warmup = self.exec_index < self.warmup_execs
        mode, sums = self.graphs.run(stacked, capture_allowed=in_warmup)
        configured = int(shape in self.graphs.shapes)
        pb_utils.Logger.log_info(
            f"rmt_graph model={self.model_name} instance={self.instance_index} exec={self.exec_index} "
            f"shape={_shape_text(shape)} configured={configured} mode={GRAPH_MODES[mode]} warmup={int(in_warmup)} "
            f"graphs={'cuda' if self.graphs.torch is not None else 'host'}")
        start = 0
        for i, r in enumerate(results):
            if isinstance(r, np.ndarray):
                n = len(r) if self.batched and r.ndim > 0 else 1
                checksum = round(float(sums[start:start + n].sum()))
                out[i] = np.asarray([mode, configured, len(self.graphs.captured), checksum], dtype=np.int64)
                start += n
        return out

    def _one(self, request: Any) -> Any:
        tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0")
        data = np.array(np.from_dlpack(tensor), copy=True)  # own the bytes: the request's buffer goes away
        if self.sequences is not None:
            self.sequences.step(request)
        if self.bls is not None:
            data = self.bls.call(data)
            if isinstance(data, pb_utils.TritonError):
                return data
        if self.error_on_negative and data.size and float(data.min()) < 0:
            self._leak()
            return pb_utils.TritonError("INPUT0 has a negative element: rejected by the model")
        if not self.leak_on_error_only and data.size >= self.leak_min_elements:
            self._leak()
        if self.kept is not None:
            self.kept.keep()
        if self.creep is not None:
            self.creep.grow()
        self._use_pool()
        if self.arena is not None:
            error = self.arena.reserve(data.nbytes * self.arena_scale)
            if error:
                return pb_utils.TritonError(error)
        if self.scratch_bytes > 0:
            self.device.touch(self.device.allocate(self.scratch_bytes))  # dropped at once
        return data

    def _respond(self, result: Any, trace_row: list[int], graph_row: np.ndarray | None = None) -> Any:
        if isinstance(result, pb_utils.TritonError):
            return pb_utils.InferenceResponse(output_tensors=[], error=result)
        rows = result.shape[0] if self.batched and result.ndim > 0 else None
        tensors = []
        if "OUTPUT0" in self.outputs:
            tensors.append(self.encode("OUTPUT0", result))
        if "TRACE" in self.outputs:
            tensors.append(self.encode("TRACE", self._rows(trace_row, rows)))
        if "POOL_STATS" in self.outputs:
            owned_bytes = self.pool_owned * self.pool_bytes
            stats = [self.pool_owned, self.pool_owned - len(self.pool_free), owned_bytes]
            tensors.append(self.encode("POOL_STATS", self._rows(stats, rows)))
        if "GRAPH" in self.outputs:
            graph = graph_row.tolist() if graph_row is not None else [0, 0, 0, 0]
            tensors.append(self.encode("GRAPH", self._rows(graph, rows)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    @staticmethod
    def _rows(values: list[int], rows: int | None) -> np.ndarray:
        row = np.asarray(values, dtype=np.int64)
        return np.ascontiguousarray(np.tile(row, (rows, 1))) if rows is not None else row

    # -- decoupled (streaming) ----------------------------------------------------------------------------------------
    def _stream(self, requests: list[Any]) -> None:
        """Send each request's responses through its sender, interleaved across the batch (see the docstring)."""
        cold = self.exec_index == 0 and self.cold_s > 0
        if cold:
            time.sleep(self.cold_s)
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        live = []
        for request in requests:
            sender = request.get_response_sender()
            result = self._one(request)
            if isinstance(result, pb_utils.TritonError):
                sender.send(pb_utils.InferenceResponse(output_tensors=[], error=result),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            state = self.device.allocate(self.stream_state_bytes) if self.stream_state_bytes > 0 else None
            live.append((request, sender, result, state))
        for step in range(self.stream_responses):
            if step and self.stream_gap_s > 0:
                time.sleep(self.stream_gap_s)
            still = []
            for item in live:
                request, sender, result, state = item
                if request.is_cancelled():
                    if not self.stream_release_on_cancel and state is not None:
                        self.leaked.append(state)  # the defect: only the normal end lets go of the state
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    continue
                now = time.time_ns()
                row = [self.pid, self.instance_index, self.exec_index, now, now, self.device_id, int(cold)]
                sender.send(self._respond(result, row))
                still.append(item)
            live = still
        for _, sender, _, _ in live:  # the normal end: the state goes with the request
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        self.exec_index += 1

    def finalize(self) -> None:
        self.leaked.clear()
        self.pool_free.clear()
        if self.creep is not None:
            self.creep.close()
        if self.bls is not None:
            self.bls.kept.clear()
