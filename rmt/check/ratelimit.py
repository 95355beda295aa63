"""The rate limiter as Triton computes it: per-instance needs from model configs, budgets, and the pre-flight.

Mirrors Triton core's ``RateLimiter::ResourceManager``: without ``--rate-limit-resource`` flags a resource's budget on
a device is the largest count any single instance asks for; with flags, every resource the models ask for must be
given — device-specific flags and device-less (per-device) flags count for that device, any flag counts for a
``global`` resource, and an unlisted resource has a budget of 0. A budget below some instance's need makes Triton
refuse to load; :func:`preflight` reports it before any load, in Triton's own sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from rmt.check.data import ModelLimits, ResourceNeed
from rmt.core.errors import ConfigError
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.tritonflags import parse_rate_limit_resource

DeviceKey = int | None
"""A device id, or None for a ``global`` resource."""


@dataclass(frozen=True)
class Shortfall:
    """A resource budget smaller than what one instance needs: Triton refuses to load."""

    resource: str
    device: DeviceKey
    limit: int
    required: int

    @property
    def message(self) -> str:
        """Triton's own sentence for this refusal."""
        return (f'Resource count for "{self.resource}" is limited to {self.limit} which will prevent scheduling of '
                f"one or more model instances, the minimum required count is {self.required}")


def instance_devices(group: Any, gpus: Sequence[int]) -> list[int]:
    """Device of each instance of an instance group: CPU instances sit on device 0, GPU ones on ``gpus``."""
    kind = mc.ModelInstanceGroup.Kind.Name(group.kind)
    count = group.count or 1
    if kind == "KIND_GPU" or (kind == "KIND_AUTO" and list(group.gpus)):
        devices = list(group.gpus) or list(gpus)
        return [d for d in devices for _ in range(count)]
    return [0] * count


def model_limits(name: str, config: Any, *, gpus: Sequence[int] = (0,)) -> ModelLimits:
    """The rate limiter's view of a model: each instance's device, resources and priority (weight)."""
    instances: dict[str, int] = {}
    needs: dict[str, tuple[ResourceNeed, ...]] = {}
    priority: dict[str, int] = {}
    for g_idx, group in enumerate(config.instance_group):
        group_name = group.name or f"{name}_{g_idx}"
        resources = tuple(ResourceNeed(r.name, int(r.count), bool(getattr(r, "global")))
                          for r in group.rate_limiter.resources)
        for i, device in enumerate(instance_devices(group, gpus)):
            instance = f"{group_name}_{i}"
            instances[instance] = device
            needs[instance] = resources
            priority[instance] = max(1, int(group.rate_limiter.priority))
    return ModelLimits(name, instances, needs, priority)


def repository_limits(repo: Path, *, gpus: Sequence[int] = (0,)) -> dict[str, ModelLimits]:
    """:func:`model_limits` of every model (folder with a ``config.pbtxt``) of a model repository."""
    if not repo.is_dir():
        raise ConfigError(f"model repository {repo} does not exist: pass the folder that holds the models")
    out: dict[str, ModelLimits] = {}
    for cfg in sorted(repo.glob("*/config.pbtxt")):
        out[cfg.parent.name] = model_limits(cfg.parent.name, load_config_pbtxt(cfg), gpus=gpus)
    return out


def max_needs(models: Iterable[ModelLimits]) -> dict[tuple[str, DeviceKey], int]:
    """Largest count any single instance asks for, per (resource, device or None for global)."""
    need: dict[tuple[str, DeviceKey], int] = {}
    for m in models:
        for instance, resources in m.needs.items():
            for r in resources:
                key = (r.name, None if r.global_ else m.instances[instance])
                need[key] = max(need.get(key, 0), r.count)
    return need


def parse_flags(flags: Iterable[str]) -> list[tuple[str, int, int | None]]:
    """``NAME:COUNT[:DEVICE]`` flags (``--rate-limit-resource``) as tuples; ConfigError names a bad one."""
    return [parse_rate_limit_resource(f) for f in flags]


def effective_budgets(models: Iterable[ModelLimits], flags: Sequence[tuple[str, int, int | None]]
                      ) -> tuple[dict[tuple[str, DeviceKey], int], list[Shortfall]]:
    """The budget of every (resource, device) the models ask for, and every shortfall Triton would refuse."""
    need = max_needs(models)
    if not flags:
        return dict(need), []
    budgets: dict[tuple[str, DeviceKey], int] = {}
    short: list[Shortfall] = []
    for (resource, device), required in sorted(need.items(), key=lambda kv: (kv[0][0], kv[0][1] is None,
                                                                              kv[0][1] or 0)):
        if device is None:
            limit = max((c for n, c, _ in flags if n == resource), default=0)
        else:
            limit = max((c for n, c, d in flags if n == resource and d in (device, None)), default=0)
        budgets[(resource, device)] = limit
        if limit < required:
            short.append(Shortfall(resource, device, limit, required))
    return budgets, short


@dataclass(frozen=True)
class Contention:
    """How much of one (resource, device) budget the run's traffic asked for at once."""

    resource: str
    device: DeviceKey
    budget: int
    wanted: float
    """Units held if every model ran as many executions at once as it had instances there and requests outstanding."""
    models: tuple[str, ...]
    """The models with traffic that ask for this resource on this device."""

    @property
    def contended(self) -> bool:
        """More was wanted at once than the budget holds: the rate limiter had to choose (and weights arbitrate)."""
        return self.wanted > self.budget


def contention(models: Mapping[str, ModelLimits], budgets: Mapping[tuple[str, DeviceKey], int],
               outstanding: Mapping[str, float]) -> dict[tuple[str, DeviceKey], Contention]:
    """Per (resource, device): the units the traffic wanted at once vs the budget.

    A model with ``outstanding[m]`` requests waiting or executing can run at most ``min(instances, outstanding)``
    executions at once on the instances that ask for a resource; each holds its need. With enough budget for all
    of that, every instance that has work runs at once and the rate limiter never chooses between models.
    """
    wanted: dict[tuple[str, DeviceKey], float] = {}
    users: dict[tuple[str, DeviceKey], set[str]] = {}
    for name, limits in models.items():
        demand = float(outstanding.get(name, 0.0))
        if demand <= 0:
            continue
        per_key: dict[tuple[str, DeviceKey], list[int]] = {}
        for instance, needs in limits.needs.items():
            for r in needs:
                per_key.setdefault((r.name, None if r.global_ else limits.instances[instance]), []).append(r.count)
        for key, counts in per_key.items():
            running = sorted(counts, reverse=True)[: max(1, math.ceil(min(len(counts), demand)))]
            wanted[key] = wanted.get(key, 0.0) + float(sum(running))
            users.setdefault(key, set()).add(name)
    return {key: Contention(key[0], key[1], int(budgets.get(key, 0)), units, tuple(sorted(users[key])))
            for key, units in wanted.items()}


def preflight(repo: Path, flags: Iterable[str], *, gpus: Sequence[int] = (0,)) -> list[Shortfall]:
    """Shortfalls of ``--rate-limit-resource`` flags against the models of ``repo``, before any server starts."""
    _, short = effective_budgets(repository_limits(repo, gpus=gpus).values(), parse_flags(flags))
    return short


def budgets_from_flags(models: Mapping[str, ModelLimits], flags: Iterable[str]) -> dict[tuple[str, DeviceKey], int]:
    """Budgets per (resource, device) for a server started with ``flags`` (no shortfall check)."""
    return effective_budgets(models.values(), parse_flags(flags))[0]
