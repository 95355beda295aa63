"""Per-second, per-stream load windows as one process counts them (the records are :mod:`rmt.core.windows`).

Every process keeps a :class:`WindowBook`. Events are counted in the window of the second (epoch) in which they
happen — a send when it is sent, an outcome when it arrives — under the key ``(window, protocol, stream, phase)``
where *phase* is the phase the request was issued in. A window is therefore complete as soon as its second is over,
which lets workers ship closed windows as they go and the master write them incrementally.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

from rmt.core.hdr import clamp_us
from rmt.core.windows import NS_PER_S, WindowKey, WindowState
from rmt.load.failures import FailureSampler


class StreamOutcome(Protocol):
    """What :meth:`WindowBook.on_stream_done` reads of a streaming request (a ``streamwire.StreamResult``)."""

    outcome: int
    cancelled: bool
    responses: int
    first_ns: int
    final: bool
    gaps_us: list[float]



class WindowBook:
    """One process's open windows: counts sends, outcomes and drops into the current second's states.

    ``skey`` is ``(protocol, stream, phase)``; ``now_ns`` is epoch ns. :meth:`close` hands over every window whose
    second is over (all of them with ``final=True``); nothing is ever added to a window after it was handed over.
    """

    def __init__(self) -> None:
        self._open: dict[WindowKey, WindowState] = {}
        self._in_flight: dict[tuple[str, str, str], int] = defaultdict(int)
        self.traces: list[dict[str, Any]] = []
        self.failures = FailureSampler()
        """Failed requests' messages, sampled per second (``failures.jsonl``)."""

    def _state(self, skey: tuple[str, str, str], now_ns: int) -> WindowState:
        key = (now_ns - now_ns % NS_PER_S, *skey)
        state = self._open.get(key)
        if state is None:
            state = self._open[key] = WindowState()
        return state

    def on_sent(self, skey: tuple[str, str, str], now_ns: int) -> None:
        """A request of ``skey`` went out."""
        state = self._state(skey, now_ns)
        state.counts[0] += 1
        flying = self._in_flight[skey] = self._in_flight[skey] + 1
        state.in_flight = flying
        if flying > state.in_flight_max:
            state.in_flight_max = flying

    def on_done(self, skey: tuple[str, str, str], outcome: int, batch: int, latency_us: float, service_us: float,
                now_ns: int) -> None:
        """A reply (or a failure) for a request of ``skey``; ``outcome`` is a :mod:`rmt.load.transport` code."""
        state = self._state(skey, now_ns)
        counts = state.counts
        if outcome == 0:
            counts[1] += 1
            counts[2] += batch
        else:
            counts[2 + outcome] += 1
        flying = self._in_flight[skey] = self._in_flight[skey] - 1
        state.in_flight = flying
        state.latency.record_value(clamp_us(latency_us))
        state.service.record_value(clamp_us(service_us))

    def on_stream_done(self, skey: tuple[str, str, str], result: StreamOutcome, batch: int, intended_ns: int,
                       sent_ns: int, done_ns: int, now_ns: int) -> None:
        """A streaming request of ``skey`` ended (monotonic ``*_ns``; ``now_ns`` epoch): its responses, gaps, final
        flag and outcome; latency is the time to the first response (none when the request got no response and was
        cancelled), service time the whole stream."""
        state = self._state(skey, now_ns)
        counts = state.counts
        if result.cancelled and result.outcome == 0:
            counts[9] += 1
        elif result.outcome == 0:
            counts[1] += 1
            counts[2] += batch
            counts[12] += result.responses
        else:
            counts[2 + result.outcome] += 1
        counts[10] += result.responses
        counts[11] += result.final
        flying = self._in_flight[skey] = self._in_flight[skey] - 1
        state.in_flight = flying
        if result.responses:
            state.latency.record_value(clamp_us((result.first_ns - intended_ns) / 1000))
        elif not result.cancelled:
            state.latency.record_value(clamp_us((done_ns - intended_ns) / 1000))
        state.service.record_value(clamp_us((done_ns - sent_ns) / 1000))
        for gap in result.gaps_us:
            state.gap.record_value(clamp_us(gap))

    def on_dropped(self, skey: tuple[str, str, str], delayed: bool, now_ns: int) -> None:
        """An open-loop arrival was dropped (``delayed=False``) or queued behind busy users (``delayed=True``)."""
        state = self._state(skey, now_ns)
        state.counts[8 if delayed else 7] += 1
        state.in_flight = self._in_flight[skey]

    def on_trace(self, trace: dict[str, Any], skey: tuple[str, str, str], now_ns: int) -> None:
        """Keep one probe trace row (a :class:`ProbeTrace` as a dict)."""
        self._state(skey, now_ns).traced += 1
        self.traces.append(trace)

    def close(self, now_ns: int, *, final: bool = False) -> dict[WindowKey, WindowState]:
        """Remove and return the windows whose second ended before ``now_ns`` (every window when ``final``)."""
        current = now_ns - now_ns % NS_PER_S
        done = {k: v for k, v in self._open.items() if final or k[0] < current}
        for key in done:
            del self._open[key]
        return done

    def take_traces(self) -> list[dict[str, Any]]:
        """Remove and return the kept traces."""
        traces, self.traces = self.traces, []
        return traces

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered, all keys together."""
        return sum(self._in_flight.values())
