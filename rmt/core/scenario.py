"""The declarative traffic model: patterns, streams (model × priority × pattern, weighted) and phases.

A scenario is plain data — a JSON file (the whole file, or its ``"traffic"`` section) or a dict on a user class —
parsed once by :func:`parse_scenario` into frozen dataclasses. Every structural mistake is a one-line
:class:`~rmt.core.errors.ConfigError` naming the key and the fix; what depends on the server (does the model take this
dtype and shape?) is checked by :mod:`rmt.load.payloads` against the live model configuration, before any load.

Example::

    {"traffic": {
      "mode": "open", "arrival": "poisson", "rate_per_s": 200,
      "patterns": {"small": {"shape": [16]},
                   "mixed": {"shape": {"loguniform": [1, 4096]}, "batch_size": 2, "data": "zeros"}},
      "streams": [{"model": "probe", "pattern": "small", "weight": 3},
                  {"model": "queue_priority", "priority": 1, "pattern": "mixed", "timeout_us": 5000}],
      "phases": [{"name": "warmup", "duration_s": 5, "rate_per_s": 20},
                 {"name": "a", "duration_s": 30, "weights": {"probe/p0/small": 1}}]}}

Closed loop, ``"users": N`` on a stream dedicates N of the run's users to it (a fixed concurrency per model, like
one perf_analyzer per model): each model stays backlogged whatever the others get, as rate-limiter weight tests
need. The remaining users pick among the streams without ``users`` by weight (they idle when every stream has
dedicated users). See :mod:`rmt.load.pinning`.

Shapes are the request shape *without* the batch dimension: a fixed list (``[16]``), ``{"choice": [[16], [64]]}``,
``{"uniform": [lo, hi]}`` or ``{"loguniform": [lo, hi]}`` (each variable ``-1`` dim drawn in ``[lo, hi]``).
Data: ``"random"`` (default), ``"zeros"``, or ``{"input_data": <path or parsed JSON>}`` in perf_analyzer's
``--input-data`` format.

Streaming: a pattern with a ``"stream"`` section is sent to a decoupled model as a stream (gRPC ``ModelStreamInfer``,
HTTP ``generate_stream``) and every other pattern as a unary inference; which model takes which is checked against
its configuration before any load. ``{"stream": {"cancel_share": 0.5, "cancel_after_responses": 2,
"cancel_after_ms": 0, "responses": 8}}``: half of the requests are cancelled by the client after their second
response (or after ``cancel_after_ms`` ms, whichever comes first); ``responses`` is the count the model promises
per request (optional; ``stream_completeness`` holds the completed requests to it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmt.core.errors import ConfigError
from rmt.core.jsonfile import read_json
from rmt.core.pathspec import CacheSpec, SequenceSpec, ShmSpec, parse_cache, parse_sequence, parse_shm

MODES = ("closed", "open")
ARRIVALS = ("constant", "poisson")
SHAPE_KINDS = ("fixed", "choice", "uniform", "loguniform")
DEFAULT_PATTERN = "default"
#: The phase of a scenario without ``phases``: one phase that never ends.
MAIN_PHASE = "main"


@dataclass(frozen=True)
class ShapeSpec:
    """How request shapes (without the batch dimension) are drawn for a pattern."""

    kind: str = "fixed"
    """One of :data:`SHAPE_KINDS`."""
    shapes: tuple[tuple[int, ...], ...] = ()
    """``fixed``: one shape; ``choice``: the candidates. Empty ``fixed`` means: from the model config."""
    low: int = 1
    """``uniform``/``loguniform``: smallest size of a variable dim (elements)."""
    high: int = 1
    """``uniform``/``loguniform``: largest size of a variable dim (elements)."""


@dataclass(frozen=True)
class InputPattern:
    """What one input of a request carries."""

    dtype: str | None = None
    """Wire datatype (``FP32``); ``None``: the model's."""
    shape: ShapeSpec = ShapeSpec()
    data: str = "random"
    """``random``, ``zeros`` or ``input_data`` (values from :attr:`Pattern.input_data`)."""


@dataclass(frozen=True)
class StreamSpec:
    """How a streaming pattern's requests end: a ``cancel_share`` cancelled by the client, the rest run to the end."""

    cancel_share: float = 0.0
    """Share (0..1) of the pattern's requests the client cancels."""
    cancel_after_responses: int = 0
    """Cancel after this many responses (0: not by count)."""
    cancel_after_ms: float = 0.0
    """Cancel this many ms after the send (0: not by time)."""
    responses: int = 0
    """Responses the model promises per completed request (0: not stated)."""


