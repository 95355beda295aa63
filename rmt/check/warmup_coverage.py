"""Static warmup coverage (``rmt lint MODEL_REPO --coverage [--scenario FILE]``): shapes that matter vs warmup.

A warmup that runs is not a warmup that covers: a model that specialises per shape (CUDA graphs, TensorRT profiles,
JIT autotuning) is warm only for the shapes its ``model_warmup`` samples exercise. For every model that declares a
warmup (or turns CUDA graphs on), this lint lists the *combinations that matter* and reports each one no sample
exercises:

- ``optimization.cuda.graph_spec`` entries when ``optimization.cuda.graphs`` is on: ``batch_size`` and each input's
  ``dim`` (a graph is captured per exact shape);
- with a ``dynamic_batching`` block: every ``preferred_batch_size`` and ``max_batch_size`` (batches the batcher forms;
  any dims);
- with ``--scenario FILE`` (an ``rmt.load`` scenario): each pattern a stream sends to the model — its
  ``batch_size`` with the fixed (or each ``choice``) shape of every input; inputs with drawn sizes
  (``uniform``/``loguniform``) or the config's own shape count by batch size only.

A combination is covered by a sample with the same batch size (1 for a model without batching) whose dims equal the
combination's for every input the combination names. Triton runs a sample of ``batch_size`` B as B one-row
requests in one execution, so the backend sees the same rows as a B-row request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmt.check.lint import Finding, _dims
from rmt.core.errors import ConfigError
from rmt.core.modelconfig import load_config_pbtxt, triton_dtype
from rmt.core.scenario import load_scenario

Dims = tuple[tuple[str, tuple[int, ...]], ...]
"""Input name → dims (no batch dimension), sorted by name; empty: any dims."""


@dataclass(frozen=True)
class Combination:
    """A batch size and input shapes a model will execute, with why it matters."""

    batch: int
    dims: Dims
    sources: tuple[str, ...]

    def text(self) -> str:
        """``batch 4 x INPUT0 [16]`` (or ``batch 4 (any dims)``)."""
        shapes = ", ".join(f"{name} {_dims(d)}" for name, d in self.dims)
        return f"batch {self.batch} x {shapes}" if shapes else f"batch {self.batch} (any dims)"


def _batch(config: Any, batch: int) -> int:
    return max(1, batch) if config.max_batch_size > 0 else 1


def config_combinations(config: Any) -> list[Combination]:
    """The combinations a config alone makes matter: CUDA graph specs and the dynamic batcher's batch sizes."""
    out: list[Combination] = []
    cuda = config.optimization.cuda
    if cuda.graphs:
        for spec in cuda.graph_spec:
            dims = tuple(sorted((name, tuple(int(d) for d in shape.dim)) for name, shape in spec.input.items()))
            out.append(Combination(_batch(config, spec.batch_size), dims, ("graph_spec",)))
    if config.HasField("dynamic_batching") and config.max_batch_size > 0:
        for size in config.dynamic_batching.preferred_batch_size:
            out.append(Combination(int(size), (), ("preferred_batch_size",)))
        out.append(Combination(int(config.max_batch_size), (), ("max_batch_size",)))
    return out


def scenario_combinations(config: Any, model: str, scenario: Any) -> list[Combination]:
    """The combinations the streams of ``scenario`` (a parsed ``rmt.load`` Scenario) send to ``model``."""
    patterns = {p.name: p for p in scenario.patterns}
    out: list[Combination] = []
    for stream in scenario.streams:
        pattern = patterns.get(stream.pattern)
        if stream.model != model or pattern is None:
            continue
        choices: list[Dims] = [()]
        for spec in config.input:
            shape = pattern.for_input(spec.name).shape
            if shape.kind not in ("fixed", "choice") or not shape.shapes:
                continue  # drawn sizes or the config's own shape: judged by batch size only
            choices = [(*c, (spec.name, tuple(s))) for c in choices for s in shape.shapes]
        for dims in choices:
            out.append(Combination(_batch(config, pattern.batch_size), tuple(sorted(dims)),
                                   (f"scenario pattern {pattern.name!r}",)))
    return out


def _merge(combos: list[Combination]) -> list[Combination]:
    by_key: dict[tuple[int, Dims], list[str]] = {}
    for c in combos:
        sources = by_key.setdefault((c.batch, c.dims), [])
        sources += [s for s in c.sources if s not in sources]
    return [Combination(b, d, tuple(s)) for (b, d), s in sorted(by_key.items())]


def covers(config: Any, sample: Any, combo: Combination) -> bool:
    """Whether warmup ``sample`` exercises ``combo`` (same batch size; same dims for every input it names)."""
    if _batch(config, int(sample.batch_size)) != combo.batch or sample.batch_size == 0:
        return False
    for name, dims in combo.dims:
        given = sample.inputs.get(name)
        if given is None or tuple(int(d) for d in given.dims) != dims:
            return False
    return True


def _fix(config: Any, combo: Combination) -> str:
    named = dict(combo.dims)
    first = config.model_warmup[0] if len(config.model_warmup) else None
    parts = []
    for spec in config.input:
        if spec.optional:
            continue
        if spec.name in named:
            dims = named[spec.name]
        elif first is not None and spec.name in first.inputs:
            dims = tuple(first.inputs[spec.name].dims)
        else:
            dims = tuple(d if d > 0 else 1 for d in spec.dims)
        parts.append(f'inputs {{ key: "{spec.name}" value {{ data_type: TYPE_{triton_dtype(spec.data_type)} '
                     f"dims: {_dims(dims)} zero_data: true }} }}")
    return (f'add a model_warmup sample {{ name: "batch{combo.batch}" batch_size: {combo.batch} '
            + " ".join(parts) + " }")


def coverage_findings(model: str, config: Any, scenario: Any = None) -> list[Finding]:
    """One finding per combination that matters for ``model`` and no warmup sample exercises."""
    has_graphs = bool(config.optimization.cuda.graphs)
    if not len(config.model_warmup) and not has_graphs:
        return []  # no warmup declared: nothing claims to be warm (rmt check's warmup judges the cold start)
    combos = config_combinations(config)
    if scenario is not None:
        combos += scenario_combinations(config, model, scenario)
    samples = list(config.model_warmup)
    warmed = "; ".join(f"{s.name!r} batch {s.batch_size}" + "".join(
        f" {n} {_dims(v.dims)}" for n, v in sorted(s.inputs.items())) for s in samples) or "none"
    out = []
    for combo in _merge(combos):
        if not any(covers(config, s, combo) for s in samples):
            out.append(Finding(model, "warmup coverage",
                               f"{combo.text()} ({', '.join(combo.sources)}) is not exercised by any model_warmup "
                               f"sample (warmed: {warmed})", _fix(config, combo)))
    return out


def load_scenario_file(path: Path) -> Any:
    """A traffic scenario file, parsed by the traffic model's own parser (ConfigError names the problem and the fix)."""
    if not path.is_file():
        raise ConfigError(f"scenario {path} does not exist: pass a scenario JSON file (the rmt.core.scenario format)")
    return load_scenario(path)


def coverage_repository(repo: Path, scenario: Any = None) -> list[Finding]:
    """Coverage findings of every model of a repository (configs that do not parse are left to the sample lint)."""
    out: list[Finding] = []
    for cfg in sorted(repo.glob("*/config.pbtxt")):
        try:
            config = load_config_pbtxt(cfg)
        except ConfigError:
            continue  # lint_repository reports it
        out += coverage_findings(cfg.parent.name, config, scenario)
    return out
