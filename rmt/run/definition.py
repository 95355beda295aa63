"""Scenario definitions: ``rmt/scenarios/<name>.json`` read into a :class:`ScenarioDef` (no Locust import).

A definition file is a traffic scenario (the :mod:`rmt.core.scenario` format, under ``"traffic"``) plus::

    {"description": "one line for the catalogue",
     "traffic": {...},
     "checks": {"only": "leak", "leak": {"max_growth": "64KiB/request"}},
     "run": {"users": 8, "duration_s": 20,
             "server": {"rate_limit_resources": ["R1:2"], "model_control_mode": "explicit", "load_models": []},
             "actions": [{"kind": "load", "models": ["cold_start"]}],
             "expect": [{"check": "leak", "subject": "*model=leak_host,*", "status": "fail", "why": "..."}],
             "requires_gpus": 0}}

``checks`` is the checkers' spec mapping (see :mod:`rmt.check.spec`); ``run.server`` names the
:class:`~rmt.server.ServerOptions` fields the scenario needs from an embedded server; ``run.actions`` are
model-control steps run by the Locust master (:mod:`rmt.run.control`); ``run.expect`` marks the verdicts that are
planted defects caught on purpose (every other verdict is expected to pass). ``campaign.json`` instead lists
``"scenarios"`` with per-scenario ``duration_s``.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmt.core.errors import ConfigError
from rmt.core.jsonfile import read_json
from rmt.core.resources import SCENARIOS
from rmt.core.scenario import parse_scenario

#: The folder of the ready scenarios (package data: ``rmt/scenarios``).
LOCUSTFILES = SCENARIOS
#: The locustfile that composes any definition handed to it with ``--rmt-definition`` (or ``LOCUST_RMT_DEFINITION``):
#: a user's definition with no locustfile of its own beside it runs through this one.
ANY_LOCUSTFILE = SCENARIOS / "any.py"
CAMPAIGN = "campaign"
_SERVER_KEYS = ("rate_limit", "rate_limit_resources", "model_control_mode", "load_models", "metrics_interval_ms",
                "log_verbose", "extra_args", "cache_size_bytes")
_RUN_KEYS = ("users", "spawn_rate", "duration_s", "server", "actions", "expect", "requires_gpus", "scenarios")


@dataclass(frozen=True)
class Expectation:
    """A verdict the scenario expects not to pass: a planted defect caught on purpose."""

    check: str
    subject: str
    """Glob on the verdict's subject."""
    status: str
    """``fail`` (default), or alternatives such as ``fail|undecided``."""
    why: str = ""

    def matches(self, check: str, subject: str) -> bool:
        """Whether this expectation covers the verdict ``check`` on ``subject``."""
        return check == self.check and fnmatch.fnmatchcase(subject, self.subject)


@dataclass(frozen=True)
class ScenarioDef:
    """One ready scenario (or the campaign, with :attr:`scenarios`)."""

    name: str
    description: str
    raw: dict[str, Any]
    """The whole file as parsed JSON (the locustfile passes it to the traffic coordinator)."""
    path: Path | None = None
    """The definition file it was read from (None: built in memory)."""
    users: int = 8
    spawn_rate: float = 100.0
    duration_s: float = 20.0
    server: dict[str, Any] = field(default_factory=dict)
    actions: tuple[dict[str, Any], ...] = ()
    expect: tuple[Expectation, ...] = ()
    requires_gpus: int = 0
    scenarios: tuple[tuple[str, float], ...] = ()
    """Campaign only: (scenario name, duration_s) in order."""

    @property
    def locustfile(self) -> Path:
        """The locustfile that composes this scenario: the one beside its definition, else the ready scenario's of
        the same name, else :data:`ANY_LOCUSTFILE`."""
        if self.path is not None and self.path.with_suffix(".py").is_file():
            return self.path.with_suffix(".py")
        own = LOCUSTFILES / f"{self.name}.py"  # a ready scenario's composition (the capacity sweep's shape, say)
        return own if own.is_file() else ANY_LOCUSTFILE

    @property
    def checks(self) -> dict[str, Any]:
        """The checks mapping of the scenario."""
        return dict(self.raw.get("checks") or {})

    def expectation(self, check: str, subject: str) -> Expectation | None:
        """The expectation covering a verdict, or None (expected to pass)."""
        return next((e for e in self.expect if e.matches(check, subject)), None)


def available() -> list[str]:
    """Names of the ready scenarios (``rmt/scenarios/*.json``)."""
    return sorted(p.stem for p in LOCUSTFILES.glob("*.json"))


