"""Triton model configurations as the protobuf ``ModelConfig`` that ships in tritonclient, and inputs built from them.

Sources: a ``config.pbtxt`` on disk (:func:`load_config_pbtxt`) or a live server's ``v2/models/<m>/config`` JSON
(:func:`config_from_json`). :func:`example_inputs` makes a request's arrays from a config alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import triton_to_np_dtype

from rmt.core.errors import ConfigError

ModelConfig = mc.ModelConfig


def load_config_pbtxt(path: Path) -> Any:
    """Parse a ``config.pbtxt``; ConfigError names the file and the line on a syntax error."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise ConfigError(f"cannot read model config {path}: {exc}: fix the file (protobuf text format)") from exc


def config_from_json(data: dict[str, Any]) -> Any:
    """A server's JSON model config (``GET v2/models/<m>/config``) as ``ModelConfig``."""
    return json_format.ParseDict(data, mc.ModelConfig(), ignore_unknown_fields=True)


def triton_dtype(data_type: int) -> str:
    """``TYPE_FP32`` (enum) → ``FP32`` (the wire name used by the inference protocol)."""
    return str(mc.DataType.Name(data_type)).removeprefix("TYPE_")


@dataclass(frozen=True)
class InputSpec:
    """One model input as the inference protocol sees it."""

    name: str
    datatype: str
    """Wire name, e.g. ``FP32``."""
    dims: tuple[int, ...]
    """Configured dims without the batch dimension; -1 is variable."""
    optional: bool
    batched: bool
    """True when the model has ``max_batch_size > 0`` (the request shape gets a leading batch dimension)."""

    @property
    def np_dtype(self) -> Any:
        """The numpy dtype of this input."""
        return triton_to_np_dtype(self.datatype)

    def shape(self, batch: int = 1, free_dim: int = 16) -> list[int]:
        """A request shape: variable dims become ``free_dim``, plus ``batch`` first when batched."""
        dims = [free_dim if d < 0 else d for d in self.dims]
        return [batch, *dims] if self.batched else dims


def input_specs(config: Any) -> list[InputSpec]:
    """The inputs of a ``ModelConfig``."""
    batched = config.max_batch_size > 0
    return [InputSpec(i.name, triton_dtype(i.data_type), tuple(i.dims), i.optional, batched) for i in config.input]


def example_inputs(config: Any, *, batch: int = 1, free_dim: int = 16,
                   rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Arrays for every required input: uniform [0, 1) for numbers, ``b"rmt"`` for BYTES, random bools."""
    rng = rng or np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for spec in input_specs(config):
        if spec.optional:
            continue
        shape = spec.shape(batch, free_dim)
        if spec.datatype == "BYTES":
            arrays[spec.name] = np.full(shape, b"rmt", dtype=np.object_)
        elif spec.datatype == "BOOL":
            arrays[spec.name] = rng.random(shape) < 0.5
        else:
            arrays[spec.name] = (rng.random(shape) * 100).astype(spec.np_dtype)
    return arrays


# -- scheduling facts a traffic generator must respect (added for rmt.load) -----------------------------------------
@dataclass(frozen=True)
class QueuePolicy:
    """The dynamic batcher's queue policy that applies to one priority level of a model."""

    timeout_action: str
    """``REJECT`` or ``DELAY``."""
    default_timeout_us: int
    """0: queued requests never time out and a request's ``timeout`` is ignored (it may only shorten a default)."""
    allow_timeout_override: bool
    max_queue_size: int
    """0: unbounded."""

    @property
    def honours_request_timeout(self) -> bool:
        """Whether a request's ``timeout`` parameter takes effect (an override may only shorten a nonzero default)."""
        return self.allow_timeout_override and self.default_timeout_us > 0


def priority_levels(config: Any) -> int:
    """``dynamic_batching.priority_levels`` (0: the model has no priority levels)."""
    return int(config.dynamic_batching.priority_levels) if config.HasField("dynamic_batching") else 0


def queue_policy(config: Any, priority: int = 0) -> QueuePolicy | None:
    """The queue policy a request of ``priority`` (0: the default level) meets; ``None`` without a dynamic batcher."""
    if not config.HasField("dynamic_batching"):
        return None
    batching = config.dynamic_batching
    level = priority or int(batching.default_priority_level)
    policy = batching.priority_queue_policy.get(level, batching.default_queue_policy)
    return QueuePolicy(str(mc.ModelQueuePolicy.TimeoutAction.Name(policy.timeout_action)),
                       int(policy.default_timeout_microseconds), bool(policy.allow_timeout_override),
                       int(policy.max_queue_size))


def output_specs(config: Any) -> list[InputSpec]:
    """The outputs of a ``ModelConfig`` (same shape description as inputs; ``optional`` is always False)."""
    batched = config.max_batch_size > 0
    return [InputSpec(o.name, triton_dtype(o.data_type), tuple(o.dims), False, batched) for o in config.output]
