"""Static lint of every ``model_warmup`` sample against the model's inputs (``rmt lint MODEL_REPO``).

Triton runs each warmup sample per instance before the model is READY, and a bad sample fails the load (or, for
``batch_size: 0``, is silently skipped so nothing is warmed). Each rule below mirrors what the server does with a
sample (``TritonModelInstance::GenerateWarmupData`` and request normalisation):

- every input named in the sample is a model input (or a sequence-batching control/state input);
- every required model input is present;
- ``data_type`` equals the input's;
- ``dims`` (no batch dimension) are all positive, have the input's rank and match its fixed dimensions;
- ``batch_size`` is ≥ 1, 1 for a model without batching, and ≤ ``max_batch_size`` otherwise;
- one data source is set; an ``input_data_file`` exists under ``<model>/warmup/`` and holds enough bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from rmt.core.errors import ConfigError
from rmt.core.modelconfig import load_config_pbtxt, triton_dtype

WARMUP_FOLDER = "warmup"


@dataclass(frozen=True)
class Finding:
    """One problem found by the lint: where, what is wrong, how to fix it."""

    model: str
    where: str
    """``sample 'name'`` or ``sample 'name' input 'X'`` or ``config``."""
    problem: str
    fix: str

    def line(self) -> str:
        """One line for the console."""
        return f"{self.model}: {self.where}: {self.problem}: {self.fix}"


def _dims(d: Any) -> str:
    return "[" + ", ".join(str(x) for x in d) + "]"


def _element_bytes(datatype: str) -> int:
    if datatype in ("BYTES", "STRING"):
        return 0
    if datatype == "BF16":
        return 2
    return int(np.dtype(triton_to_np_dtype(datatype)).itemsize)


def lint_sample(model: str, config: Any, sample: Any, model_dir: Path | None = None) -> list[Finding]:
    """Findings of one ``ModelWarmup`` sample of ``config``."""
    out: list[Finding] = []
    where = f"sample {sample.name!r}"
    inputs = {i.name: i for i in config.input}
    extra: set[str] = set()
    if config.HasField("sequence_batching"):
        extra |= {c.name for c in config.sequence_batching.control_input}
        extra |= {s.input_name for s in config.sequence_batching.state}
    mbs = config.max_batch_size
    if sample.batch_size == 0:
        out.append(Finding(model, where, "batch_size is 0, so Triton skips this sample and warms nothing",
                           "set batch_size: 1 (or more)"))
    elif mbs == 0 and sample.batch_size != 1:
        out.append(Finding(model, where, f"batch_size {sample.batch_size} for a model without batching "
                           "(max_batch_size 0)", "set batch_size: 1"))
    elif mbs > 0 and sample.batch_size > mbs:
        out.append(Finding(model, where, f"batch_size {sample.batch_size} exceeds max_batch_size {mbs}",
                           f"set batch_size to at most {mbs}"))
    for name, value in sorted(sample.inputs.items()):
        w = f"{where} input {name!r}"
        spec = inputs.get(name)
        if spec is None:
            if name not in extra:
                out.append(Finding(model, w, "not an input of the model",
                                   f"use one of {', '.join(sorted(inputs)) or '(no inputs)'}"))
            continue
        got, want = triton_dtype(value.data_type), triton_dtype(spec.data_type)
        if got != want:
            out.append(Finding(model, w, f"data_type TYPE_{got} but the input is TYPE_{want}",
                               f"set data_type: TYPE_{want}"))
        dims, cfg = list(value.dims), list(spec.dims)
        if any(d <= 0 for d in dims):
            out.append(Finding(model, w, f"dims {_dims(dims)} leave a dimension unspecified",
                               "give every dimension a positive size (warmup needs a concrete shape)"))
        if len(dims) != len(cfg):
            out.append(Finding(model, w, f"dims {_dims(dims)} have rank {len(dims)} but the input's dims "
                               f"{_dims(cfg)} have rank {len(cfg)}",
                               f"give {len(cfg)} dimensions, without the batch dimension"))
        else:
            bad = [i for i, (d, c) in enumerate(zip(dims, cfg, strict=True)) if c >= 0 and d != c]
            if bad:
                fixed = [c if c >= 0 else max(d, 1) for d, c in zip(dims, cfg, strict=True)]
                out.append(Finding(model, w, f"dims {_dims(dims)} do not match the input's dims {_dims(cfg)} "
                                   f"at position {bad[0]}", f"use dims: {_dims(fixed)}"))
        source = value.WhichOneof("input_data_type")
        if source is None:
            out.append(Finding(model, w, "no data source", "set zero_data: true, random_data: true or "
                               "input_data_file"))
        elif source == "input_data_file" and model_dir is not None:
            out += _lint_file(model, w, model_dir / WARMUP_FOLDER / value.input_data_file, dims, got)
    missing = sorted(n for n, i in inputs.items() if not i.optional and n not in sample.inputs)
    if missing:
        out.append(Finding(model, where, f"required input {missing[0]!r} is missing",
                           f"add inputs {{ key: {missing[0]!r} value {{ ... }} }} to the sample"))
    return out


def _lint_file(model: str, where: str, path: Path, dims: list[int], datatype: str) -> list[Finding]:
    if not path.is_file():
        return [Finding(model, where, f"input_data_file {path.name!r} not found in {path.parent}",
                        f"put the file in {path.parent}, or fix the name")]
    need = int(np.prod(dims)) * _element_bytes(datatype) if dims and all(d > 0 for d in dims) else 0
    have = path.stat().st_size
    if need and have < need:
        return [Finding(model, where, f"input_data_file {path.name!r} has {have} bytes, the sample needs {need}",
                        "write the raw tensor bytes (row-major, the input's data type) into the file")]
    return []


def lint_model(model_dir: Path) -> list[Finding]:
    """Findings of every warmup sample of the model in ``model_dir`` (a config that does not parse is one)."""
    name = model_dir.name
    try:
        config: Any = load_config_pbtxt(model_dir / "config.pbtxt")
    except ConfigError as exc:
        return [Finding(name, "config", str(exc), "fix the protobuf text so tritonserver can read it")]
    if config.name and config.name != name:
        return [Finding(name, "config", f"name {config.name!r} differs from the folder name",
                        f"set name: {name!r} or rename the folder")]
    out: list[Finding] = []
    for sample in config.model_warmup:
        out += lint_sample(name, config, sample, model_dir)
    return out


def lint_repository(repo: Path) -> tuple[list[str], list[Finding]]:
    """Lint every model of a model repository: (models linted, findings)."""
    if not repo.is_dir():
        raise ConfigError(f"model repository {repo} does not exist: pass the folder that holds the models")
    models = sorted(p.parent for p in repo.glob("*/config.pbtxt"))
    if not models:
        raise ConfigError(f"no model in {repo}: pass a model repository (folders with a config.pbtxt)")
    findings: list[Finding] = []
    for m in models:
        findings += lint_model(m)
    return [m.name for m in models], findings

