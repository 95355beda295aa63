"""``rmt run --until-decisive``: keep the load on until every leak/pool verdict is decided, then stop.

Sequential testing over the live run directory (its writers flush every second): every :data:`LOOK_EVERY_S`
seconds, from :data:`FIRST_LOOK_S` on, the leak and pool checks judge the data so far. The load stops at the first
look where every such verdict is decided (none ``undecided``, at least one judged), or at the cap
(``--max-duration``); a series sampled too seldom to get its fit's samples before the cap (USS, read sparingly to
hold the collector's CPU share) is left undecided and named, since waiting for it would always run to the cap.
Each look tests at ``alpha / looks`` (Bonferroni over the looks the cap allows), so looking repeatedly keeps the
run's false-alarm rate at the configured ``alpha``. The final verdicts are computed once more from the finished run
directory, as for any run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rmt.check.api import evaluate
from rmt.check.base import FAIL, PASS, UNDECIDED, WARN, Verdict
from rmt.check.spec import build_checks, merge_specs, parse_spec, spec_from_mapping
from rmt.check.trend import MIN_POINTS, SUSTAIN_SHARE
from rmt.core.errors import RmtError

#: The load's cap when ``--max-duration`` is not given (seconds).
DEFAULT_MAX_DURATION_S = 600.0
#: Seconds between looks.
LOOK_EVERY_S = 5.0
#: The first look comes this long after the load started (the warm-up must pass first).
FIRST_LOOK_S = 15.0
#: Samples a series needs for the leak fit: MIN_POINTS in its later part, after a 10 % warm-up.
SAMPLES_NEEDED = MIN_POINTS / (SUSTAIN_SHARE * 0.9)
#: The checks whose verdicts must be decided.
DECIDING = ("leak", "pool")


class Decisive:
    """The looks of one run: when to look, whether the run is decided, and the outcome for the report."""

    def __init__(self, run_dir: Path, file_checks: Mapping[str, Any] | None, extra: Sequence[str],
                 cap_s: float) -> None:
        self.run_dir = run_dir
        self.cap_s = cap_s
        self.max_looks = max(1, math.ceil((cap_s - FIRST_LOOK_S) / LOOK_EVERY_S) + 1)
        user = merge_specs(spec_from_mapping(dict(file_checks or {}), origin="scenario"),
                           *(parse_spec(text) for text in extra))
        alphas = [float(c.values["alpha"]) for c in build_checks(user) if c.name in DECIDING]
        self.alpha = min(alphas) if alphas else 0.01
        self.alpha_per_look = self.alpha / self.max_looks
        self.file_checks = dict(file_checks or {})
        self.extra = [*extra, f"only={','.join(DECIDING)}", *(f"{c}.alpha={self.alpha_per_look:.6g}"
                                                              for c in DECIDING)]
        self.looks = 0
        self.next_s = FIRST_LOOK_S
        self.decided_after_s: float | None = None
        self.undecided: list[str] = []
        self.unreachable: list[str] = []
        self.reason = ""

    def due(self, elapsed_s: float) -> bool:
        """Whether a look is due ``elapsed_s`` seconds into the load."""
        return self.decided_after_s is None and elapsed_s >= self.next_s

    def look(self, elapsed_s: float) -> bool:
        """Judge the data so far; True when every leak/pool verdict is decided."""
        self.next_s = elapsed_s + LOOK_EVERY_S
        self.looks += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                spec = merge_specs(*(parse_spec(text) for text in self.extra))
                verdicts = [v for v in evaluate(self.run_dir, spec, file_spec=self.file_checks).verdicts
                            if v.check in DECIDING]  # completeness: a load under way has no end recorded yet
        except (RmtError, OSError, ValueError):  # the run directory is not readable yet
            return False
        undecided = [v for v in verdicts if v.status == UNDECIDED]
        self.unreachable = [f"{v.check} {v.subject}" for v in undecided if self._too_seldom(v, elapsed_s)]
        self.undecided = [f"{v.check} {v.subject}" for v in undecided
                          if f"{v.check} {v.subject}" not in self.unreachable]
        judged = [v for v in verdicts if v.status in (PASS, FAIL, WARN)]
        if judged and not self.undecided:
            self.decided_after_s = elapsed_s
            fails = sum(v.status == FAIL for v in judged)
            self.reason = (f"every leak/pool verdict decided after {elapsed_s:.0f} s ({len(judged)} judged, {fails} "
                           f"failed; look {self.looks}, each at alpha {self.alpha_per_look:.2g})")
            if self.unreachable:
                self.reason += (f"; {len(self.unreachable)} series sampled too seldom to be decided within the "
                                f"{self.cap_s:.0f} s cap left undecided ({', '.join(self.unreachable[:3])})")
            return True
        return False

    def _too_seldom(self, v: Verdict, elapsed_s: float) -> bool:
        """An undecided series whose sampling rate cannot give the fit its samples before the cap (USS is read
        seldom to hold the collector's CPU share): waiting for it would always run to the cap."""
        samples = v.evidence.get("samples")
        if not isinstance(samples, int | float) or "requests_to_decide" in v.evidence or elapsed_s <= 0:
            return False
        return samples * self.cap_s / elapsed_s < SAMPLES_NEEDED

    def outcome(self, _now: float) -> dict[str, Any]:
        """What the report says: how long it took and why it stopped."""
        if self.decided_after_s is not None:
            text = self.reason
        else:
            left = ", ".join(self.undecided[:5]) + (" …" if len(self.undecided) > 5 else "")
            text = (f"still undecided at the {self.cap_s:.0f} s cap after {self.looks} looks"
                    + (f": {left}" if left else "") + " — raise --max-duration or the request rate")
        return {"decided": self.decided_after_s is not None, "decided_after_s": self.decided_after_s,
                "cap_s": self.cap_s, "looks": self.looks, "alpha": self.alpha,
                "alpha_per_look": self.alpha_per_look, "undecided": self.undecided,
                "sampled_too_seldom": self.unreachable, "text": text}
