"""Server-side SVG charts: a line chart per quantity, presence as bands.

Drawn on the server so the page needs no JavaScript, no chart library and no internet, and
a phone gets a few kilobytes of vector drawing instead of the readings. Colours come from
CSS classes (``c0``..``c7``) so the page's light and dark themes restyle them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from homepoll.web.queries import DAY_MS, HOUR_MS, Range, Series

WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 6, 10, 24
PALETTE = 8
LANE = 30  # px per device in a band chart: its name, then its band, then a gap
GAP_BUCKETS = 6  # a line breaks where this many buckets in a row have no reading


def _fmt(value: float) -> str:
    """Short tick label: 21.5, 400, 0.05."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def time_ticks(start_ms: int, end_ms: int, view: Range) -> list[tuple[int, str]]:
    """Tick positions at local-time boundaries with labels suited to the view's span."""
    if view.span_ms <= DAY_MS:
        step, label = 3 * HOUR_MS, "%H:%M"
    elif view.span_ms <= 7 * DAY_MS:
        step, label = DAY_MS, "%a"
    elif view.span_ms <= 31 * DAY_MS:
        step, label = 7 * DAY_MS, "%d %b"
    else:
        step, label = 0, "%b"
    ticks = []
    moment = datetime.fromtimestamp(start_ms / 1000).astimezone()
    if step == 0:  # months: the first of each
        moment = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while moment.timestamp() * 1000 < end_ms:
            ms = int(moment.timestamp() * 1000)
            if ms >= start_ms:
                ticks.append((ms, moment.strftime(label)))
            year, month = divmod(moment.month, 12)
            moment = moment.replace(year=moment.year + year, month=month + 1)
        return ticks
    offset_ms = int(moment.utcoffset().total_seconds() * 1000) if moment.utcoffset() else 0
    first = ((start_ms + offset_ms) // step + 1) * step - offset_ms
    for ms in range(first, end_ms, step):
        ticks.append((ms, datetime.fromtimestamp(ms / 1000).astimezone().strftime(label)))
    return ticks


class _Frame:
    """Maps time and value to SVG coordinates inside the plot area."""

    def __init__(self, start_ms: int, end_ms: int, low: float, high: float, height: int):
        self.start, self.span = start_ms, max(1, end_ms - start_ms)
        self.x0 = LEFT
        self.low, self.high = low, high if high > low else low + 1.0
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = height - TOP - BOTTOM
        self.height = height

    def left(self, x0: int) -> None:
        """Start the plot area at ``x0`` (band charts need no value axis)."""
        self.plot_w += self.x0 - x0
        self.x0 = x0

    def x(self, ms: int) -> float:
        return self.x0 + (ms - self.start) / self.span * self.plot_w

    def y(self, value: float) -> float:
        return TOP + (1 - (value - self.low) / (self.high - self.low)) * self.plot_h


def _time_axis(frame: _Frame, view: Range, end_ms: int) -> list[str]:
    parts = []
    base = frame.height - BOTTOM
    for ms, label in time_ticks(frame.start, end_ms, view):
        x = frame.x(ms)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{base}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{frame.height - 6}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return parts


def _polylines(points: Sequence[tuple[int, float]], frame: _Frame, gap_ms: int) -> list[str]:
    """Coordinates split where the series has a hole, so a gap is not drawn as a slope."""
    runs: list[list[str]] = [[]]
    previous: int | None = None
    for ms, value in points:
        if previous is not None and ms - previous > gap_ms:
            runs.append([])
        runs[-1].append(f"{frame.x(ms):.1f},{frame.y(value):.1f}")
        previous = ms
    return [" ".join(run) for run in runs if run]


def line_chart(
    title: str, series: Sequence[Series], view: Range, end_ms: int, chart_id: str
) -> str:
    """One quantity: a line per series (device), y axis from the data, x axis the view."""
    start_ms = end_ms - view.span_ms
    values = [v for s in series for _, v in s.points]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or max(abs(high) * 0.05, 0.5)
    floor = low - pad if low < 0 else max(0.0, low - pad)  # lux, %, ppm never go below zero
    ticks = nice_ticks(floor, high + pad)
    frame = _Frame(start_ms, end_ms, ticks[0], ticks[-1], HEIGHT)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t"><title id="{chart_id}-t">{escape(title)}</title>'
    ]
    for tick in ticks:
        y = frame.y(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{_fmt(tick)}</text>'
        )
    parts += _time_axis(frame, view, end_ms)
    for index, one in enumerate(series):
        label = escape(f"{one.name} {one.metric}")
        gap = view.span_ms if one.steady else view.bucket_ms * GAP_BUCKETS
        points = _steps(one.points) if one.steady else one.points
        for coords in _polylines(points, frame, gap):
            parts.append(
                f'<polyline class="line c{index % PALETTE}" data-series="{label}" '
                f'points="{coords}"/>'
            )
        if len(one.points) == 1:  # a lone point would be an invisible line
            x, y = frame.x(one.points[0][0]), frame.y(one.points[0][1])
            parts.append(
                f'<circle class="dot c{index % PALETTE}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _steps(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """A held value drawn flat until the next one: a corner point before every change."""
    out: list[tuple[int, float]] = []
    for ms, value in points:
        if out and out[-1][1] != value:
            out.append((ms, out[-1][1]))
        out.append((ms, value))
    return out


def band_chart(
    title: str, series: Sequence[Series], view: Range, end_ms: int, chart_id: str
) -> str:
    """Yes/no quantities (presence): one lane per device, a filled band while it said yes."""
    start_ms = end_ms - view.span_ms
    height = TOP + BOTTOM + LANE * max(1, len(series))
    frame = _Frame(start_ms, end_ms, 0, 1, height)
    frame.left(16)
    parts = [
        f'<svg class="chart bands" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t"><title id="{chart_id}-t">{escape(title)}</title>'
    ]
    parts += _time_axis(frame, view, end_ms)
    for index, one in enumerate(series):
        top = TOP + index * LANE
        parts.append(
            f'<text class="lane" x="{frame.x0 + 2}" y="{top + 11}">{escape(one.name)}</text>'
        )
        label = escape(one.name)
        for begin, finish in _bands(one.points, view.bucket_ms):
            x1, x2 = frame.x(begin), frame.x(min(finish, end_ms))
            parts.append(
                f'<rect class="band c{index % PALETTE}" data-series="{label}" x="{x1:.1f}" '
                f'y="{top + 16}" width="{max(x2 - x1, 1.0):.1f}" height="{LANE - 20}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bands(points: Sequence[tuple[int, float]], bucket_ms: int) -> list[tuple[int, int]]:
    """Runs of consecutive "yes" buckets as (start ms, end ms)."""
    bands: list[tuple[int, int]] = []
    for ms, value in points:
        if value <= 0:
            continue
        if bands and bands[-1][1] >= ms:
            bands[-1] = (bands[-1][0], ms + bucket_ms)
        else:
            bands.append((ms, ms + bucket_ms))
    return bands
