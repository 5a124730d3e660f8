"""Small server-side SVG charts for report.html: no JavaScript, no CDN, readable when printed.

Every mark carries a ``<title>`` (the browser's tooltip) and the axes are labelled, so a chart
still says what it shows when someone only reads the page source.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "histogram", "line_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")

Point = tuple[float, float]


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"


def _frame(width: int, height: int, title: str, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}" class="chart">'
        f"<title>{escape(title)}</title>"
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" class="chart-title">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def line_chart(
    series: Sequence[tuple[str, Sequence[Point]]],
    x_ticks: Sequence[tuple[float, str]],
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    width: int = 540,
    height: int = 300,
) -> str:
    """Lines with dots; a legend on the right. x positions are data units mapped to the ticks' span."""
    left, right, top, bottom = 52, 170, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for x, _ in x_ticks] or [0.0, 1.0]
    x_min, x_max = min(xs), max(xs)
    y_min, y_max = y_range
    if y_max <= y_min:
        y_max = y_min + 1.0

    def px(x: float) -> float:
        return left + (plot_w * (x - x_min) / (x_max - x_min) if x_max > x_min else plot_w / 2)

    def py(y: float) -> float:
        return top + plot_h * (1 - (min(max(y, y_min), y_max) - y_min) / (y_max - y_min))

    body: list[str] = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot-bg"/>'
    ]
    for i in range(5):
        y = y_min + (y_max - y_min) * i / 4
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="grid"/>'
        )
        body.append(
            f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end" class="tick">{_fmt(y)}</text>'
        )
    step = max(1, len(x_ticks) // 10)
    for j, (x, label) in enumerate(x_ticks):
        if j % step and j != len(x_ticks) - 1:
            continue
        body.append(
            f'<text x="{px(x):.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{escape(label)}</text>'
        )
    body.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
    )
    body.append(
        f'<text x="14" y="{top + plot_h / 2:.0f}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.0f})">{escape(y_label)}</text>'
    )
    for n, (name, points) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        if len(points) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for x, y in points:
            body.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(name)}: {_fmt(y)}</title></circle>"
            )
        ly = top + 12 + n * 18
        body.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="12" fill="{color}"/>'
        )
        body.append(
            f'<text x="{left + plot_w + 30}" y="{ly + 1}" class="legend">{escape(name)}</text>'
        )
    return _frame(width, height, title, body, f"{title}: {y_label} by {x_label}")


def histogram(
    values: Sequence[float],
    title: str,
    x_label: str,
    markers: Sequence[tuple[str, float]] = (),
    bins: int = 20,
    width: int = 540,
    height: int = 240,
) -> str:
    """Counts of ``values`` in equal-width bins, with labelled vertical markers (e.g. p50, p95)."""
    left, right, top, bottom = 52, 20, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot-bg"/>'
    ]
    if not values:
        body.append(
            f'<text x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" class="tick">no data</text>'
        )
        return _frame(width, height, title, body, title)
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:  # all equal: a bar in the middle of a visible range
        pad = max(abs(lo) * 0.1, 1.0)
        lo, hi = lo - pad, hi + pad
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    peak = max(counts)
    bar_w = plot_w / bins
    for i, c in enumerate(counts):
        if not c:
            continue
        h = plot_h * c / peak
        a, b = lo + (hi - lo) * i / bins, lo + (hi - lo) * (i + 1) / bins
        body.append(
            f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" class="bar"><title>{c} quer{"y" if c == 1 else "ies"} in {_fmt(a)}–{_fmt(b)}</title></rect>'
        )
    for i in range(5):
        x = lo + (hi - lo) * i / 4
        body.append(
            f'<text x="{left + plot_w * i / 4:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{_fmt(x)}</text>'
        )
    body.append(f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" class="tick">{peak}</text>')
    body.append(f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>')
    body.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
    )
    for n, (name, value) in enumerate(markers):
        x = left + plot_w * (min(max(value, lo), hi) - lo) / (hi - lo)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" class="marker"/>'
        )
        # Labels near the right edge go left of their line, so they stay inside the chart.
        anchor, dx = ("end", -4) if x > left + plot_w * 0.75 else ("start", 4)
        body.append(
            f'<text x="{x + dx:.1f}" y="{top + 12 + n * 14}" text-anchor="{anchor}" class="marker-label">'
            f"{escape(name)} {_fmt(value)}</text>"
        )
    return _frame(width, height, title, body, title)
