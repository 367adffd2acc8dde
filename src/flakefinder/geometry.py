"""Polygon and box geometry shared across layers (numpy only).

A polygon is a sequence of (x, y) vertices or an (N, 2) array; a box is
``(x_min, y_min, x_max, y_max)``. This is the one home of :func:`polygon_area` (synthetic
chips, annotations, chip truth and the heterostructure designer all use it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence


def polygon_area(points: np.ndarray | Sequence[tuple[float, float]]) -> float:
    """Absolute shoelace area of a simple polygon (0 for fewer than three vertices).

    Computed as ``|x · roll(y) - y · roll(x)| / 2`` with numpy dot products; synthetic chip
    generation compares these areas with thresholds, so the formula (and its rounding) is
    fixed.
    """
    if len(points) < 3:
        return 0.0
    p = np.asarray(points, dtype=float)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_bbox(points: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` of the vertices (at least one)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))
