"""Foreground commands stop cleanly on SIGINT/SIGTERM: one place that turns those signals into an event."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field


@dataclass
class StopSignals:
    """An event set by SIGINT or SIGTERM once :meth:`install` ran (main thread only), and which signal it was."""

    event: threading.Event = field(default_factory=threading.Event)
    received: list[int] = field(default_factory=list)

    def install(self) -> StopSignals:
        """Replace the SIGINT/SIGTERM handlers with ones that set :attr:`event`; returns self."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        self.event.set()

    def describe(self) -> str:
        """`` (signal N)`` when a signal stopped us, else ``''`` — for the closing line of a command."""
        return f" (signal {self.received[0]})" if self.received else ""
