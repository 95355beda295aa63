"""The library entry point: judge a run directory the way ``rmt check`` does, without the command line.

``rmt run`` (and any other driver) calls :func:`evaluate` after the load ends::

    from rmt.check.api import evaluate
    result = evaluate(run_dir, 'leak.max_growth = "1MiB/10k"')     # or a mapping, or None for the defaults
    result.passed, result.verdicts, result.write()                 # verdicts.json + junit.xml

Precedence of thresholds: ``spec`` > the run's scenario ``checks`` > ``file_spec`` > each check's defaults.
Bad specs raise :class:`rmt.core.errors.ConfigError` (one line naming the fix); nothing here exits the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmt.check.base import Check, Verdict
from rmt.check.completeness import NAME as COMPLETENESS
from rmt.check.completeness import describe, mark_incomplete
from rmt.check.data import RunInputs
from rmt.check.inputs import load_inputs, scenario_checks
from rmt.check.report import counts, write_outputs
from rmt.check.spec import Spec, build_checks, merge_specs, parse_spec, spec_from_mapping
from rmt.core.errors import CheckFailed, RunIncomplete
from rmt.core.rundir import RunDir, reading


@dataclass
class CheckResult:
    """Every verdict of one evaluation, with what was judged and how."""

    run_dir: Path
    spec: Spec
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    """What the adapter could not read (missing files, unreadable configs)."""
    losses: list[dict[str, Any]] = field(default_factory=list)
    """What the run lost (manifest ``losses``); its verdicts are marked, and it is never a pass."""

    @property
    def passed(self) -> bool:
        """No verdict failed."""
        return counts(self.verdicts)["fail"] == 0

    @property
    def failed(self) -> list[Verdict]:
        """The failing verdicts."""
        return [v for v in self.verdicts if v.failed]

    @property
    def judged_failed(self) -> list[Verdict]:
        """The failing verdicts other than completeness (what the run lost is :attr:`losses`)."""
        return [v for v in self.failed if v.check != COMPLETENESS]

    def raise_for_outcome(self, where: Path | str) -> None:
        """CheckFailed (exit 3) when a verdict failed; else RunIncomplete (exit 4) when the run lost data."""
        failed = self.judged_failed
        if failed:
            raise CheckFailed(f"{len(failed)} of {len(self.verdicts)} verdicts failed (see the table above and "
                              f"{where})")
        if self.losses:
            raise RunIncomplete(f"the run is incomplete ({describe(self.losses[0])}): its verdicts rest on partial "
                                f"data; rerun it (see the completeness rows and {where})")

    def write(self, out_dir: Path | None = None) -> tuple[Path, Path]:
        """Write ``verdicts.json`` and ``junit.xml`` (into the run directory by default)."""
        return write_outputs(self.verdicts, out_dir or self.run_dir, run_dir=str(self.run_dir), spec=self.spec)


def as_spec(spec: str | Mapping[str, Any] | None, origin: str) -> Spec:
    """A spec from the command-line grammar, a scenario-style mapping, or None (no overrides)."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        return parse_spec(spec, origin)
    data = dict(spec)
    only = data.pop("_only", None)  # an already parsed Spec passes through unchanged
    out = spec_from_mapping(data, origin)
    if isinstance(only, Mapping):
        out["_only"] = dict(only)
    return out


def run_checks(checks: list[Check], inputs: RunInputs) -> list[Verdict]:
    """Every verdict of every check (all are evaluated, whatever fails)."""
    verdicts: list[Verdict] = []
    for check in checks:
        verdicts += check.run(inputs)
    return verdicts


def evaluate(run_dir: Path | str, spec: str | Mapping[str, Any] | None = None, *,
             file_spec: str | Mapping[str, Any] | None = None) -> CheckResult:
    """Judge ``run_dir`` offline: read it, build the checks of the merged spec, evaluate them all."""
    run = RunDir(run_dir, create=False).require_run()
    with reading(run.path):
        merged = merge_specs(as_spec(file_spec, "checks file"),
                             spec_from_mapping(scenario_checks(run.manifest()), origin=f"{run_dir}/manifest.json"),
                             as_spec(spec, "spec"))
    checks = build_checks(merged)
    with reading(run.path):
        inputs = load_inputs(run)
        verdicts = run_checks(checks, inputs)
    mark_incomplete(verdicts, inputs.losses)
    return CheckResult(Path(run_dir), merged, verdicts, list(inputs.notes), list(inputs.losses))
