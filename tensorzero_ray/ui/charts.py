"""Charts drawn on the server as SVG: axes with readable ticks, gridlines, a legend, and
shaded confidence bands. No JavaScript and nothing fetched, so pages work offline and the
numbers in a chart are the numbers the page was rendered with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape

from markupsafe import Markup

PALETTE = ("#4f46e5", "#0891b2", "#d97706", "#db2777", "#16a34a", "#7c3aed", "#dc2626", "#475569")
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 56


@dataclass
class Series:
    """A line; a point whose y is None is a gap (no data there), drawn as a break."""

    name: str
    points: list[tuple[float, float | None]]
    band: list[tuple[float, float, float]] = field(default_factory=list)  # (x, low, high)


# Steps for time axes, so ticks fall on round times (the minute, the quarter hour, midnight).
TIME_STEPS_S = (
    1, 2, 5, 10, 15, 30, 60, 2 * 60, 5 * 60, 10 * 60, 15 * 60, 30 * 60, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
    12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400,
)  # fmt: skip


def time_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round instants (multiples of a round step, in UTC) inside [low, high]."""
    span = max(high - low, 1.0)
    step = next((s for s in TIME_STEPS_S if span / s <= count), TIME_STEPS_S[-1])
    first = math.ceil(low / step) * step
    return [float(t) for t in range(int(first), int(high) + 1, step)] or [low]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 0.5:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _number(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.3g}"


def _time_label(seconds: float, span: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    if span <= 600 and moment.second:
        return moment.strftime("%H:%M:%S")
    if span <= 2 * 86400:
        return moment.strftime("%H:%M")
    if span <= 90 * 86400:
        return moment.strftime("%b %d")
    return moment.strftime("%Y-%m")


def colors_for(names: list[str]) -> dict[str, str]:
    """One color per name, stable across the charts of a page."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(sorted(names))}


def line_chart(
    series: list[Series],
    *,
    title: str,
    y_label: str,
    time_axis: bool = True,
    colors: dict[str, str] | None = None,
    y_range: tuple[float, float] | None = None,
) -> Markup:
    """An SVG line chart; an empty chart says there is no data yet. `y_range` clips values
    and bands (a proportion's interval stays within 0..1)."""
    drawn = sorted((s for s in series if s.points), key=lambda s: s.name)
    header = f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
    if not drawn:
        return Markup(f'{header}<p class="empty">No data yet.</p></figure>')
    colors = colors or colors_for([s.name for s in drawn])
    if y_range is not None:
        lo_clip, hi_clip = y_range
        drawn = [
            Series(
                s.name,
                s.points,
                [(x, max(lo, lo_clip), min(hi, hi_clip)) for x, lo, hi in s.band],
            )
            for s in drawn
        ]
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points if y is not None] or [0.0]
    ys += [v for s in drawn for _, lo, hi in s.band for v in (lo, hi) if math.isfinite(v)]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y_ticks = nice_ticks(min(min(ys), 0.0), max(ys))
    if y_range is not None:
        y_ticks = [t for t in y_ticks if y_range[0] <= t <= y_range[1]] or y_ticks
    y0, y1 = y_ticks[0], y_ticks[-1]
    if y1 == y0:
        y1 = y0 + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        y = min(max(y, y0), y1)
        return TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" class="chart-svg">',
        f'<text x="14" y="{TOP + plot_h / 2}" transform="rotate(-90 14 {TOP + plot_h / 2})" class="axis-label" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for tick in y_ticks:
        y = py(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_number(tick)}</text>')
    x_ticks = time_ticks(x0, x1) if time_axis else [x0 + (x1 - x0) * i / 4 for i in range(5)]
    for tick in x_ticks:
        x = px(tick)
        label = _time_label(tick, x1 - x0) if time_axis else _number(tick)
        anchor = "start" if x - LEFT < 30 else "end" if LEFT + plot_w - x < 30 else "middle"
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" class="axis"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="{anchor}" class="tick x-tick">{label}</text>'
        )
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" class="axis"/>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" class="axis"/>')
    for s in drawn:
        color = colors.get(s.name, PALETTE[0])
        band = [(x, lo, hi) for x, lo, hi in s.band if math.isfinite(lo) and math.isfinite(hi)]
        if len(band) > 1:
            upper = " ".join(f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in band)
            lower = " ".join(f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(band))
            parts.append(f'<polygon class="ci" points="{upper} {lower}" fill="{color}" opacity="0.15"/>')
        elif band:
            # One point in time: an error bar instead of a band.
            x, lo, hi = band[0]
            parts.append(
                f'<path class="ci" d="M{px(x) - 5:.1f},{py(hi):.1f}h10M{px(x):.1f},{py(hi):.1f}V{py(lo):.1f}'
                f'M{px(x) - 5:.1f},{py(lo):.1f}h10" stroke="{color}" stroke-width="1.5" fill="none"/>'
            )
        for segment in _segments(s.points):
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in segment)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            if len(segment) == 1:  # a point between two gaps: a dot, or it would not show at all
                parts.append(
                    f'<circle cx="{px(segment[0][0]):.1f}" cy="{py(segment[0][1]):.1f}" r="2.5" fill="{color}"/>'
                )
        shown = [(x, y) for x, y in s.points if y is not None]
        for x, y in shown if len(shown) <= 40 else []:
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(s.name)}: {_number(y)}</title></circle>"
            )
    legend_y = HEIGHT - 12
    legend_x = LEFT
    for s in drawn:
        color = colors.get(s.name, PALETTE[0])
        parts.append(f'<rect x="{legend_x}" y="{legend_y - 9}" width="12" height="4" fill="{color}"/>')
        parts.append(f'<text x="{legend_x + 16}" y="{legend_y}" class="legend">{escape(s.name)}</text>')
        legend_x += 28 + 7 * len(s.name)
    parts.append("</svg>")
    return Markup(header + "".join(parts) + "</figure>")


def _segments(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The runs of points between gaps; a line is drawn along each run, never across a gap."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]


def share_bar(shares: dict[str, float], colors: dict[str, str] | None = None) -> Markup:
    """A stacked horizontal bar of shares, with a legend."""
    colors = colors or colors_for(list(shares))
    total = sum(shares.values()) or 1.0
    segments, legend = [], []
    for name, value in shares.items():
        color = colors.get(name, PALETTE[0])
        percent = 100 * value / total
        segments.append(
            f'<span style="width:{percent:.2f}%;background:{color}" title="{escape(name)}: {percent:.1f}%"></span>'
        )
        legend.append(f'<span class="swatch" style="background:{color}"></span>{escape(name)} {percent:.1f}%')
    return Markup(f'<div class="share-bar">{"".join(segments)}</div><p class="legend-row">{"  ".join(legend)}</p>')
