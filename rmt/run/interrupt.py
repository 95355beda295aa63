"""A run cut short: ``rmt run`` signalled (SIGINT, SIGTERM) or its Locust master ended before the load's end.

While Locust runs, :class:`Interrupts` turns the first SIGINT or SIGTERM of ``rmt run`` into a SIGTERM to the Locust
master, which stops the load, drains the workers and writes its last windows (Locust's own graceful shutdown); the
orchestrator then judges and reports as usual. A second signal acts as it normally would (KeyboardInterrupt /
termination). :func:`record_cut_short` writes the loss into the manifest, so the verdicts say the data is partial.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from rmt.core.rundir import LOSSES, RunDir

CUT_SHORT = "load_cut_short"
SLACK_S = 1.5
"""A load that ran this much less than planned was cut short (Locust's own stop takes well under a second)."""


class Interrupts:
    """Context manager: the first SIGINT/SIGTERM calls ``on_signal(signum)`` once and is remembered."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self.on_signal = on_signal
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: as without rmt
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.signum = signum
        self.on_signal(signum)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def record_cut_short(run_dir: Path, planned_s: float, signum: int | None, master_code: int) -> dict[str, Any] | None:
    """The loss of a load that ended early (by ``signum``, or the master's own end), written to the manifest; None
    when the load ran its course or never started."""
    run = RunDir(run_dir, create=False)
    manifest = run.manifest()
    start, end = manifest.get("load_start_ns"), manifest.get("load_end_ns")
    if not isinstance(start, int):
        return None
    ran_s = (end - start) / 1e9 if isinstance(end, int) and end > start else 0.0
    if signum is None and ran_s >= planned_s - SLACK_S and master_code in (0, 3):
        return None
    if signum is not None:
        why = f"rmt run got {signal.Signals(signum).name}"
    elif master_code < 0:
        why = f"the Locust master ended by {signal.Signals(-master_code).name}"
    else:
        why = f"the Locust master ended early (exit code {master_code})"
    loss = {"kind": CUT_SHORT, "subject": "load", "reason": f"{why}: the load ran {ran_s:.1f} s of {planned_s:.0f} s",
            "ran_s": ran_s, "planned_s": planned_s}
    losses = [x for x in manifest.get(LOSSES) or [] if isinstance(x, dict)]
    run.update_manifest(**{LOSSES: [*losses, loss]})
    return loss
