"""The check object model: declarative parameters, the :class:`Check` base class, and the :class:`Verdict` it returns.

A check is a small object built from a spec (``leak.max_growth = "1MiB/10k"``): its class declares its parameters
with defaults and parsers; :meth:`Check.evaluate` is a pure function of :class:`~rmt.check.data.RunInputs` returning
one verdict per subject (memory series, model, stream pair, …) with the measured value, the threshold, the evidence
and one sentence of explanation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rmt.check.data import RunInputs
from rmt.core.measures import Measure

PASS = "pass"
FAIL = "fail"
SKIP = "skip"
WARN = "warn"
"""Passes the threshold, but the evidence shows significant sustained growth: a projection, not a failure."""
UNDECIDED = "undecided"
"""The subject was there but the check cannot judge it: its data cannot decide at the configured confidence (too
little, or too close to the threshold), or it lacks the kind of evidence the check needs. Never a silent pass; JUnit
reports it as skipped with the reason. Also the evidence key holding that reason."""
STATUSES = (PASS, FAIL, SKIP, WARN, UNDECIDED)


@dataclass(frozen=True)
class Param:
    """One declarative parameter of a check."""

    name: str
    default: Any
    """The default as a user would write it (``"512KiB/10k"``, ``0.9``)."""
    parse: Callable[[Any], Any]
    """Turns the written value into the value the check uses; raises ValueError naming the accepted forms."""
    doc: str


@dataclass
class Verdict:
    """The outcome of one check on one subject."""

    check: str
    subject: str
    status: str
    """``pass``, ``fail``, ``skip`` (no evidence to judge), ``warn`` (passes, with significant sustained growth) or
    ``undecided`` (the evidence cannot decide at the configured confidence)."""
    measure: str
    """Name of the measured quantity (the check's :meth:`Check.measure_entry`)."""
    measured: float | None
    threshold: float | None
    comparison: str
    """How measured must relate to threshold to pass: ``<=`` or ``>=``."""
    explanation: str
    """One sentence for a Triton operator."""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether this verdict fails the run."""
        return self.status == FAIL

    @property
    def undecided(self) -> bool:
        """The check looked at this subject and cannot judge it: too little data at the configured confidence, or
        evidence of a kind the subject cannot give (a model without execution traces, a level never served). Also
        true of a skip carrying the ``undecided`` evidence key."""
        return self.status == UNDECIDED or (self.status == SKIP and bool(self.evidence.get(UNDECIDED)))


def judge(measured: float, threshold: float, comparison: str) -> str:
    """PASS when ``measured comparison threshold`` holds, FAIL otherwise (NaN never passes)."""
    if math.isnan(measured):
        return FAIL
    ok = measured <= threshold if comparison == "<=" else measured >= threshold
    return PASS if ok else FAIL


class Check(ABC):
    """Base of every check: declares ``name``, ``summary``, ``measure`` and its ``unit``, ``comparison``, ``params``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    measure: ClassVar[str]
    unit: ClassVar[str] = "ratio"
    """Unit of ``measure`` (one of :data:`rmt.core.measures.UNITS`)."""
    comparison: ClassVar[str] = "<="
    params: ClassVar[tuple[Param, ...]] = ()

    @classmethod
    def measure_entry(cls) -> Measure:
        """The check's measure as a :class:`~rmt.core.measures.Measure` (source ``rmt.check``)."""
        return Measure(cls.measure, cls.unit, "rmt.check", "lower" if cls.comparison == "<=" else "higher",
                       f"{cls.name} check: {cls.summary}")

    def __init__(self, values: Mapping[str, Any] | None = None, *, required: bool = False) -> None:
        """``values``: parameter name → written value (defaults for the rest). ``required``: the user asked for
        this check explicitly, so missing evidence fails it instead of skipping it."""
        values = dict(values or {})
        known = {p.name for p in self.params}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown parameter {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
        self.raw: dict[str, Any] = {p.name: values.get(p.name, p.default) for p in self.params}
        self.values: dict[str, Any] = {}
        for p in self.params:
            try:
                self.values[p.name] = p.parse(self.raw[p.name])
            except ValueError as exc:
                raise ValueError(f"{p.name}: {exc}") from None
        self.required = required

    @abstractmethod
    def evaluate(self, run: RunInputs) -> list[Verdict]:
        """One verdict per subject found in ``run`` (at least one: a skip when there is nothing to judge)."""

    def run(self, run: RunInputs) -> list[Verdict]:
        """:meth:`evaluate`, plus a FAIL when the check was required but every subject was skipped for want of data
        (an undecided subject is an answer: the check says it cannot judge it, which a longer run would not change)."""
        verdicts = self.evaluate(run)
        if self.required and not any(v.status in (PASS, FAIL, WARN) or v.undecided for v in verdicts):
            verdicts += self.no_evidence("subject with enough data", f"every subject was skipped, but {self.name} "
                                         "was asked for explicitly: record more data or drop the check")
        return verdicts

    def verdict(self, subject: str, measured: float, threshold: float, explanation: str,
                evidence: dict[str, Any] | None = None, *, status: str | None = None) -> Verdict:
        """A verdict of this check; the status is judged from measured vs threshold unless given."""
        return Verdict(self.name, subject, status or judge(measured, threshold, self.comparison), self.measure,
                       None if math.isnan(measured) else measured, threshold, self.comparison, explanation,
                       evidence or {})

    def cannot_judge(self, subject: str, reason: str, evidence: dict[str, Any] | None = None) -> Verdict:
        """An undecided verdict: ``subject`` is there, but this check cannot judge it (``reason`` says why and what
        would let it); never a pass, never a failure, whether or not the check was required."""
        return Verdict(self.name, subject, UNDECIDED, self.measure, None, None, self.comparison, reason,
                       {**(evidence or {}), UNDECIDED: reason})

    def no_evidence(self, what: str, reason: str | None = None) -> list[Verdict]:
        """The verdict when the run holds nothing this check can judge (no ``what``, or ``reason``): skip, or
        fail when the check was required."""
        status = FAIL if self.required else SKIP
        reason = reason or f"no {what} in the run directory"
        if self.required:
            reason += f": {self.name} was asked for explicitly, so this fails; record {what} or drop the check"
        return [Verdict(self.name, "-", status, self.measure, None, None, self.comparison, reason)]
