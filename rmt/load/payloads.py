"""The payload pool: each stream's request bodies checked against the model's configuration, generated and encoded
once, before any load, so the hot path only picks the next body and stamps a request id into it.

:func:`resolve_stream` checks a stream against the live model configuration — dtype, rank, fixed dims, batch size,
priority level, whether a per-request timeout can take effect — and raises a one-line ConfigError naming the model
and input. :func:`build_pool` turns it into at most ``pool_bodies`` bodies within ``pool_bytes``:
:class:`HttpBody` (Triton's binary tensor extension: a JSON header followed by raw tensor bytes) and gRPC
``ModelInferRequest`` bytes. Both leave a fixed-width request id to be inserted per request (:data:`ID_WIDTH`).
"""

from __future__ import annotations

import base64
import json
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor, triton_to_np_dtype

from rmt.core.errors import ConfigError
from rmt.core.modelconfig import InputSpec, input_specs, output_specs, priority_levels, queue_policy
from rmt.core.scenario import InputPattern, Pattern, Scenario, ShapeSpec, Stream

#: Characters of every request id (fixed, so pre-encoded lengths never change).
ID_WIDTH = 20
#: A variable dim the scenario leaves open gets this size.
DEFAULT_FREE_DIM = 16
#: The probe's per-row execution trace output (see rmt/zoo/zoo_model.py).
TRACE_OUTPUT = "TRACE"
TRACE_WIDTH = 7


@dataclass(frozen=True)
class ResolvedStream:
    """A stream checked against its model: what every body of its pool will look like."""

    stream: Stream
    pattern: Pattern
    inputs: tuple[InputSpec, ...]
    """The inputs the requests carry (required ones, plus optional ones the pattern names)."""
    batched: bool
    traced: bool
    """The model returns the probe's ``TRACE`` output (INT64, 7 per row)."""
    streaming: bool = False
    """The pattern streams (a decoupled model): gRPC ``ModelStreamInfer`` / HTTP ``generate_stream``."""
    outputs: tuple[InputSpec, ...] = ()
    """The model's outputs (shared-memory outputs are requested by name)."""
    idle_us: int = 0
    """The sequence batcher's ``max_sequence_idle_microseconds`` (0: no sequence batcher)."""


@dataclass(frozen=True)
class HttpBody:
    """One pre-encoded HTTP inference body: ``json_head + request id + json_tail + binary``."""

    json_head: bytes
    json_tail: bytes
    binary: bytes
    batch_size: int


