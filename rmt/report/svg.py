"""Small, dependency-free SVG charts for the report and the web UI: lines, steps, bars, CDFs, timelines.

Every function returns one ``<svg>`` element as text (no XML namespace URL, no external reference), so a page that
inlines them opens offline. Data are plain sequences of floats; NaN values break a line instead of being drawn as 0.
Colours come from :data:`PALETTE` in order; a series may set its own colour and dash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from rmt.core.fmt import format_bytes, format_us

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
WIDTH, HEIGHT = 720, 280
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 78, 16, 14, 42


@dataclass
class Line:
    """One series of a line chart: x and y of equal length; ``step`` draws a step function (value holds until the
    next x)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = ""
    dash: str = ""
    """SVG ``stroke-dasharray`` (e.g. ``6 4``); empty: solid."""
    step: bool = False
    width: float = 1.6
    points: bool = False
    """Also mark each point with a dot."""


@dataclass
class Axis:
    """An axis: label, optional fixed range, log scale, and a tick formatter name (see :func:`fmt_tick`)."""

    label: str = ""
    lo: float | None = None
    hi: float | None = None
    log: bool = False
    unit: str = ""
    """``bytes``, ``us``, ``s``, ``%`` or '' (plain numbers): chooses the tick format."""


@dataclass
class Band:
    """A shaded x range (e.g. a phase) with a label at the top."""

    x0: float
    x1: float
    label: str
    color: str = "#eef2f7"


@dataclass
class Chart:
    """What a line chart draws."""

    lines: list[Line]
    x: Axis = field(default_factory=Axis)
    y: Axis = field(default_factory=Axis)
    bands: list[Band] = field(default_factory=list)
    title: str = ""


def fmt_tick(value: float, unit: str = "") -> str:
    """A short label for ``value``: binary prefixes for bytes, µs/ms/s for µs, plain otherwise."""
    if not math.isfinite(value):
        return "-"
    if unit == "bytes":
        return format_bytes(value, ".4g")
    if unit == "us":
        return format_us(value, ".3g")
    if unit == "s":
        return f"{value:.4g} s"
    if unit == "%":
        return f"{value:.3g}%"
    return f"{value:.4g}"


def _finite(values: Sequence[float], log: bool) -> list[float]:
    return [v for v in values if isinstance(v, int | float) and math.isfinite(v) and (not log or v > 0)]


def _range(values: list[float], axis: Axis) -> tuple[float, float]:
    lo = axis.lo if axis.lo is not None else (min(values) if values else 0.0)
    hi = axis.hi if axis.hi is not None else (max(values) if values else 1.0)
    if axis.log:
        lo, hi = max(lo, 1e-12), max(hi, 1e-12)
        if hi <= lo:
            lo, hi = lo / 2, hi * 2
        return math.log10(lo), math.log10(hi)
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def _ticks(lo: float, hi: float, log: bool, n: int = 5) -> list[float]:
    """Tick positions in data units (for log axes: powers of ten between lo and hi, which are log10 values)."""
    if log:
        first, last = math.floor(lo), math.ceil(hi)
        every = max(1, math.ceil((last - first) / 6))
        return [10.0 ** e for e in range(first, last + 1, every) if lo - 1e-9 <= e <= hi + 1e-9] or [10.0 ** lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))
    start = float(math.ceil(lo / step) * step)
    out: list[float] = []
    v = start
    while v <= hi + step * 1e-9 and len(out) < 20:
        out.append(round(v, 12))
        v += step
    return out


class _Frame:
    """Maps data to pixels for one chart."""

    def __init__(self, xr: tuple[float, float], yr: tuple[float, float], xlog: bool, ylog: bool,
                 width: int = WIDTH, height: int = HEIGHT) -> None:
        self.xr, self.yr, self.xlog, self.ylog = xr, yr, xlog, ylog
        self.w, self.h = width, height
        self.pw, self.ph = width - MARGIN_L - MARGIN_R, height - MARGIN_T - MARGIN_B

    def px(self, x: float) -> float:
        v = math.log10(x) if self.xlog else x
        return MARGIN_L + (v - self.xr[0]) / (self.xr[1] - self.xr[0]) * self.pw

    def py(self, y: float) -> float:
        v = math.log10(y) if self.ylog else y
        return MARGIN_T + self.ph - (v - self.yr[0]) / (self.yr[1] - self.yr[0]) * self.ph

    def ok(self, x: float, y: float) -> bool:
        return (math.isfinite(x) and math.isfinite(y) and (not self.xlog or x > 0) and (not self.ylog or y > 0))


