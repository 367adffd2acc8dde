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


def _inside(points: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the grid ``xs`` x ``ys`` -> bool (len(ys), len(xs))."""
    inside = np.zeros((len(ys), len(xs)), dtype=bool)
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        if ay == by:
            continue
        crosses = (ys > min(ay, by)) & (ys <= max(ay, by))
        if not crosses.any():
            continue
        x_at = ax + (ys[crosses] - ay) * (bx - ax) / (by - ay)  # edge's x on each row
        inside[crosses] ^= xs[None, :] < x_at[:, None]
    return inside


def polygon_iou(
    a: np.ndarray | Sequence[tuple[float, float]],
    b: np.ndarray | Sequence[tuple[float, float]],
    *,
    samples: int = 400,
) -> float:
    """Intersection over union of two simple polygons, sampled on a ``samples`` x ``samples``
    grid over their joint bounding box (0 when either has fewer than three vertices or they
    do not overlap). Accurate to about 1/``samples`` of the box size at the outlines."""
    if len(a) < 3 or len(b) < 3:
        return 0.0
    pa, pb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    lo = np.minimum(pa.min(axis=0), pb.min(axis=0))
    hi = np.maximum(pa.max(axis=0), pb.max(axis=0))
    if (
        pa[:, 0].max() <= pb[:, 0].min()
        or pb[:, 0].max() <= pa[:, 0].min()
        or pa[:, 1].max() <= pb[:, 1].min()
        or pb[:, 1].max() <= pa[:, 1].min()
    ):
        return 0.0
    xs = lo[0] + (np.arange(samples) + 0.5) * (hi[0] - lo[0]) / samples
    ys = lo[1] + (np.arange(samples) + 0.5) * (hi[1] - lo[1]) / samples
    ma, mb = _inside(pa, xs, ys), _inside(pb, xs, ys)
    union = int(np.count_nonzero(ma | mb))
    return int(np.count_nonzero(ma & mb)) / union if union else 0.0
