"""Plain-Python polygon and box geometry shared across layers (numpy free).

A polygon is a sequence of (x, y) vertices; a box is ``(x_min, y_min, x_max, y_max)``.
"""

from __future__ import annotations

from collections.abc import Sequence


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Shoelace area of a simple polygon (0 for fewer than three vertices)."""
    n = len(points)
    if n < 3:
        return 0.0
    s = 0.0
    for i in range(n):
        x0, y0 = points[i]
        x1, y1 = points[(i + 1) % n]
        s += x0 * y1 - x1 * y0
    return abs(s) / 2.0


def polygon_bbox(points: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` of the vertices (at least one)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))