def _expectations(items: Any, origin: str) -> tuple[Expectation, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{origin}: run.expect must be a list of {{check, subject, status, why}}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not {"check", "subject"} <= set(item):
            raise ConfigError(f"{origin}: run.expect[{i}] needs check and subject (a glob)")
        out.append(Expectation(str(item["check"]), str(item["subject"]), str(item.get("status", "fail")),
                               str(item.get("why", ""))))
    return tuple(out)


def _run_number(run: dict[str, Any], key: str, default: float, origin: str, *, integer: bool = False) -> Any:
    """``run[key]`` as a non-negative number (an int when ``integer``); ConfigError naming the key otherwise."""
    value = run.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{origin}: run.{key} = {value!r}: write {kind} >= 0, e.g. {default:g}")
    return int(value) if integer else float(value)


def _mapping_of(data: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: {key} must be a JSON object, e.g. \"{key}\": {{}}")
    return value


def _scenario_list(items: Any, origin: str) -> tuple[tuple[str, float], ...]:
    """A campaign's ``run.scenarios``: names, or {name, duration_s} objects."""
    if not isinstance(items, list):
        raise ConfigError(f"{origin}: run.scenarios must be a list of scenario names or {{name, duration_s}}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            out.append((item, 10.0))
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
            out.append((item["name"], _run_number(item, "duration_s", 10, f"{origin}: run.scenarios[{i}]")))
        else:
            raise ConfigError(f"{origin}: run.scenarios[{i}] = {item!r}: write a scenario name or "
                              "{\"name\": ..., \"duration_s\": ...}")
    return tuple(out)


def parse_definition(name: str, data: Any, origin: str, path: Path | None = None) -> ScenarioDef:
    """A :class:`ScenarioDef` from a parsed definition file; ConfigError names the key and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a scenario definition is a JSON object with traffic, checks and run")
    run = _mapping_of(data, "run", origin)
    unknown = sorted(set(run) - set(_RUN_KEYS))
    if unknown:
        raise ConfigError(f"{origin}: unknown run key {unknown[0]!r}: use one of {', '.join(_RUN_KEYS)}")
    server = dict(_mapping_of(run, "server", f"{origin}: run"))
    bad = sorted(set(server) - set(_SERVER_KEYS))
    if bad:
        raise ConfigError(f"{origin}: unknown run.server key {bad[0]!r}: use one of {', '.join(_SERVER_KEYS)}")
    scenarios = _scenario_list(run.get("scenarios", []), origin)
    if "traffic" not in data and not scenarios:
        raise ConfigError(f"{origin}: no traffic section: add \"traffic\": {{\"streams\": [...]}}")
    _mapping_of(data, "checks", origin)
    actions = run.get("actions", [])
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise ConfigError(f"{origin}: run.actions must be a list of objects, e.g. [{{\"kind\": \"load\", "
                          "\"models\": [\"probe\"]}}]")
    if "traffic" in data:
        parse_scenario(data["traffic"], base=path.parent if path is not None else None)
    return ScenarioDef(
        name=str(data.get("name") or name), description=str(data.get("description", "")), raw=data, path=path,
        users=_run_number(run, "users", 8, origin, integer=True),
        spawn_rate=_run_number(run, "spawn_rate", 100, origin),
        duration_s=_run_number(run, "duration_s", 20, origin), server=server,
        actions=tuple(dict(a) for a in actions),
        expect=_expectations(run.get("expect", []), origin),
        requires_gpus=_run_number(run, "requires_gpus", 0, origin, integer=True),
        scenarios=scenarios)


def load_definition(name_or_path: str | Path) -> ScenarioDef:
    """A ready scenario by name (``memory_growth``) or a definition file by path."""
    path = Path(name_or_path)
    if path.suffix == ".py":
        path = path.with_suffix(".json")
    if path.suffix != ".json":
        path = LOCUSTFILES / f"{name_or_path}.json"
    if not path.exists():
        raise ConfigError(f"unknown scenario {str(name_or_path)!r}: use one of {', '.join(available())} "
                          "or a definition file path")
    data = read_json(path, "scenario")
    return parse_definition(path.stem, data, str(path), path.resolve())


def retarget(definition: ScenarioDef, models: list[str]) -> ScenarioDef:
    """The scenario pointed at the user's ``models``: one stream per model and request priority, inputs from each
    model's config (the default pattern; a streaming one when every stream of the scenario streamed), phases kept
    without stream weights, no planted-defect expectations."""
    if not models or any(not m or "/" in m for m in models):
        raise ConfigError(f"bad --models {','.join(models)!r}: give model names separated by commas, e.g. a,b")
    raw = copy.deepcopy(definition.raw)
    traffic = raw["traffic"]
    priorities = sorted({int(s.get("priority", 0)) for s in traffic["streams"]})
    patterns = traffic.pop("patterns", None) or {}
    # A streaming scenario stays one (its models are decoupled): plain streams, no cancellation.
    streaming = all("stream" in (patterns.get(s.get("pattern", "default")) or {}) for s in traffic["streams"])
    traffic["streams"] = [{"model": m, **({"priority": p} if p else {}), **({"pattern": "stream"} if streaming else {})}
                          for m in models for p in priorities]
    if streaming:
        traffic["patterns"] = {"stream": {"stream": {}}}
    traffic["phases"] = [{k: v for k, v in ph.items() if k != "weights"} for ph in traffic.get("phases", [])] or \
        [{"name": "main"}]
    checks = dict(raw.get("checks") or {})
    raw["checks"] = checks
    actions = tuple({**a, "models": models} if a.get("models") else a for a in definition.actions)
    server = {k: v for k, v in definition.server.items() if k not in ("load_models",)}
    if server.get("model_control_mode") == "explicit":
        server["load_models"] = [] if actions else list(models)
    return ScenarioDef(definition.name, definition.description, raw, definition.path, definition.users,
                       definition.spawn_rate, definition.duration_s, server, actions, (), definition.requires_gpus)
