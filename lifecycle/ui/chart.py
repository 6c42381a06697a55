"""The metric over versions as an inline SVG, drawn on the server (no JavaScript chart library).

Each version with a value is a ``<circle class="point">`` carrying ``data-version`` and
``data-value`` and a ``<title>`` tooltip; the stable and canary versions get the extra class
``stable`` / ``canary``, a ring and a text label, so they read apart without colour too.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 40, 30, 36  # margins: y tick labels left, room for a "canary" label right, version numbers below
Y_TICKS = 5
MAX_X_LABELS = 20  # beyond this many versions, label every k-th on the axis


@dataclass(frozen=True)
class Point:
    """One version's value of the metric (None: not measured)."""

    version: int
    value: float | None


def _y_range(values: list[float]) -> tuple[float, float]:
    """A padded range around the values, kept inside [0, 1] when the values are shares."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 0.05)
    lo, hi = lo - pad, hi + pad
    if min(values) >= 0 and max(values) <= 1:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi


def metric_chart(points: list[Point], stable: int | None, canary: int | None, metric: str = "mIoU") -> str:
    """An SVG line chart of ``metric`` by version; stable and canary marked."""
    measured = [p for p in sorted(points, key=lambda p: p.version) if p.value is not None]
    title = f"{metric} by version"
    if not measured:
        return f'<p class="empty">No version has a recorded {escape(metric)} yet.</p>'
    lo, hi = _y_range([float(p.value) for p in measured if p.value is not None])
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
    for k in range(Y_TICKS):
        value = lo + (hi - lo) * k / (Y_TICKS - 1)
        ty = y(value)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{value:.3f}</text>')
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
        parts.append(
            f'<circle class="{classes}" data-version="{p.version}" data-value="{value:.6f}" '
            f'cx="{cx:.1f}" cy="{cy:.1f}" r="5"><title>{escape(label)}</title></circle>'
        )
        for k, r in enumerate(roles):
            parts.append(
                f'<text class="role {r}" x="{cx:.1f}" y="{cy - 14 - 12 * k:.1f}" text-anchor="middle">{r}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
