"""Source ``triton_metrics``: Triton's ``/metrics`` page, raw (counters stay cumulative; rates are derived later).

Kept: per-model success/failure/inference/execution counters, pending requests, cumulative request, queue and
compute durations (µs), the pinned memory pool, per-GPU memory/utilization/power (DCGM), and the machine-wide CPU
memory gauges — the names in :data:`rmt.core.measures.TRITON_METRICS`, under Triton's own name.
Labels are Triton's (``model``, ``version``, ``reason``, ``gpu_uuid``).

Each distinct ``name{labels}`` is parsed once by ``prometheus_client.parser`` and cached, and only the lines that
changed since the previous page are looked at again (an unchanged page, the common case between Triton's metrics
updates, costs one comparison), so a tick costs one GET. An unreachable, non-200, empty or malformed page is a gap
with the reason, never zeros.
"""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from rmt.collect.http_get import HttpGetter, HttpSource
from rmt.collect.series import Labels, Point, Reading, labels_of
from rmt.collect.target import ServerTarget
from rmt.core.errors import SourceUnavailable
from rmt.core.measures import TRITON_METRICS

SOURCE = "triton_metrics"


class MetricsParser:
    """Parses Triton's exposition text into points, re-parsing only the lines that changed since the last page.

    Triton refreshes its gauges every ``--metrics-interval-ms`` (2 s by default) and its counters as requests
    complete, so most pages equal the previous one and most lines of a changed page are unchanged: an equal page
    returns the previous list of points (the same object), a known line its previous point. A new line is split into
    ``name{labels}`` and value; the ``name{labels}`` part is parsed by ``prometheus_client.parser`` once and cached.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, Labels] | None] = {}
        self._text: str | None = None
        self._lines: dict[str, Point | None] = {}
        """Each line of the previous page → its point (None for comments and series not kept)."""
        self._points: list[Point] = []

    def _series(self, key: str) -> tuple[str, Labels] | None:
        """``(name, labels)`` of a kept series, None for one this source does not keep."""
        if key in self._cache:
            return self._cache[key]
        try:
            samples = [s for fam in text_string_to_metric_families(f"{key} 0\n") for s in fam.samples]
        except (ValueError, IndexError, KeyError) as exc:
            raise SourceUnavailable(f"malformed metrics line {key[:80]!r}: {exc}") from None
        if len(samples) != 1:
            raise SourceUnavailable(f"malformed metrics line {key[:80]!r}")
        name, labels = samples[0].name, samples[0].labels
        cached = (name, labels_of(**labels)) if name in TRITON_METRICS else None
        if len(self._cache) < 100_000:
            self._cache[key] = cached
        return cached

    def _line(self, raw: str) -> Point | None:
        """The point of one line, None for a comment, a blank line or a series not kept."""
        line = raw.strip()
        if not line or line.startswith("#"):
            return None
        close = line.rfind("}")
        cut = close + 1 if close >= 0 else line.find(" ")
        if cut <= 0:
            raise SourceUnavailable(f"malformed metrics line {line[:80]!r}: no value")
        key, rest = line[:cut], line[cut:].split()
        series = self._series(key)
        if series is None:
            return None
        if not rest:
            raise SourceUnavailable(f"malformed metrics line {line[:80]!r}: no value")
        try:
            value = float(rest[0])
        except ValueError:
            raise SourceUnavailable(f"malformed metrics line {line[:80]!r}: value is not a number") from None
        name, labels = series
        return Point(name, labels, value if math.isfinite(value) else math.nan)

    def parse(self, text: str) -> list[Point]:
        """Every kept sample of ``text``; raises SourceUnavailable when a line is malformed.

        The list returned for a page equal to the previous one is the previous list: treat it as read-only."""
        if text == self._text:
            return self._points
        previous = self._lines
        lines: dict[str, Point | None] = {}
        points: list[Point] = []
        for raw in text.splitlines():
            point = previous[raw] if raw in previous else self._line(raw)
            lines[raw] = point
            if point is not None:
                points.append(point)
        self._text, self._lines, self._points = text, lines, points
        return points


class TritonMetricsSource(HttpSource):
    """GETs Triton's metrics page each tick (sent at the start of the tick, taken when it has arrived)."""

    name = SOURCE

    missing_url = "metrics URL unknown until the server is found: pass --metrics-url"

    def __init__(self, target: ServerTarget, *, timeout_s: float = 1.0, http: HttpGetter | None = None,
                 every_s: float = 0.0) -> None:
        super().__init__(target, timeout_s=timeout_s, http=http)
        self.every_s = every_s
        """Read at most this often (0: every tick); see :attr:`rmt.collect.sidecar.SidecarOptions.metrics_every_s`."""
        self.parser = MetricsParser()
        self._body: bytes | None = None
        """The last good page and its points, returned again (the same list) while the page does not change."""
        self._points: list[Point] = []

    def url(self) -> str | None:
        """Triton's metrics page."""
        return self.target.metrics_url()

    def parse(self, url: str, body: bytes) -> Reading:
        """The points of one page (an unchanged page is not even decoded: its previous points, the same list)."""
        if body != self._body:
            points = self.parser.parse(body.decode("utf-8", "replace"))
            if not points:
                raise SourceUnavailable(f"no Triton metrics (nv_*) at {url}: is it tritonserver's metrics port?")
            self._body, self._points = body, points
        return Reading(self._points)