@dataclass(frozen=True)
class Pattern:
    """A request pattern: per-input dtype/shape/data, batch size; inputs not named follow ``default``."""

    name: str
    batch_size: int = 1
    default: InputPattern = InputPattern()
    inputs: tuple[tuple[str, InputPattern], ...] = ()
    input_data: tuple[dict[str, Any], ...] = ()
    """perf_analyzer ``--input-data`` steps (each ``{input name: values or {content, shape}}``)."""
    stream: StreamSpec | None = None
    """Streaming requests (to a decoupled model) and their cancellation; ``None``: unary inferences."""
    sequence: SequenceSpec | None = None
    """Requests form sequences (see :mod:`rmt.core.pathspec`)."""
    shm: ShmSpec | None = None
    """Tensors travel in system shared memory."""
    cache: CacheSpec | None = None
    """The response-cache hit/miss mix."""

    @property
    def stateful(self) -> bool:
        """Whether requests are built per request (sequence, shared memory or cache mix) instead of pre-encoded."""
        return self.sequence is not None or self.shm is not None or self.cache is not None

    def for_input(self, name: str) -> InputPattern:
        """The pattern of input ``name``."""
        for key, pattern in self.inputs:
            if key == name:
                return pattern
        return self.default


@dataclass(frozen=True)
class Stream:
    """One kind of traffic: a model, a Triton priority, a pattern, a weight in the mix."""

    model: str
    pattern: str = DEFAULT_PATTERN
    priority: int = 0
    """Triton request priority (1 highest); 0 leaves the model's default level."""
    timeout_us: int = 0
    """Triton request ``timeout`` parameter in µs; 0 sends none."""
    weight: float = 1.0
    users: int = 0
    """Closed loop: this many users of the run send only this stream (a fixed concurrency per model, as one
    perf_analyzer per model in Triton's QA); 0: the stream is picked by weight by the other users."""

    @property
    def name(self) -> str:
        """Stable name used in Locust stats and in the run directory: ``model/p<priority>/<pattern>``."""
        return f"{self.model}/p{self.priority}/{self.pattern}"


@dataclass(frozen=True)
class Phase:
    """A named stretch of the run with its own rate and mix."""

    name: str
    duration_s: float = math.inf
    rate_per_s: float | None = None
    """Open loop: total arrivals per second across all workers; ``None``: the scenario's."""
    weights: tuple[tuple[str, float], ...] = ()
    """Stream name (or model name, for all its streams) → weight; empty: the streams' own weights."""