def _axes(frame: _Frame, x: Axis, y: Axis) -> list[str]:
    out = [f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{frame.pw}" height="{frame.ph}" fill="none" '
           'stroke="#999" stroke-width="0.8"/>']
    for t in _ticks(*frame.yr, y.log):
        py = frame.py(t)
        out.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L + frame.pw}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{MARGIN_L - 4}" y="{py + 4:.1f}" text-anchor="end" class="tick">'
                   f"{escape(fmt_tick(t, y.unit))}</text>")
    for t in _ticks(*frame.xr, x.log):
        px = frame.px(t)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{MARGIN_T}" y2="{MARGIN_T + frame.ph}" stroke="#eee"/>')
        out.append(f'<text x="{px:.1f}" y="{MARGIN_T + frame.ph + 14}" text-anchor="middle" class="tick">'
                   f"{escape(fmt_tick(t, x.unit))}</text>")
    if x.label:
        out.append(f'<text x="{MARGIN_L + frame.pw / 2:.0f}" y="{frame.h - 6}" text-anchor="middle" class="axis">'
                   f"{escape(x.label)}</text>")
    if y.label:
        out.append(f'<text x="12" y="{MARGIN_T + frame.ph / 2:.0f}" text-anchor="middle" class="axis" '
                   f'transform="rotate(-90 12 {MARGIN_T + frame.ph / 2:.0f})">{escape(y.label)}</text>')
    return out


def _path(frame: _Frame, line: Line) -> str:
    """The ``d`` of a path through the line's points, broken at missing values."""
    parts: list[str] = []
    pen_down = False
    prev_y: float | None = None
    for xv, yv in zip(line.x, line.y, strict=True):
        if not frame.ok(float(xv), float(yv)):
            pen_down = False
            continue
        px, py = frame.px(float(xv)), frame.py(float(yv))
        if pen_down and line.step and prev_y is not None:
            parts.append(f"L{px:.1f},{prev_y:.1f}")
        parts.append(f"{'L' if pen_down else 'M'}{px:.1f},{py:.1f}")
        pen_down, prev_y = True, py
    return " ".join(parts)


def _legend(lines: Sequence[tuple[str, str, str]], width: int) -> str:
    items, x, y = [], MARGIN_L + 8, MARGIN_T + 14
    for label, color, dash in lines:
        if x + 20 + 7 * len(label) > width - MARGIN_R:
            x, y = MARGIN_L + 8, y + 15
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" stroke-width="2.5"'
                     f"{dash_attr}/>"
                     f'<text x="{x + 22}" y="{y}" class="legend">{escape(label)}</text>')
        x += 34 + int(6.2 * len(label))
    return f'<g class="legendbox">{"".join(items)}</g>'