@dataclass(frozen=True)
class Pool:
    """The pre-encoded bodies of one stream (one protocol)."""

    resolved: ResolvedStream
    http: tuple[HttpBody, ...] = ()
    grpc: tuple[bytes, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    sse: tuple[tuple[bytes, bytes], ...] = ()
    """Streaming over HTTP: ``generate_stream`` JSON bodies as ``(head, tail)``, the request id between them."""
    arrays: tuple[dict[str, np.ndarray], ...] = ()
    """The bodies' arrays, kept for patterns whose requests are built per request (:attr:`Pattern.stateful`)."""


def _fail(stream: Stream, message: str) -> ConfigError:
    return ConfigError(f"stream {stream.name}: {message}")


def resolve_stream(stream: Stream, pattern: Pattern, config: Any) -> ResolvedStream:
    """Check ``stream`` (with its pattern) against the model configuration; ConfigError names model and input."""
    model = stream.model
    specs = {s.name: s for s in input_specs(config)}
    for name, _ in pattern.inputs:
        if name not in specs:
            raise _fail(stream, f"model {model!r} has no input {name!r} (inputs: {', '.join(specs)}): "
                                "fix the pattern's inputs")
    named = {name for name, _ in pattern.inputs}
    chosen = tuple(s for s in specs.values() if not s.optional or s.name in named)
    for spec in chosen:
        _check_input(stream, spec, pattern.for_input(spec.name))
    batched = config.max_batch_size > 0
    if batched and pattern.batch_size > config.max_batch_size:
        raise _fail(stream, f"model {model!r} takes batches up to {config.max_batch_size}, pattern "
                            f"{pattern.name!r} asks for batch_size {pattern.batch_size}: lower it")
    if not batched and pattern.batch_size != 1:
        raise _fail(stream, f"model {model!r} does not batch (max_batch_size 0): use batch_size 1")
    levels = priority_levels(config)
    if stream.priority and not levels:
        raise _fail(stream, f"model {model!r} has no priority levels (dynamic_batching.priority_levels): "
                            "drop the stream's priority")
    if stream.priority > levels:
        raise _fail(stream, f"model {model!r} has priority levels 1..{levels}, the stream asks for "
                            f"{stream.priority}: use one of them")
    if stream.timeout_us:
        policy = queue_policy(config, stream.priority)
        if policy is None or not policy.honours_request_timeout:
            raise _fail(stream, f"model {model!r} would ignore timeout_us (Triton only lets a request shorten a "
                                "nonzero default_timeout_microseconds of its queue policy): set one in the model's "
                                "dynamic_batching queue policy, or drop timeout_us")
    _check_streaming(stream, pattern, config)
    _check_paths(stream, pattern, config)
    outputs = tuple(output_specs(config))
    traced = any(o.name == TRACE_OUTPUT and o.datatype == "INT64" and o.dims == (TRACE_WIDTH,) for o in outputs)
    idle = int(config.sequence_batching.max_sequence_idle_microseconds or 1_000_000) \
        if config.HasField("sequence_batching") else 0
    return ResolvedStream(stream, pattern, chosen, batched, traced, pattern.stream is not None, outputs, idle)


def _check_streaming(stream: Stream, pattern: Pattern, config: Any) -> None:
    """A streaming pattern goes to a decoupled model, a unary one to a model that answers once."""
    decoupled = bool(config.model_transaction_policy.decoupled)
    if pattern.stream is not None and not decoupled:
        raise _fail(stream, f"pattern {pattern.name!r} streams (it has a \"stream\" section) but model "
                            f"{stream.model!r} is not decoupled (model_transaction_policy.decoupled): aim the stream "
                            "at a decoupled model or drop the pattern's \"stream\" section")
    if pattern.stream is None and decoupled:
        raise _fail(stream, f"model {stream.model!r} is decoupled (it streams its responses) but pattern "
                            f"{pattern.name!r} is unary: give the pattern a \"stream\": {{}} section")


def _check_paths(stream: Stream, pattern: Pattern, config: Any) -> None:
    """The stateful paths a pattern asks for exist on the model (sequence batcher, response cache)."""
    model = stream.model
    sequenced = config.HasField("sequence_batching")
    if pattern.sequence is not None and not sequenced:
        raise _fail(stream, f"model {model!r} has no sequence batcher (sequence_batching), pattern {pattern.name!r} "
                            "sends sequences: drop the pattern's \"sequence\" or use a model with sequence_batching")
    if sequenced and pattern.sequence is None:
        raise _fail(stream, f"model {model!r} has a sequence batcher: every request needs a sequence id; give "
                            f"pattern {pattern.name!r} a \"sequence\": {{\"length\": 4}}")
    if pattern.cache is not None and not config.response_cache.enable:
        raise _fail(stream, f"model {model!r} has no response cache, pattern {pattern.name!r} sets a cache hit "
                            "ratio: add response_cache { enable: true } to the model config (and start tritonserver "
                            "with --cache-config local,size=N) or drop the pattern's \"cache\"")
    if pattern.shm is not None and any(s.datatype == "BYTES" for s in input_specs(config)):
        raise _fail(stream, f"model {model!r} takes BYTES inputs: rmt sends only fixed-size tensors through shared "
                            "memory; drop the pattern's \"shm\"")


def _check_input(stream: Stream, spec: InputSpec, wanted: InputPattern) -> None:
    where = f"model {stream.model!r} input {spec.name!r}"
    if wanted.dtype is not None and wanted.dtype != spec.datatype:
        raise _fail(stream, f"{where} takes {spec.datatype}, the pattern asks for {wanted.dtype}: "
                            f"fix the pattern's dtype")
    for shape in wanted.shape.shapes:
        if len(shape) != len(spec.dims) or any(d >= 0 and d != s for d, s in zip(spec.dims, shape, strict=True)):
            raise _fail(stream, f"{where} has dims {list(spec.dims)} (without the batch dim), the pattern asks for "
                                f"shape {list(shape)}: fix the pattern's shape")
    if wanted.shape.kind in ("uniform", "loguniform") and -1 not in spec.dims:
        raise _fail(stream, f"{where} has fixed dims {list(spec.dims)}: a {wanted.shape.kind} shape needs a variable "
                            "(-1) dim; use a fixed shape")


def _draw_dims(spec: InputSpec, shape: ShapeSpec, rng: random.Random) -> tuple[int, ...]:
    if shape.kind == "fixed":
        return shape.shapes[0] if shape.shapes else tuple(DEFAULT_FREE_DIM if d < 0 else d for d in spec.dims)
    if shape.kind == "choice":
        return shape.shapes[rng.randrange(len(shape.shapes))]

    def free() -> int:
        if shape.kind == "uniform":
            return rng.randint(shape.low, shape.high)
        return min(shape.high, max(shape.low, round(math.exp(rng.uniform(math.log(shape.low),
                                                                             math.log(shape.high + 1) - 1e-9)))))

    return tuple(free() if d < 0 else d for d in spec.dims)


def _values(spec: InputSpec, data: str, shape: list[int], nprng: np.random.Generator) -> np.ndarray:
    if spec.datatype == "BYTES":
        return np.full(shape, b"rmt", dtype=np.object_)
    dtype = triton_to_np_dtype(spec.datatype)
    if data == "zeros":
        return np.zeros(shape, dtype=dtype)
    if spec.datatype == "BOOL":
        return nprng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return nprng.integers(0, 100, size=shape).astype(dtype)
    return (nprng.random(shape) * 100).astype(dtype)


def _step_array(stream: Stream, spec: InputSpec, step: dict[str, Any], index: int) -> np.ndarray:
    """One perf_analyzer input-data step's values for ``spec`` (without the batch dim)."""
    where = f"input_data step {index} input {spec.name!r}"
    if spec.name not in step:
        raise _fail(stream, f"{where} is missing: give values for every input of model {stream.model!r}")
    value = step[spec.name]
    shape: list[int] | None = None
    if isinstance(value, dict):
        shape = value.get("shape")
        if "b64" in value:
            raw = base64.b64decode(value["b64"])
            flat = np.frombuffer(raw, dtype=triton_to_np_dtype(spec.datatype))
        else:
            flat = np.asarray(value.get("content", []))
    else:
        flat = np.asarray(value)
    dtype = np.object_ if spec.datatype == "BYTES" else triton_to_np_dtype(spec.datatype)
    try:
        if spec.datatype == "BYTES":
            flat = np.asarray([v.encode() if isinstance(v, str) else v for v in flat.ravel()], dtype=np.object_)
        array = flat.astype(dtype)
    except (ValueError, TypeError) as exc:
        raise _fail(stream, f"{where}: values are not {spec.datatype} ({exc}): fix the input data") from exc
    if shape is None:
        if -1 in spec.dims:
            if len(spec.dims) != 1:
                raise _fail(stream, f"{where}: model dims {list(spec.dims)} are variable: give "
                                    "{\"content\": [...], \"shape\": [...]}")
            shape = [array.size]
        else:
            shape = list(spec.dims)
    if math.prod(shape) != array.size:
        raise _fail(stream, f"{where}: {array.size} values do not fill shape {shape}: fix the input data")
    if len(shape) != len(spec.dims) or any(d >= 0 and d != s for d, s in zip(spec.dims, shape, strict=True)):
        raise _fail(stream, f"{where}: shape {shape} does not fit model dims {list(spec.dims)}: fix the input data")
    return array.reshape(shape)


def _tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        serialized = serialize_byte_tensor(array)
        return b"" if serialized is None else bytes(serialized.item())
    return np.ascontiguousarray(array).tobytes()


def _arrays(resolved: ResolvedStream, k: int, rng: random.Random,
            nprng: np.random.Generator) -> dict[str, np.ndarray]:
    """The arrays of the ``k``-th body: one shape draw per body, ``batch_size`` rows when the model batches."""
    pattern = resolved.pattern
    batch = pattern.batch_size
    arrays: dict[str, np.ndarray] = {}
    for spec in resolved.inputs:
        wanted = pattern.for_input(spec.name)
        if wanted.data == "input_data":
            steps = pattern.input_data
            rows = [_step_array(resolved.stream, spec, steps[(k * batch + b) % len(steps)], (k * batch + b)
                                % len(steps)) for b in range(batch)]
            if len({r.shape for r in rows}) > 1:
                raise _fail(resolved.stream, f"input_data steps batched together have different shapes for input "
                                             f"{spec.name!r}: use batch_size 1 or equal shapes")
            arrays[spec.name] = np.stack(rows) if resolved.batched else rows[0]
        else:
            dims = list(_draw_dims(spec, wanted.shape, rng))
            shape = [batch, *dims] if resolved.batched else dims
            arrays[spec.name] = _values(spec, wanted.data, shape, nprng)
    return arrays


def _parameters(stream: Stream) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if stream.priority:
        params["priority"] = stream.priority
    if stream.timeout_us:
        params["timeout"] = stream.timeout_us
    return params


Placement = dict[str, dict[str, Any]]
"""Tensor name → shared-memory parameters (``shared_memory_region``, ``shared_memory_byte_size``,
``shared_memory_offset``) for tensors that travel in shared memory."""


def encode_http(resolved: ResolvedStream, arrays: dict[str, np.ndarray], extra: dict[str, Any] | None = None,
                shm: Placement | None = None) -> HttpBody:
    """A binary-extension HTTP body; the id goes between ``json_head`` and ``json_tail``. ``extra``: request
    parameters (sequence flags); ``shm``: tensors placed in shared memory (inputs carry no bytes then; shared-memory
    outputs are requested by name, the other outputs in binary)."""
    inputs, chunks = [], []
    shm = shm or {}
    for spec in resolved.inputs:
        head: dict[str, Any] = {"name": spec.name, "shape": list(arrays[spec.name].shape), "datatype": spec.datatype}
        if spec.name in shm:
            head["parameters"] = shm[spec.name]
        else:
            raw = _tensor_bytes(arrays[spec.name], spec.datatype)
            head["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        inputs.append(head)
    params: dict[str, Any] = {**_parameters(resolved.stream), **(extra or {}), "binary_data_output": True}
    body: dict[str, Any] = {"inputs": inputs}
    if any(o.name in shm for o in resolved.outputs):
        body["outputs"] = [{"name": o.name, "parameters": shm.get(o.name, {"binary_data": True})}
                           for o in resolved.outputs]
    body["parameters"] = params
    tail = json.dumps(body, separators=(",", ":"))
    batch = resolved.pattern.batch_size if resolved.batched else 1
    return HttpBody(b'{"id":"', ('",' + tail[1:]).encode(), b"".join(chunks), batch)


def _grpc_param(param: Any, value: Any) -> None:
    """Set an ``InferParameter`` from a Python value (bool, int or str)."""
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    else:
        param.string_param = str(value)


def encode_grpc(resolved: ResolvedStream, arrays: dict[str, np.ndarray], extra: dict[str, Any] | None = None,
                shm: Placement | None = None) -> bytes:
    """A serialized ``ModelInferRequest`` without an id (append :func:`grpc_id_field` per request); ``extra`` and
    ``shm`` as for :func:`encode_http`."""
    request = service_pb2.ModelInferRequest(model_name=resolved.stream.model)
    shm = shm or {}
    for spec in resolved.inputs:
        tensor = request.inputs.add(name=spec.name, datatype=spec.datatype)
        tensor.shape.extend(arrays[spec.name].shape)
        if spec.name in shm:
            for key, value in shm[spec.name].items():
                _grpc_param(tensor.parameters[key], value)
        else:
            request.raw_input_contents.append(_tensor_bytes(arrays[spec.name], spec.datatype))
    if any(o.name in shm for o in resolved.outputs):
        for out in resolved.outputs:
            wanted = request.outputs.add(name=out.name)
            for key, value in shm.get(out.name, {}).items():
                _grpc_param(wanted.parameters[key], value)
    stream = resolved.stream
    if stream.priority:
        request.parameters["priority"].uint64_param = stream.priority
    if stream.timeout_us:
        request.parameters["timeout"].int64_param = stream.timeout_us
    if resolved.streaming:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    for key, value in (extra or {}).items():
        _grpc_param(request.parameters[key], value)
    return bytes(request.SerializeToString())


def encode_sse(resolved: ResolvedStream, arrays: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    """A ``generate_stream`` JSON body (one request, inputs by name, without the batch dim) as ``(head, tail)``."""
    body: dict[str, Any] = {}
    for spec in resolved.inputs:
        array = arrays[spec.name]
        row = array[0] if resolved.batched else array
        body[spec.name] = [v.decode() for v in row.ravel()] if spec.datatype == "BYTES" else row.ravel().tolist()
    body.update(_parameters(resolved.stream))
    tail = json.dumps(body, separators=(",", ":"))
    return b'{"id":"', ('",' + tail[1:]).encode()


def grpc_id_field(request_id: bytes) -> bytes:
    """The protobuf encoding of ``ModelInferRequest.id`` (field 3); appended to a body it sets the id."""
    return b"\x1a" + bytes((len(request_id),)) + request_id


def build_pool(resolved: ResolvedStream, scenario: Scenario, protocol: str, *, seed: int = 0) -> Pool:
    """Pre-generate and pre-encode the stream's bodies: at most ``pool_bodies``, together within ``pool_bytes``."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    pattern = resolved.pattern
    varying = any(pattern.for_input(s.name).data != "zeros" or pattern.for_input(s.name).shape.kind != "fixed"
                  for s in resolved.inputs)
    wanted = scenario.pool_bodies if varying else 1
    if pattern.input_data:
        wanted = min(wanted, max(1, len(pattern.input_data) // pattern.batch_size))
    http: list[HttpBody] = []
    grpc: list[bytes] = []
    sse: list[tuple[bytes, bytes]] = []
    batches: list[int] = []
    kept: list[dict[str, np.ndarray]] = []
    used = 0
    for k in range(wanted):
        arrays = _arrays(resolved, k, rng, nprng)
        size = sum(a.nbytes for a in arrays.values())
        if k and used + size > scenario.pool_bytes:
            break
        used += size
        batches.append(pattern.batch_size if resolved.batched else 1)
        if pattern.stateful:
            kept.append(arrays)
        elif protocol == "http" and resolved.streaming:
            sse.append(encode_sse(resolved, arrays))
        elif protocol == "http":
            http.append(encode_http(resolved, arrays))
        else:
            grpc.append(encode_grpc(resolved, arrays))
    return Pool(resolved, tuple(http), tuple(grpc), tuple(batches), tuple(sse), tuple(kept))
