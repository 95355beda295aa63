"""The contract between the sampling loop and a source module, and the clock every loop reads.

A source is opened once (it may declare itself unavailable there, with a reason), then read at every tick.
``read`` returns a :class:`~rmt.collect.series.Reading` or raises :class:`~rmt.core.errors.SourceUnavailable` with a
one-line reason: that tick becomes a gap (NaN + error count), never a zero.

Each source is read in its own thread, so a slow or hung read never delays another source — except two kinds that
share one sampling thread, which saves a thread wake-up per source per tick (and the one an HTTP answer costs):

- ``inline = True`` (optional class attribute): the reads never block and take well under a millisecond (kept-open
  ``/proc`` files, a memory-backed folder);
- ``split = True``: a :class:`SplitSource`, whose read is a request and an answer (an HTTP GET). The collector
  sends the request at the start of a tick (``begin``), reads the inline sources meanwhile and takes the answer with
  ``poll``, which never blocks: at the end of the tick if it has come, else at a later tick's wake-up (or ``wait``s
  for it when its timeout ends before the next tick); past ``timeout_s`` it ``cancel``s it, a gap.

A source may declare ``every_s`` (seconds): it is then read at every n-th tick only, n = ``every_s`` / interval
rounded (at least 1); the other ticks have no record of it (not gaps: the source's resolution is ``every_s``).

A read may return the very list of points it returned the tick before when nothing changed (the collector then
reuses that tick's series ids and values); such a list must never be mutated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from rmt.collect.series import Reading


class Clock(Protocol):
    """Where the collector reads time (injected; tests and replays may pass their own)."""

    def mono_ns(self) -> int:
        """Monotonic nanoseconds (sampling schedule, durations)."""
        ...

    def epoch_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch (time axis across hosts)."""
        ...


class SystemClock:
    """The host's clocks: ``time.monotonic_ns`` and ``time.time_ns``."""

    def mono_ns(self) -> int:
        """``time.monotonic_ns()``."""
        return time.monotonic_ns()

    def epoch_ns(self) -> int:
        """``time.time_ns()``."""
        return time.time_ns()


@dataclass
class SourceInfo:
    """What a source says about itself when opened (goes into the run manifest under ``collector.sources``)."""

    available: bool = True
    reason: str = ""
    """Why the source is unavailable (one line naming the fix), empty when available."""
    details: dict[str, Any] = field(default_factory=dict)
    """Source-specific facts for the manifest (endpoint, PID, memory API, ...)."""
    manifest: dict[str, Any] = field(default_factory=dict)
    """Top-level keys this source adds to the run manifest (e.g. ``gpus``, ``nvml``)."""


class Source(Protocol):
    """One source of samples (``nvml``, ``process``, ``triton_metrics``, ``shm``, ``model_stats``)."""

    name: str
    timeout_s: float
    """A read taking longer than this is a gap (HTTP sources also use it as their socket timeout)."""

    def open(self) -> SourceInfo:
        """Prepare the source; report it unavailable (never raise) when it cannot work on this host."""
        ...

    def read(self) -> Reading:
        """One read; raise SourceUnavailable with the reason for a gap."""
        ...

    def close(self) -> None:
        """Release what ``open`` took."""
        ...


class SplitSource(Source, Protocol):
    """A source read in two halves, so that waiting for its answer never blocks the thread it shares."""

    split: bool
    """True: read with begin/poll in the shared sampling thread (``read`` does both, for a thread of its own)."""

    def begin(self) -> None:
        """Send the request of one read; raise SourceUnavailable when it cannot be sent (a gap)."""
        ...

    def poll(self) -> Reading | None:
        """The reading once the answer is complete, None while it is not; never blocks. SourceUnavailable: a gap."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Block up to ``timeout_s`` for more of the answer (used only when the collector must decide at once)."""
        ...

    def cancel(self) -> None:
        """Abandon the read in flight (its timeout passed)."""
        ...
