"""Charts as inline SVG, drawn on the server (no JavaScript chart library).

- :func:`metric_chart`: the metric over versions. Each version with a value is a
  ``<circle class="point">`` carrying ``data-version`` and ``data-value`` and a ``<title>``
  tooltip; the stable and canary versions get the extra class ``stable`` / ``canary``, a ring and
  a text label, so they read apart without colour too.
- :func:`bar_chart`: one value per name (a version's IoU per class), one ``<rect class="bar">``
  each, carrying ``data-name`` and ``data-value``.

Axes are "nice numbers" axes (:func:`nice_ticks`): ticks at steps of 1, 2, 2.5 or 5 times a
power of ten. Colours come from the stylesheet's classes, so the charts follow its dark mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 520, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 40, 30, 36  # margins: y tick labels left, room for a "canary" label right, version numbers below
Y_TICKS = 5
MAX_X_LABELS = 20  # beyond this many versions, label every k-th on the axis


@dataclass(frozen=True)
class Point:
    """One version's value of the metric (None: not measured)."""

    version: int
    value: float | None


NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)  # a tick step is one of these times a power of ten


def nice_step(span: float, ticks: int = Y_TICKS) -> float:
    """The round step (1, 2, 2.5 or 5 x 10^k) that splits ``span`` into about ``ticks - 1`` parts."""
    raw = span / max(ticks - 1, 1) if span > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in NICE_STEPS if raw <= m * power * (1 + 1e-9))


def nice_ticks(lo: float, hi: float, ticks: int = Y_TICKS) -> list[float]:
    """Round tick values from a multiple of the step at or below ``lo`` to one at or above ``hi``."""
    step = nice_step(hi - lo, ticks)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, max(last, first + 1) + 1)]


def tick_label(value: float, step: float) -> str:
    """``value`` with as many decimals as the step needs (0.25 steps: two; 0.05: two; 5: none)."""
    decimals = 0
    while decimals < 12 and abs(round(step, decimals) - step) > 1e-9 * max(step, 1e-12):
        decimals += 1
    return f"{value:.{decimals}f}"


def _y_range(values: list[float]) -> list[float]:
    """Nice ticks around the padded values, kept inside [0, 1] when the values are shares."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 0.05)
    lo, hi = lo - pad, hi + pad
    if min(values) >= 0 and max(values) <= 1:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return nice_ticks(lo, hi)


def metric_chart(points: list[Point], stable: int | None, canary: int | None, metric: str = "mIoU",
                 link: str | None = None) -> str:
    """An SVG line chart of ``metric`` by version; stable and canary marked; each point links to ``link + N`` (an escaped URL prefix)."""
    measured = [p for p in sorted(points, key=lambda p: p.version) if p.value is not None]
    title = f"{metric} by version"
    if not measured:
        return f'<p class="empty">No version has a recorded {escape(metric)} yet.</p>'
    ticks = _y_range([float(p.value) for p in measured if p.value is not None])
    lo, hi, step = ticks[0], ticks[-1], ticks[1] - ticks[0]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if len(measured) == 1 else plot_w * i / (len(measured) - 1))

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        ),
        f"<title>{escape(title)}</title>",
    ]
    for value in ticks:
        ty = y(value)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick_label(value, step)}</text>'
        )
    every = max(1, -(-len(measured) // MAX_X_LABELS))
    for i, p in enumerate(measured):
        if i % every == 0 or i == len(measured) - 1:
            parts.append(f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{p.version}</text>')
    parts.append(f'<text class="axis" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">version</text>')
    parts.append(f'<text class="axis" x="4" y="14">{escape(metric)}</text>')
    line = " ".join(f"{x(i):.1f},{y(float(p.value)):.1f}" for i, p in enumerate(measured) if p.value is not None)
    parts.append(f'<polyline class="line" points="{line}"/>')
    for i, p in enumerate(measured):
        value = float(p.value) if p.value is not None else 0.0
        roles = [r for r, n in (("stable", stable), ("canary", canary)) if n == p.version]
        cx, cy = x(i), y(value)
        label = f"version {p.version}: {metric} {value:.4f}" + "".join(f" ({r})" for r in roles)
        for r in roles:
            parts.append(f'<circle class="ring {r}" cx="{cx:.1f}" cy="{cy:.1f}" r="9"/>')
        classes = " ".join(["point", *roles])
        circle = (
            f'<circle class="{classes}" data-version="{p.version}" data-value="{value:.6f}" '
            f'cx="{cx:.1f}" cy="{cy:.1f}" r="5"><title>{escape(label)}</title></circle>'
        )
        parts.append(f'<a href="{link}{p.version}">{circle}</a>' if link else circle)  # link: escaped by the caller
        for k, r in enumerate(roles):
            parts.append(
                f'<text class="role {r}" x="{cx:.1f}" y="{cy - 14 - 12 * k:.1f}" text-anchor="middle">{r}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


BAR_WIDTH = 420  # narrower than the line chart: on a phone it is scaled down less
BAR_ROW, BAR_LEFT, BAR_RIGHT, BAR_TOP, BAR_BOTTOM = 22, 96, 44, 8, 30  # row height; room for names, values, ticks


def bar_chart(values: dict[str, float], title: str, top: float | None = 1.0) -> str:
    """A horizontal bar per name (in the given order), on a nice axis from 0 to ``top`` (None: the largest value)."""
    if not values:
        return f'<p class="empty">No {escape(title)} recorded.</p>'
    ticks = nice_ticks(0.0, top if top is not None else max(max(values.values()), 1e-9))
    hi, step = ticks[-1], ticks[1] - ticks[0]
    height = BAR_TOP + BAR_ROW * len(values) + BAR_BOTTOM
    plot_w = BAR_WIDTH - BAR_LEFT - BAR_RIGHT

    def x(v: float) -> float:
        return BAR_LEFT + plot_w * max(0.0, min(v, hi)) / hi

    parts = [
        f'<svg class="chart bars" viewBox="0 0 {BAR_WIDTH} {height}" width="{BAR_WIDTH}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    bottom = height - BAR_BOTTOM
    for value in ticks:
        parts.append(f'<line class="grid" x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{BAR_TOP}" y2="{bottom}"/>')
        parts.append(
            f'<text class="tick" x="{x(value):.1f}" y="{bottom + 16}" text-anchor="middle">{tick_label(value, step)}</text>'
        )
    for i, (name, value) in enumerate(values.items()):
        top_y = BAR_TOP + BAR_ROW * i
        parts.append(
            f'<text class="name" x="{BAR_LEFT - 6}" y="{top_y + BAR_ROW / 2 + 4:.1f}" text-anchor="end">{escape(name)}</text>'
            f'<rect class="bar" data-name="{escape(name)}" data-value="{value:.6f}" x="{BAR_LEFT}" y="{top_y + 3}" '
            f'width="{x(value) - BAR_LEFT:.1f}" height="{BAR_ROW - 6}"><title>{escape(name)}: {value:.4f}</title></rect>'
            f'<text class="value" x="{x(value) + 4:.1f}" y="{top_y + BAR_ROW / 2 + 4:.1f}">{value:.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