@dataclass(frozen=True)
class Scenario:
    """A parsed traffic scenario (see the module docstring for the file format)."""

    streams: tuple[Stream, ...]
    patterns: tuple[Pattern, ...] = (Pattern(DEFAULT_PATTERN),)
    phases: tuple[Phase, ...] = (Phase(MAIN_PHASE),)
    mode: str = "closed"
    arrival: str = "poisson"
    rate_per_s: float = 10.0
    backlog: int = 0
    """Open loop: arrivals that may wait (per process) for a busy user; beyond it they are dropped."""
    wait_s: tuple[float, float] = (0.0, 0.0)
    """Closed loop: each user waits uniform(min, max) seconds between requests."""
    network_timeout_s: float = 60.0
    max_traces_per_s: int = 100
    """Per process: at most this many requests per second have their probe traces (one row per batch row) kept."""
    pool_bodies: int = 32
    """Pre-encoded request bodies kept per stream (round robin)."""
    pool_bytes: int = 64 * 1024 * 1024
    """Upper bound on the memory of one stream's pool; fewer bodies are kept when they are large."""
    seed: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The scenario as parsed JSON (shipped to workers and written to the manifest)."""

    def pattern(self, name: str) -> Pattern:
        """The pattern called ``name``."""
        for pattern in self.patterns:
            if pattern.name == name:
                return pattern
        raise ConfigError(f"unknown pattern {name!r}: define it under 'patterns'")

    def stream_weights(self, phase: Phase) -> list[float]:
        """The weight of each stream (in :attr:`streams` order) during ``phase``."""
        if not phase.weights:
            return [s.weight for s in self.streams]
        table = dict(phase.weights)
        return [float(table.get(s.name, table.get(s.model, 0.0))) for s in self.streams]

    def phase_rate(self, phase: Phase) -> float:
        """Total open-loop arrivals per second during ``phase``."""
        return self.rate_per_s if phase.rate_per_s is None else phase.rate_per_s

    @property
    def duration_s(self) -> float:
        """Total length of the phases (``inf`` when the last one never ends)."""
        return sum(p.duration_s for p in self.phases)


# -- parsing ---------------------------------------------------------------------------------------------------------
def _where(path: str) -> str:
    return f"scenario {path}"


def _number(value: Any, path: str, *, minimum: float = 0.0, integer: bool = False, strict: bool = False) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or value < minimum or (strict and value == minimum):
        kind = "an integer" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigError(f"{_where(path)} = {value!r}: write {kind} {bound}")
    return int(value) if integer else float(value)


def _mapping(value: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(path)} must be an object with keys from {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{_where(path)}: unknown key {unknown[0]!r}: use one of {', '.join(allowed)}")
    return value


def _choice(value: Any, path: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ConfigError(f"{_where(path)} = {value!r}: use one of {', '.join(options)}")
    return str(value)


def _dims(value: Any, path: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value):
        raise ConfigError(f"{_where(path)} = {value!r}: write a shape as a list of positive integers, e.g. [16]")
    return tuple(int(d) for d in value)


def parse_shape(value: Any, path: str) -> ShapeSpec:
    """A shape spec: ``[16]``, ``{"choice": [[16], [64]]}``, ``{"uniform": [lo, hi]}``, ``{"loguniform": ...}``."""
    if value is None:
        return ShapeSpec()
    if isinstance(value, list | tuple):
        return ShapeSpec("fixed", (_dims(value, path),))
    spec = _mapping(value, path, SHAPE_KINDS[1:])
    if len(spec) != 1:
        raise ConfigError(f"{_where(path)}: give exactly one of choice, uniform, loguniform")
    kind, arg = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise ConfigError(f"{_where(path)}.choice: write a non-empty list of shapes, e.g. [[16], [64]]")
        return ShapeSpec("choice", tuple(_dims(s, f"{path}.choice[{i}]") for i, s in enumerate(arg)))
    if not isinstance(arg, list) or len(arg) != 2:
        raise ConfigError(f"{_where(path)}.{kind}: write [lo, hi], e.g. [1, 4096]")
    low = _number(arg[0], f"{path}.{kind}[0]", minimum=1, integer=True)
    high = _number(arg[1], f"{path}.{kind}[1]", minimum=1, integer=True)
    if low > high:
        raise ConfigError(f"{_where(path)}.{kind} = {arg}: lo must not exceed hi")
    return ShapeSpec(kind, (), low, high)


def load_input_data(value: Any, path: str, base: Path | None) -> tuple[dict[str, Any], ...]:
    """perf_analyzer ``--input-data`` JSON (a path or the parsed object) → its ``data`` steps."""
    if isinstance(value, str):
        file = Path(value) if base is None or Path(value).is_absolute() else base / value
        value = read_json(file, f"{_where(path)}: input data", "give a perf_analyzer input-data JSON file")
    steps = value.get("data") if isinstance(value, Mapping) else None
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{_where(path)}: perf_analyzer input data needs a non-empty \"data\" list of steps")
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping) or not step:
            raise ConfigError(f"{_where(path)}.data[{i}]: each step is an object {{input name: values}}")
    return tuple(dict(step) for step in steps)


def _input_pattern(value: Any, path: str, has_input_data: bool) -> InputPattern:
    spec = _mapping(value, path, ("dtype", "shape", "data"))
    dtype = spec.get("dtype")
    if dtype is not None and not (isinstance(dtype, str) and dtype.isupper()):
        raise ConfigError(f"{_where(path)}.dtype = {dtype!r}: write a Triton wire type such as FP32, INT64, BYTES")
    data = spec.get("data", "input_data" if has_input_data else "random")
    if isinstance(data, Mapping):
        data = "input_data"
    _choice(data, f"{path}.data", ("random", "zeros", "input_data"))
    return InputPattern(dtype, parse_shape(spec.get("shape"), f"{path}.shape"), data)


def parse_pattern(name: str, value: Any, base: Path | None = None) -> Pattern:
    """One entry of ``patterns``."""
    path = f"patterns.{name}"
    spec = _mapping(value, path, ("dtype", "shape", "data", "batch_size", "inputs", "stream", "sequence", "shm",
                                  "cache"))
    data = spec.get("data")
    input_data: tuple[dict[str, Any], ...] = ()
    if isinstance(data, Mapping):
        _mapping(data, f"{path}.data", ("input_data",))
        input_data = load_input_data(data.get("input_data"), f"{path}.data.input_data", base)
    default = _input_pattern({k: spec[k] for k in ("dtype", "shape") if k in spec}
                             | {"data": "input_data" if input_data else (data or "random")}, path, bool(input_data))
    inputs = spec.get("inputs", {})
    if not isinstance(inputs, Mapping):
        raise ConfigError(f"{_where(path)}.inputs must map input names to {{dtype, shape, data}}")
    per_input = tuple((str(k), _input_pattern(v, f"{path}.inputs.{k}", bool(input_data))) for k, v in inputs.items())
    if any(p.data == "input_data" for _, p in per_input) and not input_data:
        raise ConfigError(f"{_where(path)}: an input asks for input_data but the pattern has no "
                          "\"data\": {\"input_data\": ...}")
    batch = _number(spec.get("batch_size", 1), f"{path}.batch_size", minimum=1, integer=True)
    stream = parse_stream_spec(spec["stream"], f"{path}.stream") if "stream" in spec else None
    return Pattern(name, batch, default, per_input, input_data, stream,
                   parse_sequence(spec["sequence"], f"{path}.sequence") if "sequence" in spec else None,
                   parse_shm(spec["shm"], f"{path}.shm") if "shm" in spec else None,
                   parse_cache(spec["cache"], f"{path}.cache") if "cache" in spec else None)


def parse_stream_spec(value: Any, path: str) -> StreamSpec:
    """A pattern's ``stream`` section (see the module docstring)."""
    spec = _mapping(value, path, ("cancel_share", "cancel_after_responses", "cancel_after_ms", "responses"))
    share = _number(spec.get("cancel_share", 0.0), f"{path}.cancel_share")
    if share > 1:
        raise ConfigError(f"{_where(path)}.cancel_share = {share:g}: write a share between 0 and 1")
    after_n = _number(spec.get("cancel_after_responses", 0), f"{path}.cancel_after_responses", integer=True)
    after_ms = _number(spec.get("cancel_after_ms", 0.0), f"{path}.cancel_after_ms")
    if share > 0 and not after_n and not after_ms:
        raise ConfigError(f"{_where(path)}: cancel_share {share:g} needs cancel_after_responses or cancel_after_ms "
                          "(when to cancel)")
    return StreamSpec(share, after_n, after_ms, _number(spec.get("responses", 0), f"{path}.responses",
                                                        integer=True))