def _svg(body: list[str], title: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    head = (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}">')
    return head + (f"<title>{escape(title)}</title>" if title else "") + "".join(body) + "</svg>"


def line_chart(chart: Chart) -> str:
    """A line (or step) chart with axes, optional shaded bands and a legend; empty data gives an empty frame."""
    xs = [v for ln in chart.lines for v in _finite(ln.x, chart.x.log)]
    ys = [v for ln in chart.lines for v in _finite(ln.y, chart.y.log)]
    xs += [v for b in chart.bands for v in (b.x0, b.x1) if math.isfinite(v)]
    frame = _Frame(_range(xs, chart.x), _range(ys, chart.y), chart.x.log, chart.y.log)
    body = []
    for band in chart.bands:
        x0, x1 = max(frame.px(band.x0), MARGIN_L), min(frame.px(band.x1), MARGIN_L + frame.pw)
        if x1 > x0:
            body.append(f'<rect x="{x0:.1f}" y="{MARGIN_T}" width="{x1 - x0:.1f}" height="{frame.ph}" '
                        f'fill="{band.color}"/><text x="{x0 + 3:.1f}" y="{MARGIN_T + frame.ph - 4}" '
                        f'class="band">{escape(band.label)}</text>')
    body += _axes(frame, chart.x, chart.y)
    legend = []
    for i, line in enumerate(chart.lines):
        color = line.color or PALETTE[i % len(PALETTE)]
        d = _path(frame, line)
        dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
        if d:
            body.append(f'<path class="series" data-label="{escape(line.label)}" d="{d}" fill="none" '
                        f'stroke="{color}" stroke-width="{line.width}"{dash}/>')
        if line.points:
            body += [f'<circle cx="{frame.px(float(a)):.1f}" cy="{frame.py(float(b)):.1f}" r="2" fill="{color}"/>'
                     for a, b in zip(line.x, line.y, strict=True) if frame.ok(float(a), float(b))]
        legend.append((line.label, color, line.dash))
    body.append(_legend(legend, frame.w))
    return _svg(body, chart.title)


def bar_chart(groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, y: Axis | None = None,
              title: str = "") -> str:
    """Grouped bars: one group per name in ``groups``, one bar per ``(label, values)`` series in each group."""
    y = y or Axis()
    values = [v for _, vals in series for v in vals if math.isfinite(v)]
    lo = min(0.0, *values) if values else 0.0
    frame = _Frame((0.0, float(max(1, len(groups)))), _range([lo, *values], Axis(lo=y.lo if y.lo is not None else lo,
                                                                                 hi=y.hi)), False, False)
    body = _axes(frame, Axis(), y)[: 1 + 2 * len(_ticks(*frame.yr, False))]
    if y.label:
        body.append(f'<text x="12" y="{MARGIN_T + frame.ph / 2:.0f}" text-anchor="middle" class="axis" '
                    f'transform="rotate(-90 12 {MARGIN_T + frame.ph / 2:.0f})">{escape(y.label)}</text>')
    n = max(1, len(series))
    slot = frame.pw / max(1, len(groups))
    bar_w = slot * 0.8 / n
    for g, name in enumerate(groups):
        gx = MARGIN_L + g * slot
        body.append(f'<text x="{gx + slot / 2:.1f}" y="{MARGIN_T + frame.ph + 14}" text-anchor="middle" '
                    f'class="tick">{escape(name)}</text>')
        for s, (_label, vals) in enumerate(series):
            v = vals[g] if g < len(vals) else math.nan
            if not math.isfinite(v):
                continue
            top, base = frame.py(max(v, 0.0)), frame.py(min(v, 0.0))
            body.append(f'<rect class="bar" x="{gx + slot * 0.1 + s * bar_w:.1f}" y="{top:.1f}" '
                        f'width="{bar_w * 0.92:.1f}" height="{max(base - top, 0.5):.1f}" '
                        f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)}: {fmt_tick(v, y.unit)}</title>'
                        "</rect>")
    body.append(_legend([(label, PALETTE[i % len(PALETTE)], "") for i, (label, _) in enumerate(series)], frame.w))
    return _svg(body, title)


@dataclass
class Span:
    """One interval of a timeline row: ``[x0, x1]`` (a point when equal), its label and colour."""

    x0: float
    x1: float
    label: str
    color: str = "#1f77b4"


def timeline(rows: Sequence[tuple[str, Sequence[Span]]], *, x: Axis | None = None, title: str = "") -> str:
    """A Gantt-like timeline: one row per name, intervals as bars, instants as diamonds."""
    x = x or Axis()
    xs = [v for _, spans in rows for s in spans for v in (s.x0, s.x1) if math.isfinite(v)]
    row_h = 26
    height = MARGIN_T + MARGIN_B + row_h * max(1, len(rows))
    frame = _Frame(_range(xs, x), (0.0, 1.0), x.log, False, height=height)
    body = _axes(frame, x, Axis())
    body = [b for b in body if 'text-anchor="end"' not in b]  # no y ticks
    for r, (name, spans) in enumerate(rows):
        cy = MARGIN_T + r * row_h + row_h / 2
        body.append(f'<text x="{MARGIN_L - 4}" y="{cy + 4:.1f}" text-anchor="end" class="tick">{escape(name)}</text>')
        for s in spans:
            x0, x1 = frame.px(s.x0), frame.px(s.x1)
            tip = f"<title>{escape(name)}: {escape(s.label)}</title>"
            if x1 - x0 < 2:
                body.append(f'<path class="mark" d="M{x0:.1f},{cy - 7:.1f} l6,7 l-6,7 l-6,-7 z" fill="{s.color}">'
                            f"{tip}</path>")
            else:
                body.append(f'<rect class="span" x="{x0:.1f}" y="{cy - 7:.1f}" width="{x1 - x0:.1f}" height="14" '
                            f'fill="{s.color}" opacity="0.8">{tip}</rect>')
    labels = {s.label: s.color for _, spans in rows for s in spans}
    body.append(_legend([(label, color, "") for label, color in labels.items()], frame.w))
    return _svg(body, title, height=height)
