"""When requests go out and to which stream: phases on a shared clock, open-loop arrivals, weighted stream choice.

Pure functions of time and a seeded random generator, so every process of a distributed run derives the same phase
from the same start instant, and the arrival and mix statistics can be tested without a server.
"""

from __future__ import annotations

import bisect
import math
import random
from itertools import accumulate

from rmt.core.scenario import Phase, Scenario


class PhaseClock:
    """Which phase is active ``elapsed_s`` seconds after the run's start."""

    def __init__(self, phases: tuple[Phase, ...]) -> None:
        self.phases = phases
        self._ends = list(accumulate(p.duration_s for p in phases))

    def index_at(self, elapsed_s: float) -> int | None:
        """Index of the active phase, or ``None`` once the last phase has ended."""
        if elapsed_s < 0:
            return 0
        i = bisect.bisect_right(self._ends, elapsed_s)
        return i if i < len(self.phases) else None

    def end_of(self, index: int) -> float:
        """Seconds from the start at which phase ``index`` ends (``inf`` for an open-ended last phase)."""
        return self._ends[index]

    def end_phase(self, index: int, at_s: float) -> bool:
        """End phase ``index`` early, ``at_s`` seconds from the start; later phases move up by the time cut.

        The hook of adaptive drivers (e.g. :mod:`rmt.capacity`'s stepped sweep, which leaves a step once it is
        stable). Returns False, changing nothing, when ``at_s`` is not inside phase ``index``.
        """
        start = self._ends[index - 1] if index > 0 else 0.0
        end = self._ends[index]
        if not start <= at_s < end:
            return False
        cut = end - at_s
        for i in range(index, len(self._ends)):
            self._ends[i] -= cut
        return True

    @property
    def total_s(self) -> float:
        """When the last phase ends."""
        return self._ends[-1] if self._ends else 0.0


class StreamPicker:
    """Draws a stream index with the weights of the current phase (one ``random()`` and a bisect per pick)."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self._rng = rng
        self._cumulative: list[list[float]] = []
        for phase in scenario.phases:
            weights = scenario.stream_weights(phase)
            self._cumulative.append(list(accumulate(weights)))

    def pick(self, phase_index: int) -> int:
        """A stream index drawn with phase ``phase_index``'s weights."""
        cum = self._cumulative[phase_index]
        return min(bisect.bisect_right(cum, self._rng.random() * cum[-1]), len(cum) - 1)


class ArrivalProcess:
    """Intended send times (seconds from the start) of one process's share of the open-loop traffic.

    ``share`` is this process's fraction of the total rate (``1 / workers``). Constant arrivals are evenly spaced;
    Poisson arrivals have exponential gaps. A phase with rate 0 sends nothing until it ends; a rate change applies
    from the phase boundary on.
    """

    def __init__(self, scenario: Scenario, share: float, rng: random.Random, *, offset: float = 0.0,
                 clock: PhaseClock | None = None) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        # ``clock``: share the engine's clock so that :meth:`PhaseClock.end_phase` moves arrivals on too.
        self._clock = clock or PhaseClock(scenario.phases)
        self._rates = [scenario.phase_rate(p) * share for p in scenario.phases]
        self._poisson = scenario.arrival == "poisson"
        self._rng = rng
        # Constant arrivals of different workers are staggered by ``offset`` (a fraction of one gap).
        self._offset = offset
        self._t = 0.0
        self._first = True

    def next(self) -> tuple[float, int] | None:
        """The next ``(intended time in s from start, phase index)``; ``None`` when the phases are over."""
        t = self._t
        while True:
            index = self._clock.index_at(t)
            if index is None:
                return None
            rate = self._rates[index]
            end = self._clock.end_of(index)
            if rate <= 0:
                if math.isinf(end):
                    return None
                t = end
                continue
            gap = self._rng.expovariate(rate) if self._poisson else (self._offset if self._first else 1.0) / rate
            self._first = False
            if t + gap >= end:
                # No arrival left in this phase: restart the draw at its boundary with the next phase's rate
                # (memoryless for Poisson; for constant arrivals, the new phase starts on its own grid).
                t = end
                self._first = True
                continue
            self._t = t + gap
            return self._t, index
