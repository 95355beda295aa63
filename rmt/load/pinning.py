"""Dedicated users per stream (the scenario's ``"users": N`` on a stream): who sends what in a closed loop.

The run's dedicated slots are the streams repeated by their ``users`` count, in scenario order; with W load
processes, process ``rank`` takes every W-th slot starting at its rank, so the slots of the whole run are spread
evenly and each is taken once. Inside a process, users claim the process's slots in the order they start; a user
that finds none left sends the streams without dedicated users, picked by weight (or idles when there are none).
The run needs at least Σ ``users`` Locust users for every slot to be taken (set ``run.users`` or ``-u``).
"""

from __future__ import annotations

import bisect
import weakref
from itertools import accumulate
from typing import Any

from rmt.core.scenario import Scenario

#: A user that is not dedicated to a stream and finds no stream left to pick by weight.
IDLE = -1


def dedicated_slots(scenario: Scenario, rank: int = 0, workers: int = 1) -> list[int]:
    """Stream indexes of this process's dedicated users, in claim order."""
    slots = [i for i, stream in enumerate(scenario.streams) for _ in range(stream.users)]
    return slots[rank::max(1, workers)]


def total_dedicated(scenario: Scenario) -> int:
    """Σ ``users`` over the streams: the users a run needs for every dedicated slot to be taken."""
    return sum(stream.users for stream in scenario.streams)


class SlotBook:
    """One process's dedicated slots for one plan; users claim them once each."""

    def __init__(self, slots: list[int]) -> None:
        self.slots = slots
        self.claimed = 0

    def claim(self) -> int | None:
        """The next free slot's stream index, or None when every slot is taken."""
        if self.claimed >= len(self.slots):
            return None
        self.claimed += 1
        return self.slots[self.claimed - 1]


_BOOKS: weakref.WeakKeyDictionary[Any, tuple[Any, SlotBook]] = weakref.WeakKeyDictionary()


def claim_stream(engine: Any) -> int | None:
    """A dedicated stream for a user starting on ``engine`` (a :class:`~rmt.load.engine.TrafficEngine`) under its
    current plan: a stream index, :data:`IDLE` when the user has nothing to send, or None (pick by weight)."""
    scenario, plan = engine.scenario, engine.plan
    if scenario is None or plan is None or scenario.mode != "closed" or not total_dedicated(scenario):
        return None
    held = _BOOKS.get(engine)
    if held is None or held[0] is not plan:
        held = _BOOKS[engine] = (plan, SlotBook(dedicated_slots(scenario, plan.rank, plan.workers)))
    stream = held[1].claim()
    if stream is not None:
        return stream
    return None if any(not s.users for s in scenario.streams) else IDLE


class FreePicker:
    """Stream choice of the users without a dedicated stream: the phase's weights with dedicated streams left out;
    :data:`IDLE` in a phase where no stream without dedicated users has weight."""

    def __init__(self, scenario: Scenario, rng: Any) -> None:
        self._rng = rng
        self._cumulative: list[list[float]] = []
        for phase in scenario.phases:
            weights = [0.0 if s.users else w for s, w in zip(scenario.streams, scenario.stream_weights(phase),
                                                              strict=True)]
            self._cumulative.append(list(accumulate(weights)))

    def pick(self, phase_index: int) -> int:
        """A stream index drawn with phase ``phase_index``'s weights, or :data:`IDLE`."""
        cum = self._cumulative[phase_index]
        if not cum or cum[-1] <= 0:
            return IDLE
        return min(bisect.bisect_right(cum, self._rng.random() * cum[-1]), len(cum) - 1)


def active(scenario: Scenario, stream: int, phase_index: int) -> bool:
    """Whether ``stream`` has weight in phase ``phase_index`` (a dedicated user idles through phases without it)."""
    return scenario.stream_weights(scenario.phases[phase_index])[stream] > 0
