"""The zoo model's stateful request paths: per-sequence state and BLS calls (imported by ``zoo_model.py``).

``zoo_model.py`` finds this module beside its real path (every model's ``1/model.py`` is a link to it), so the zoo
keeps one implementation. Parameters (``config.pbtxt`` ``parameters``; all optional):

- ``sequence_state_bytes``: a model with ``sequence_batching`` keeps this many bytes per live sequence (pages
  written, so RSS counts them), keyed by the request's correlation id (uint64 or string). It is allocated on the
  sequence's START, written on every step and released on END.
- ``sequence_idle_reclaim``: ``true`` (healthy) also drops the state of a sequence idle longer than the batcher's
  ``max_sequence_idle_microseconds`` — Triton reclaims such a sequence's slot without telling the model, so only
  the model can free what it kept; ``false`` (the ``seq_state`` defect) frees state on END only, so every
  abandoned sequence's state stays forever.
- ``bls_target``: the model calls this model once per request with its ``INPUT0`` and answers with the target's
  ``OUTPUT0`` (Business Logic Scripting, ``pb_utils.InferenceRequest.exec``).
- ``bls_keep_responses``: ``true`` (the ``bls_keep`` defect) keeps every BLS response object, and with it the
  response's output tensor in the python backend's shared memory; ``false`` (healthy) drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

DEFAULT_IDLE_US = 1_000_000
"""Triton's ``max_sequence_idle_microseconds`` when the config leaves it 0 or out."""


def param(config: dict[str, Any], key: str, default: str = "") -> str:
    """A ``parameters`` string value of the model config."""
    value = config.get("parameters", {}).get(key, {})
    return str(value.get("string_value", default)) if isinstance(value, dict) else default


def _flag(request: Any, name: str) -> bool:
    """A control input (``START``/``END``, INT32 0/1) of the request; absent counts as 0."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return tensor is not None and bool(np.from_dlpack(tensor).any())


class SequenceStates:
    """Per-sequence state keyed by correlation id; see the module docstring for when it is released."""

    def __init__(self, config: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.nbytes = int(param(config, "sequence_state_bytes", "0") or 0)
        self.reclaim_idle = param(config, "sequence_idle_reclaim", "true") == "true"
        idle_us = int(config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 0) or 0)
        self.idle_s = (idle_us or DEFAULT_IDLE_US) / 1e6
        self.clock = clock
        self.states: dict[Any, list[Any]] = {}
        """Correlation id → ``[state buffer, last step (monotonic s)]``."""

    def step(self, request: Any) -> None:
        """Account one request of a sequence: START allocates, each step writes, END releases."""
        now = self.clock()
        if self.reclaim_idle:
            stale = [key for key, (_, last) in self.states.items() if now - last > self.idle_s]
            for key in stale:
                del self.states[key]
        key = request.correlation_id()
        state = self.states.get(key)
        if state is None or _flag(request, "START"):
            state = self.states[key] = [np.ones(max(1, self.nbytes), dtype=np.uint8), now]
        state[0].fill(2)
        state[1] = now
        if _flag(request, "END"):
            del self.states[key]


class BlsCaller:
    """Calls ``bls_target`` with the request's ``INPUT0`` and returns its ``OUTPUT0`` (an ndarray or an error)."""

    def __init__(self, config: dict[str, Any], encode: Callable[[str, np.ndarray], Any]) -> None:
        self.target = param(config, "bls_target")
        self.keep = param(config, "bls_keep_responses") == "true"
        self.encode = encode
        self.kept: list[Any] = []

    def call(self, data: np.ndarray) -> Any:
        """One BLS request to the target; ``pb_utils.TritonError`` when it failed."""
        request = pb_utils.InferenceRequest(model_name=self.target, requested_output_names=["OUTPUT0"],
                                            inputs=[self.encode("INPUT0", data)])
        response = request.exec()
        if response.has_error():
            return pb_utils.TritonError(f"BLS call to {self.target} failed: {response.error().message()}")
        out = np.array(np.from_dlpack(pb_utils.get_output_tensor_by_name(response, "OUTPUT0")), copy=True)
        if self.keep:
            self.kept.append(response)
        return out
