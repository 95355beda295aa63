"""The one adapter from a run directory (:class:`rmt.rundir.RunDir`) to the checkers' plain inputs.

Everything else in :mod:`checkers` is a pure function of :class:`~checkers.data.RunInputs`; this module alone knows
the files. Read so far: ``manifest.json`` (server options → rate limiter on/off and ``--rate-limit-resource`` flags;
the model repository → per-instance rate-limiter needs and weights; the scenario's ``checks`` spec).

PENDING: memory series (``collectors``' ``series.jsonl``/``samples.jsonl``), request windows and probe traces
(``rmt_users``) — their formats are not committed yet; until they are, those inputs stay empty and the checks that
need them report *skip* (or *fail* when asked for explicitly), with a note saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkers.data import RunInputs
from checkers.ratelimit import repository_limits
from rmt.errors import ConfigError
from rmt.rundir import RunDir


def server_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """The server options recorded in the manifest (``server.options``), or {}."""
    server = manifest.get("server") or {}
    options = server.get("options") if isinstance(server, dict) else None
    return options if isinstance(options, dict) else {}


def scenario_checks(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``checks`` mapping of the run's scenario (``scenario.checks`` or top-level ``checks``), or {}."""
    scenario = manifest.get("scenario")
    if isinstance(scenario, dict) and isinstance(scenario.get("checks"), dict):
        return dict(scenario["checks"])
    checks = manifest.get("checks")
    return dict(checks) if isinstance(checks, dict) else {}


def load_inputs(run: RunDir) -> RunInputs:
    """Read a run directory into :class:`RunInputs`; what cannot be read is noted in ``notes``, never guessed."""
    manifest = run.manifest()
    inputs = RunInputs()
    if not manifest:
        inputs.notes.append(f"no manifest.json in {run.path}: server options and model configs unknown")
    options = server_options(manifest)
    flags = [str(f) for f in options.get("rate_limit_resources") or []]
    inputs.rate_limit_flags = flags
    inputs.rate_limiter_on = options.get("rate_limit") == "execution_count" or (
        bool(flags) and options.get("rate_limit") != "off")
    repo = options.get("model_repository")
    if repo:
        try:
            inputs.models = repository_limits(Path(repo))
        except ConfigError as exc:
            inputs.notes.append(f"model configs not read: {exc}")
    inputs.notes.append("memory series, request windows and probe traces: reader pending (formats not committed)")
    return inputs
