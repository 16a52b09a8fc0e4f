"""Line charts as plain SVG text (no plotting library): panels of one or more series over x.

    svg = line_panels("title", [("panel title", [("series", xs, ys), ...]), ...])

Two panels per row, each with its y range from 0 to 1.15 x the largest value, the x range from 0
to the largest x, and a legend when a panel has more than one series.
"""

from __future__ import annotations

from collections.abc import Sequence

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
PANEL_W, PANEL_H = 380, 230

Series = tuple[str, Sequence[float], Sequence[float]]


def polyline(xs: Sequence[float], ys: Sequence[float], box: tuple[float, float, float, float], x_max: float,
             y_max: float, color: str = COLORS[0]) -> str:
    x0, y0, w, h = box
    pts = " ".join(f"{x0 + w * x / (x_max or 1.0):.1f},{y0 + h - h * y / (y_max or 1.0):.1f}" for x, y in zip(xs, ys))
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'


def line_panels(title: str, panels: Sequence[tuple[str, Sequence[Series]]], x_unit: str = "") -> str:
    rows = (len(panels) + 1) // 2
    height = 40 + 300 * rows
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{height}" font-family="sans-serif" '
             'font-size="12">', f'<rect width="900" height="{height}" fill="white"/>',
             f'<text x="10" y="16">{title}</text>']
    for k, (panel_title, series) in enumerate(panels):
        x0, y0 = 60 + (k % 2) * 430, 40 + (k // 2) * 300
        box = (x0, y0 + 20, PANEL_W, PANEL_H)
        xs_all = [x for _, xs, _ in series for x in xs]
        ys_all = [y for _, _, ys in series for y in ys]
        x_max = max(xs_all, default=0.0)
        y_max = 1.15 * max(ys_all) if ys_all else 1.0
        parts += [f'<text x="{x0}" y="{y0 + 12}">{panel_title}</text>',
                  f'<rect x="{x0}" y="{y0 + 20}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
                  f'<text x="{x0 - 5}" y="{y0 + 24}" text-anchor="end">{y_max:.3g}</text>',
                  f'<text x="{x0 - 5}" y="{y0 + 20 + PANEL_H}" text-anchor="end">0</text>',
                  f'<text x="{x0 + PANEL_W}" y="{y0 + 36 + PANEL_H}" text-anchor="end">{x_max:.3g}{x_unit}</text>']
        for j, (name, xs, ys) in enumerate(series):
            color = COLORS[j % len(COLORS)]
            if xs:
                parts.append(polyline(xs, ys, box, x_max, y_max, color))
            if len(series) > 1:
                parts.append(f'<text x="{x0 + 8}" y="{y0 + 38 + 14 * j}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