def parse_stream(value: Any, index: int, patterns: set[str]) -> Stream:
    """One entry of ``streams``."""
    path = f"streams[{index}]"
    spec = _mapping(value, path, ("model", "pattern", "priority", "timeout_us", "weight", "users"))
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{_where(path)}: give the model name, e.g. \"model\": \"probe\"")
    pattern = spec.get("pattern", DEFAULT_PATTERN)
    if not isinstance(pattern, str) or pattern not in patterns:
        raise ConfigError(f"{_where(path)}.pattern = {pattern!r}: define it under 'patterns' "
                          f"(known: {', '.join(sorted(patterns))})")
    return Stream(model, str(pattern),
                  _number(spec.get("priority", 0), f"{path}.priority", integer=True),
                  _number(spec.get("timeout_us", 0), f"{path}.timeout_us", integer=True),
                  _number(spec.get("weight", 1.0), f"{path}.weight", strict=True),
                  _number(spec.get("users", 0), f"{path}.users", integer=True))


def parse_phase(value: Any, index: int, streams: tuple[Stream, ...]) -> Phase:
    """One entry of ``phases``."""
    path = f"phases[{index}]"
    spec = _mapping(value, path, ("name", "duration_s", "rate_per_s", "weights"))
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{_where(path)}: give the phase a name, e.g. \"name\": \"warmup\"")
    duration = _number(spec.get("duration_s"), f"{path}.duration_s", strict=True) \
        if "duration_s" in spec else math.inf
    rate = _number(spec["rate_per_s"], f"{path}.rate_per_s") if "rate_per_s" in spec else None
    weights = spec.get("weights", {})
    if not isinstance(weights, Mapping):
        raise ConfigError(f"{_where(path)}.weights must map stream or model names to weights")
    known = {s.name for s in streams} | {s.model for s in streams}
    for key, weight in weights.items():
        if key not in known:
            raise ConfigError(f"{_where(path)}.weights: no stream or model {key!r} (known: "
                              f"{', '.join(sorted(known))})")
        _number(weight, f"{path}.weights.{key}")
    phase = Phase(name, duration, rate, tuple((str(k), float(v)) for k, v in weights.items()))
    if weights and not any(w > 0 for w in weights.values()):
        raise ConfigError(f"{_where(path)}.weights: give at least one stream a weight > 0")
    return phase


_TOP_KEYS = ("mode", "arrival", "rate_per_s", "backlog", "wait_s", "network_timeout_s", "max_traces_per_s",
             "pool_bodies", "pool_bytes", "seed", "patterns", "streams", "phases")


