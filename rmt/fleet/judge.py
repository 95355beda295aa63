"""Per-server verdicts and the fleet summary: rmt's checks on what a Prometheus server holds.

:func:`judge_fleet` reads one time range (:mod:`rmt.fleet.prometheus`), cuts it per server and counter epoch
(:mod:`rmt.fleet.adapter`) and runs the checks of a spec (:func:`rmt.check.spec.build_checks`, the same objects
``rmt check`` runs) on each. A server *leaks* when a memory verdict (``leak``, ``pool``, ``leak_attribution``)
fails on a measured value, is *unhealthy* when another verdict does, *healthy* when nothing failed and at least one
memory series was judged, and *not judged* otherwise (nothing to judge, or a check the spec asks for found no
evidence) — too little data is said, never passed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rmt.check.api import run_checks
from rmt.check.base import FAIL, PASS, Verdict
from rmt.check.data import RunInputs
from rmt.check.lifecycle_checks import CrossDeviceCheck
from rmt.check.report import counts, verdicts_document
from rmt.check.sched_checks import StarvationCheck
from rmt.check.spec import Spec, build_checks
from rmt.fleet.adapter import SELECTOR, SERVER_LABELS, Epoch, epochs, group_servers
from rmt.fleet.prometheus import PrometheusClient, plan_step

MEMORY_CHECKS = ("leak", "pool", "leak_attribution")
LEAKING, UNHEALTHY, HEALTHY, NOT_JUDGED = "leaking", "unhealthy", "healthy", "not judged"


@dataclass
class ServerVerdicts:
    """Every verdict on one server (all its epochs) and what it adds up to."""

    server: str
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    epochs: int = 1

    @property
    def state(self) -> str:
        """``leaking``, ``unhealthy``, ``healthy`` or ``not judged`` (see the module docstring)."""
        failed = [v for v in self.verdicts if v.status == FAIL]
        judged = [v for v in failed if v.measured is not None]  # the others: a required check without evidence
        if any(v.check in MEMORY_CHECKS for v in judged):
            return LEAKING
        if judged:
            return UNHEALTHY
        if not failed and any(v.check in MEMORY_CHECKS and v.status == PASS for v in self.verdicts):
            return HEALTHY
        return NOT_JUDGED

    def reason(self) -> str:
        """One line: the failing subjects, or what was judged."""
        failed = [v for v in self.verdicts if v.status == FAIL and v.measured is not None]
        if failed:
            return "; ".join(f"{v.check} FAIL on {v.subject}" for v in failed[:3]) + (
                f" (+{len(failed) - 3} more)" if len(failed) > 3 else "")
        c = counts(self.verdicts)
        if self.state == HEALTHY:
            return f"{c['pass']} verdicts passed, {c['skip']} skipped"
        missing = [f"{v.check}: {v.explanation}" for v in self.verdicts if v.status == FAIL][:1]
        return "; ".join(self.notes[:1] + missing) or "no memory series with completed requests to judge"


@dataclass
class FleetResult:
    """The verdicts of every server of the range."""

    prometheus: str
    start_s: float
    end_s: float
    step_s: float
    servers: list[ServerVerdicts]

    def by_state(self, state: str) -> list[str]:
        """The servers in ``state``."""
        return [s.server for s in self.servers if s.state == state]

    def summary(self) -> str:
        """The fleet summary: one line per server, then the counts."""
        width = max((len(s.server) for s in self.servers), default=6)
        lines = [f"{s.server.ljust(width)}  {s.state.upper():<10}  {s.reason()}" for s in self.servers]
        lines.append(", ".join(f"{len(self.by_state(st))} {st}" for st in (LEAKING, UNHEALTHY, HEALTHY, NOT_JUDGED))
                     + f" of {len(self.servers)} servers")
        return "\n".join(lines)

    def document(self, spec: Spec | None = None) -> dict[str, Any]:
        """``fleet.json``: the range, the summary and each server's ``verdicts.json`` document."""
        return {"prometheus": self.prometheus, "start_s": self.start_s, "end_s": self.end_s, "step_s": self.step_s,
                "summary": {st: self.by_state(st) for st in (LEAKING, UNHEALTHY, HEALTHY, NOT_JUDGED)},
                "servers": {s.server: {"state": s.state, "epochs": s.epochs, "notes": s.notes,
                                       **verdicts_document(s.verdicts, run_dir=self.prometheus, spec=spec)}
                            for s in self.servers}}

    def write(self, out_dir: Path, spec: Spec | None = None) -> Path:
        """Write ``fleet.json`` into ``out_dir``; returns its path."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "fleet.json"
        path.write_text(json.dumps(self.document(spec), indent=2) + "\n")
        return path


def judge_epochs(server: str, parts: Sequence[Epoch], spec: Spec | None, step_s: float) -> ServerVerdicts:
    """Run the checks of ``spec`` on each epoch of one server; subjects carry ``@epoch k`` when there are several."""
    out = ServerVerdicts(server, epochs=max(1, len(parts)))
    for part in parts:
        checks = build_checks(spec)
        for check in checks:  # fleet windows are one Prometheus step long, not one second
            if isinstance(check, StarvationCheck) and "window" not in (spec or {}).get(check.name, {}):
                check.values["window"] = step_s
        verdicts = [*run_checks([c for c in checks if not isinstance(c, CrossDeviceCheck)], part.inputs),
                    *(v for c in checks if isinstance(c, CrossDeviceCheck) for v in cross_device(c, part.inputs))]
        if len(parts) > 1:
            verdicts = [replace(v, subject=f"{v.subject} @epoch {part.index}") for v in verdicts]
        out.verdicts += verdicts
        out.notes += part.inputs.notes
    return out


def cross_device(check: CrossDeviceCheck, inputs: RunInputs) -> list[Verdict]:
    """The cross-device check where executions were traced; on a server with several GPUs and no traces (what
    Prometheus holds), an undecided verdict that says why, instead of a missing-evidence skip or failure."""
    devices = sorted({m.device for m in inputs.memory if m.device and m.device.startswith("gpu=")}
                     | {d for d in inputs.free_memory if d.startswith("gpu=")})
    if inputs.traces or len(devices) < 2:
        return check.run(inputs)
    return [check.cannot_judge(", ".join(devices), f"{len(devices)} GPUs, but Prometheus holds each one's memory "
                               "and utilization averaged over a scrape, not executions: whether one device waits "
                               "for another needs per-execution traces (rmt run with probe-style models)")]


def judge_fleet(client: PrometheusClient, start_s: float, end_s: float, *, step_s: float = 1.0,
                spec: Spec | None = None, server_labels: Sequence[str] = SERVER_LABELS,
                base: RunInputs | None = None) -> FleetResult:
    """Read ``[start_s, end_s]`` from Prometheus and judge every server found."""
    step = plan_step(start_s, end_s, step_s)
    matrix = client.query_range(SELECTOR, start_s, end_s, step)
    servers = group_servers(matrix, server_labels)
    judged = [judge_epochs(name, epochs(data, step, base=base), spec, step) for name, data in servers.items()]
    return FleetResult(client.base_url, start_s, end_s, step, judged)
