"""Dedicated users per stream (``"users": N``) and the sampled failure records, without a server."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from rmt.core.errors import ConfigError
from rmt.core.scenario import parse_scenario
from rmt.load.failures import FailureSampler, failure_record
from rmt.load.pinning import IDLE, FreePicker, claim_stream, dedicated_slots, total_dedicated


class _Engine:
    """What :func:`claim_stream` reads of a traffic engine (weak-referenceable)."""

    def __init__(self, scenario: Any) -> None:
        self.scenario = scenario
        self.plan = SimpleNamespace(rank=0, workers=1)


PINNED = {"mode": "closed", "streams": [{"model": "a", "users": 3}, {"model": "b", "users": 2}, {"model": "c"}]}


def test_dedicated_slots_split_across_processes_and_are_claimed_once() -> None:
    scenario = parse_scenario(PINNED)
    assert total_dedicated(scenario) == 5
    assert dedicated_slots(scenario) == [0, 0, 0, 1, 1]
    both = dedicated_slots(scenario, 0, 2) + dedicated_slots(scenario, 1, 2)
    assert sorted(both) == [0, 0, 0, 1, 1]
    engine = _Engine(scenario)
    claims = [claim_stream(engine) for _ in range(7)]
    assert claims == [0, 0, 0, 1, 1, None, None]  # then: pick among the streams without dedicated users
    only_pinned = parse_scenario({"streams": [{"model": "a", "users": 1}]})
    engine = _Engine(only_pinned)
    assert [claim_stream(engine) for _ in range(2)] == [0, IDLE]


def test_free_users_never_pick_a_dedicated_stream() -> None:
    picker = FreePicker(parse_scenario(PINNED), random.Random(1))
    assert {picker.pick(0) for _ in range(200)} == {2}
    assert FreePicker(parse_scenario({"streams": [{"model": "a", "users": 1}]}), random.Random(1)).pick(0) == IDLE


def test_dedicated_users_need_a_closed_loop() -> None:
    with pytest.raises(ConfigError, match=r"streams\[0\].users: dedicated users need \"mode\": \"closed\""):
        parse_scenario({"mode": "open", "rate_per_s": 10, "streams": [{"model": "a", "users": 2}]})
    with pytest.raises(ConfigError, match="users"):
        parse_scenario({"streams": [{"model": "a", "users": -1}]})


def test_failure_records_parse_allocation_sizes_and_stay_bounded() -> None:
    arena = failure_record(5, "m", "[500] arena: failed to allocate 2402688 bytes (free 6468352 bytes, largest hole "
                                   "2111488 bytes)")
    assert (arena["need_bytes"], arena["free_bytes"], arena["device"]) == (2402688, 6468352, "host")
    torch = failure_record(5, "m", "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 1; 3.00 GiB free)")
    assert (torch["need_bytes"], torch["free_bytes"], torch["device"]) == (2 * 2**30, 3 * 2**30, "gpu=1")
    other = failure_record(5, "m", "INPUT0 has a negative element")
    assert other["need_bytes"] is None and other["device"] is None
    sampler = FailureSampler(per_s=3)
    for i in range(10):
        sampler.offer(1_000_000_000 + i, "m", "x")
    sampler.offer(2_000_000_000, "m", "y")
    kept = sampler.take()
    assert [r["message"] for r in kept] == ["x", "x", "x", "y"] and sampler.skipped == 7
    assert sampler.take() == []
