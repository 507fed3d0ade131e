"""Charts as server-rendered SVG: no JavaScript library, no image files, safe to embed.

A chart is a handful of polylines on a grid, with its axis labels and a
legend; colours come from CSS classes (``series-0``, ``series-1`` ...), so
the page's stylesheet themes them. Every text in the SVG is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 8, 22, 22


@dataclass(frozen=True)
class Series:
    """One line: its name (the legend) and a value per point (None: no data there)."""

    name: str
    values: Sequence[float | None]


def nice_top(value: float) -> float:
    """A round number at or above ``value`` for the top of the y axis (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def short(value: float, unit: str = "") -> str:
    """``1.2k``, ``350``, ``2.5`` with ``unit`` after it."""
    if value >= 1000:
        text = f"{value / 1000:.1f}".rstrip("0").rstrip(".") + "k"
    elif value >= 10 or value == int(value):
        text = f"{value:.0f}"
    else:
        text = f"{value:.1f}"
    return text + unit


def line_chart(
    title: str, minutes: Sequence[int], series: Sequence[Series], *, unit: str = ""
) -> Markup:
    """An SVG line chart of ``series`` over ``minutes`` (Unix minutes: the x axis)."""
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    peak = max((v for s in series for v in s.values if v is not None), default=0.0)
    top = nice_top(peak)
    count = max(len(minutes), 2)

    def x(i: int) -> float:
        return _LEFT + plot_w * i / (count - 1)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{_LEFT}" y="14">{escape(title)}</text>',
    ]
    for k in range(3):
        value = top * k / 2
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{escape(short(value, unit))}</text>"
        )
    if minutes:
        for i in sorted({0, len(minutes) // 2, len(minutes) - 1}):
            label = datetime.fromtimestamp(minutes[i] * 60).strftime("%H:%M")
            anchor = "start" if i == 0 else "end" if i == len(minutes) - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(label)}</text>"
            )
    legend_x = WIDTH - _RIGHT
    for n, line in reversed(list(enumerate(series))):
        points = _points(line.values, x, y)
        for run in points:
            if len(run) == 1:
                cx, cy = run[0]
                parts.append(f'<circle class="series-{n}" cx="{cx}" cy="{cy}" r="1.5"/>')
            else:
                joined = " ".join(f"{px},{py}" for px, py in run)
                parts.append(f'<polyline class="series-{n}" points="{joined}"/>')
        legend_x -= 8 + 7 * len(line.name)
        parts.append(
            f'<text class="legend series-{n}" x="{legend_x}" y="14">{escape(line.name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # every text in it was escaped above


def _points(
    values: Sequence[float | None], x: Callable[[int], float], y: Callable[[float], float]
) -> list[list[tuple[str, str]]]:
    """The runs of points between gaps (None), as formatted coordinates."""
    runs: list[list[tuple[str, str]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((f"{x(i):.1f}", f"{y(value):.1f}"))
    return [run for run in runs if run]
