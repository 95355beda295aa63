"""Declarative check specs → check objects. The one table of checks is :data:`CHECKS`.

Grammar (command line ``--checks``; items separated by ``,`` ``;`` or newlines, values optionally quoted)::

    leak.max_growth = "1MiB/10k", fairness.min_jain = 0.9; warmup.max_cold_ratio=3
    priority = off                   # disable a check
    only = leak, warmup              # judge these checks only (default: all)

A scenario file provides the same as a mapping, nested (``{"leak": {"max_growth": "1MiB/10k"}}``) or flat
(``{"leak.max_growth": "1MiB/10k"}``). Precedence: command line > scenario file > the defaults declared on each check
class (``rmt check --list`` prints them). A check named in a spec is *required*: missing evidence fails it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rmt.check.attribution import FragmentationCheck, LeakAttributionCheck
from rmt.check.base import Check
from rmt.check.cache_checks import CacheBoundedCheck, CacheHitRatioCheck
from rmt.check.capacity_checks import SloCheck
from rmt.check.completeness import NAME as COMPLETENESS
from rmt.check.completeness import CompletenessCheck
from rmt.check.composing import ComposingAttributionCheck
from rmt.check.lifecycle_checks import (
    CrossDeviceCheck,
    ReadinessCheck,
    ReloadCheck,
    ReloadLimitCheck,
    WarmupCheck,
    WarmupExecutedCheck,
)
from rmt.check.memory_checks import LeakCheck, PoolGrowthCheck
from rmt.check.path_checks import SequenceSlotsCheck, ShmBackendGrowthCheck, ShmRegionsCheck
from rmt.check.queue_checks import ConcurrencyCheck, QueuePolicyCheck
from rmt.check.sched_checks import (
    FairnessCheck,
    PriorityCheck,
    RateLimitCheck,
    StarvationCheck,
    WeightsCheck,
)
from rmt.check.shape_checks import GraphReplayCheck, ShapeWarmupCheck
from rmt.check.stream_checks import FirstResponseCheck, StreamCompletenessCheck
from rmt.core.errors import ConfigError
from rmt.core.measures import Measure

#: Every check, by spec name. Add a check here (one table, no second list).
CHECKS: dict[str, type[Check]] = {c.name: c for c in (
    LeakCheck, PoolGrowthCheck, LeakAttributionCheck, FragmentationCheck, RateLimitCheck, ConcurrencyCheck,
    FairnessCheck, StarvationCheck, WeightsCheck, PriorityCheck, QueuePolicyCheck, WarmupCheck, WarmupExecutedCheck,
    ReadinessCheck, ReloadCheck, ReloadLimitCheck, CrossDeviceCheck, ShapeWarmupCheck, GraphReplayCheck, SloCheck,
    FirstResponseCheck, StreamCompletenessCheck, CompletenessCheck,
    SequenceSlotsCheck, ShmRegionsCheck, ShmBackendGrowthCheck, CacheHitRatioCheck, CacheBoundedCheck,
    ComposingAttributionCheck,
)}

#: The measure of every check, by name (units and directions of the verdicts' ``measured`` values).
CHECK_MEASURES: dict[str, Measure] = {c.measure: c.measure_entry() for c in CHECKS.values()}

Spec = dict[str, dict[str, Any]]
"""Check name → parameter name → written value; the reserved parameter ``enabled`` holds on/off."""

_ITEM = re.compile(r"^\s*(?P<key>[A-Za-z_][\w.]*)\s*=\s*(?P<value>.*?)\s*$")
_ON = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _split_items(text: str) -> list[str]:
    """Split on , ; and newlines outside quotes, keeping ``only = a, b`` together."""
    items: list[str] = []
    current, quote = "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in ",;\n":
            items.append(current)
            current = ""
            continue
        current += ch
    items.append(current)
    merged: list[str] = []
    for item in (i.strip() for i in items):
        if not item or item.startswith("#"):
            continue
        if "=" not in item and merged and merged[-1].split("=", 1)[0].strip() == "only":
            merged[-1] += "|" + item
        else:
            merged.append(item)
    return merged


def _add(spec: Spec, key: str, value: Any, origin: str) -> None:
    if key == "only":
        names = [n.strip() for n in re.split(r"[|,\s]+", str(value)) if n.strip()]
        for n in names:
            _check_class(n, origin)
        spec["_only"] = {"names": names}
        return
    check, _, param = key.partition(".")
    cls = _check_class(check, origin)
    if not param or param == "enabled":
        flag = _ON.get(str(value).strip().lower()) if not isinstance(value, bool) else value
        if flag is None:
            raise ConfigError(f"{origin}: {key} = {value!r}: write {check} = on or {check} = off")
        spec.setdefault(check, {})["enabled"] = flag
        return
    known = {p.name for p in cls.params}
    if param not in known:
        raise ConfigError(f"{origin}: {check} has no parameter {param!r}: use one of "
                          f"{', '.join(sorted(known)) or '(none)'} (see rmt check --list)")
    spec.setdefault(check, {})[param] = value


def _check_class(name: str, origin: str) -> type[Check]:
    cls = CHECKS.get(name)
    if cls is None:
        raise ConfigError(f"{origin}: unknown check {name!r}: use one of {', '.join(CHECKS)} (see rmt check --list)")
    return cls


def parse_spec(text: str, origin: str = "--checks") -> Spec:
    """Parse the command-line grammar (see the module docstring); ConfigError names the bad item and the fix."""
    spec: Spec = {}
    for item in _split_items(text):
        m = _ITEM.match(item)
        if not m:
            raise ConfigError(f"{origin}: cannot read {item!r}: write CHECK.PARAM = VALUE, e.g. "
                              'leak.max_growth = "1MiB/10k"')
        _add(spec, m.group("key"), _unquote(m.group("value")), origin)
    return spec


def spec_from_mapping(data: Mapping[str, Any], origin: str = "scenario") -> Spec:
    """A scenario file's ``checks`` mapping, nested or flat, as a :data:`Spec`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: checks must be a mapping such as {{'leak': {{'max_growth': '1MiB/10k'}}}}")
    spec: Spec = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            for param, v in value.items():
                _add(spec, f"{key}.{param}", v, origin)
        else:
            _add(spec, str(key), value, origin)
    return spec


def merge_specs(*specs: Spec) -> Spec:
    """Later specs win, parameter by parameter (pass file first, command line last)."""
    out: Spec = {}
    for spec in specs:
        for check, params in spec.items():
            out.setdefault(check, {}).update(params)
    return out


def build_checks(spec: Spec | None = None) -> list[Check]:
    """The check objects for ``spec``: every enabled check (or those of ``only``), with defaults filled in."""
    spec = spec or {}
    only = spec.get("_only", {}).get("names")
    checks: list[Check] = []
    for name, cls in CHECKS.items():
        params = dict(spec.get(name, {}))
        enabled = params.pop("enabled", None)
        if enabled is False or (only is not None and name not in only and not enabled and name != COMPLETENESS):
            continue
        try:
            checks.append(cls(params, required=bool(params) or enabled is True or (only is not None)))
        except ValueError as exc:
            raise ConfigError(f"check {name}: {exc}") from None
    return checks


def describe_checks() -> str:
    """Every check with its parameters and defaults (``rmt check --list``)."""
    lines = []
    for name, cls in CHECKS.items():
        lines.append(f"{name}: {cls.summary} [{cls.measure}, pass when {cls.comparison} threshold]")
        for p in cls.params:
            lines.append(f"  {name}.{p.name} = {p.default!r}  — {p.doc}")
    return "\n".join(lines)