def parse_scenario(data: Any, *, base: Path | None = None) -> Scenario:
    """A :class:`Scenario` from parsed JSON (the whole object or its ``"traffic"`` section)."""
    if isinstance(data, Mapping) and "traffic" in data:
        data = data["traffic"]
    spec = _mapping(data, "traffic", _TOP_KEYS)
    patterns_spec = spec.get("patterns", {})
    if not isinstance(patterns_spec, Mapping):
        raise ConfigError("scenario patterns must map pattern names to {dtype, shape, batch_size, data}")
    patterns = {DEFAULT_PATTERN: Pattern(DEFAULT_PATTERN)}
    patterns.update({str(k): parse_pattern(str(k), v, base) for k, v in patterns_spec.items()})
    streams_spec = spec.get("streams")
    if not isinstance(streams_spec, list) or not streams_spec:
        raise ConfigError("scenario has no streams: add \"streams\": [{\"model\": \"probe\"}]")
    streams = tuple(parse_stream(v, i, set(patterns)) for i, v in enumerate(streams_spec))
    names = [s.name for s in streams]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"scenario streams: {dup} appears twice: merge them (add their weights)")
    phases_spec = spec.get("phases", [{"name": MAIN_PHASE}])
    if not isinstance(phases_spec, list) or not phases_spec:
        raise ConfigError("scenario phases must be a non-empty list of {name, duration_s, rate_per_s, weights}")
    phases = tuple(parse_phase(v, i, streams) for i, v in enumerate(phases_spec))
    if len({p.name for p in phases}) != len(phases):
        raise ConfigError("scenario phases: phase names must be unique")
    if any(math.isinf(p.duration_s) for p in phases[:-1]):
        raise ConfigError("scenario phases: only the last phase may leave out duration_s")
    wait = spec.get("wait_s", [0.0, 0.0])
    if not isinstance(wait, list) or len(wait) != 2:
        raise ConfigError("scenario wait_s: write [min, max] seconds, e.g. [0, 0.1]")
    wait_s = (_number(wait[0], "wait_s[0]"), _number(wait[1], "wait_s[1]"))
    if wait_s[0] > wait_s[1]:
        raise ConfigError(f"scenario wait_s = {wait}: min must not exceed max")
    mode = _choice(spec.get("mode", "closed"), "mode", MODES)
    pinned = next((i for i, s in enumerate(streams) if s.users), None)
    if mode == "open" and pinned is not None:
        raise ConfigError(f"scenario streams[{pinned}].users: dedicated users need \"mode\": \"closed\" (open loop "
                          "paces by rate_per_s): remove users or switch the mode")
    if mode == "open" and "rate_per_s" not in spec and any(p.rate_per_s is None for p in phases):
        raise ConfigError("open-loop scenario without a rate: set rate_per_s (total arrivals per second)")
    return Scenario(
        streams=streams, patterns=tuple(patterns.values()), phases=phases, mode=mode,
        arrival=_choice(spec.get("arrival", "poisson"), "arrival", ARRIVALS),
        rate_per_s=_number(spec.get("rate_per_s", 10.0), "rate_per_s"),
        backlog=_number(spec.get("backlog", 0), "backlog", integer=True),
        wait_s=wait_s,
        network_timeout_s=_number(spec.get("network_timeout_s", 60.0), "network_timeout_s", strict=True),
        max_traces_per_s=_number(spec.get("max_traces_per_s", 100), "max_traces_per_s", integer=True),
        pool_bodies=_number(spec.get("pool_bodies", 32), "pool_bodies", minimum=1, integer=True),
        pool_bytes=_number(spec.get("pool_bytes", 64 * 1024 * 1024), "pool_bytes", minimum=1, integer=True),
        seed=_number(spec.get("seed", 0), "seed", integer=True),
        raw=_embed_input_data(dict(spec), patterns),
    )


def _embed_input_data(spec: dict[str, Any], patterns: dict[str, Pattern]) -> dict[str, Any]:
    """The raw scenario with input-data file paths replaced by their content (so workers need no files)."""
    raw_patterns = dict(spec.get("patterns", {}))
    for name, pattern in patterns.items():
        if pattern.input_data and isinstance(raw_patterns.get(name), Mapping):
            raw_patterns[name] = dict(raw_patterns[name]) | {"data": {"input_data": {"data": list(pattern.input_data)}}}
    if raw_patterns:
        spec["patterns"] = raw_patterns
    return spec


def load_scenario(path: Path | str) -> Scenario:
    """Read a scenario JSON file (relative input-data paths resolve beside it)."""
    file = Path(path)
    return parse_scenario(read_json(file, "scenario"), base=file.parent)
