"""Whether the run's data is whole: every loss the run directory records (manifest ``losses``: a worker that died,
an interrupted run, a server restart) is a failing ``completeness`` verdict, and every other verdict of the run is
marked as resting on incomplete data (:func:`mark_incomplete`). A run that lost data is never green."""

from __future__ import annotations

from typing import Any

from rmt.check.base import PASS, SKIP, Check, Verdict
from rmt.check.data import RunInputs

NAME = "completeness"
INCOMPLETE = "incomplete"
"""Evidence key on every verdict of a run that lost data: the losses, one sentence each."""


def describe(loss: dict[str, Any]) -> str:
    """One sentence for a loss record."""
    subject = str(loss.get("subject") or loss.get("kind") or "the run")
    reason = str(loss.get("reason") or "lost")
    windows = loss.get("windows_lost")
    return f"{subject}: {reason}" + (f"; {windows} window(s) lost" if isinstance(windows, int) else "")


class CompletenessCheck(Check):
    """FAIL for each loss recorded in the run directory; PASS when nothing was lost."""

    name = NAME
    summary = "data the run lost (dead workers, interruption, server restarts); any loss fails and marks the rest"
    measure = "completeness_lost_windows_count"
    unit = "count"

    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One failing verdict per loss, else one pass."""
        if not run.losses:
            return [self.verdict("run", 0.0, 0.0, "nothing lost: every worker reported to the end of the load",
                                 status=PASS)]
        out = []
        for loss in run.losses:
            lost = loss.get("windows_lost")
            measured = float(lost) if isinstance(lost, int | float) and not isinstance(lost, bool) else float("nan")
            out.append(self.verdict(str(loss.get("subject") or loss.get("kind") or "run"), measured, 0.0,
                                    f"the run is incomplete: {describe(loss)}; the verdicts of this run rest on "
                                    "partial data", {"loss": loss}))
        return out


def mark_incomplete(verdicts: list[Verdict], losses: list[dict[str, Any]]) -> None:
    """Mark every judged verdict but completeness's own as resting on the incomplete data of ``losses``."""
    if not losses:
        return
    said = "; ".join(describe(loss) for loss in losses)
    for v in verdicts:
        if v.check != NAME and v.status != SKIP:
            v.evidence[INCOMPLETE] = said
            v.explanation = f"{v.explanation} [on incomplete data: {said}]"
