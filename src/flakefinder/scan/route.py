"""A short stage route through the flakes to revisit: nearest neighbour, then 2-opt.

The route starts at the stage's current position and is open (it does not come back). 2-opt
reverses a stretch of the route whenever that shortens it, until no reversal helps (or a
sweep budget runs out); the result is deterministic for the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

Point = tuple[float, float]


@dataclass(frozen=True)
class Route:
    """``order`` indexes the input points in visiting order; lengths in µm from ``start``."""

    order: tuple[int, ...]
    length_um: float
    naive_length_um: float  # visiting the points in their given order

    @property
    def saving(self) -> float:
        """Fraction of the naive order's travel that the route saves (0..1)."""
        if self.naive_length_um <= 0:
            return 0.0
        return 1.0 - self.length_um / self.naive_length_um


def path_length(start: Point, points: Sequence[Point], order: Sequence[int]) -> float:
    """Travel from ``start`` through ``points`` in ``order`` (straight lines, µm)."""
    if not order:
        return 0.0
    p = np.asarray([start, *(points[i] for i in order)], dtype=np.float64)
    return float(np.hypot(*np.diff(p, axis=0).T).sum())


def nearest_neighbour(start: Point, points: Sequence[Point]) -> list[int]:
    """Greedy order: always the nearest unvisited point next (ties: the lower index)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    left = np.ones(len(p), dtype=bool)
    here = np.asarray(start, dtype=np.float64)
    order: list[int] = []
    for _ in range(len(p)):
        d = np.hypot(p[:, 0] - here[0], p[:, 1] - here[1])
        d[~left] = np.inf
        i = int(np.argmin(d))
        order.append(i)
        left[i] = False
        here = p[i]
    return order


def two_opt(
    start: Point, points: Sequence[Point], order: Sequence[int], max_sweeps: int = 50
) -> list[int]:
    """Improve an open route from ``start`` by 2-opt moves (reverse ``route[i:j+1]``)."""
    route = list(order)
    n = len(route)
    if n < 3:
        return route
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    for _ in range(max_sweeps):
        improved = False
        for i in range(n - 1):
            # edge (a -> b) enters position i; a is the start for i == 0
            a = np.asarray(start) if i == 0 else pts[route[i - 1]]
            b = pts[route[i]]
            js = np.arange(i + 1, n)
            c = pts[[route[j] for j in js]]
            nxt = [route[j + 1] for j in js if j + 1 < n]
            d = np.vstack([pts[nxt], np.full((1, 2), np.nan)]) if len(nxt) < len(js) else pts[nxt]
            ab = np.hypot(*(b - a))
            cd = np.hypot(c[:, 0] - d[:, 0], c[:, 1] - d[:, 1])
            ac = np.hypot(c[:, 0] - a[0], c[:, 1] - a[1])
            bd = np.hypot(b[0] - d[:, 0], b[1] - d[:, 1])
            cd = np.nan_to_num(cd, nan=0.0)  # the last point has no outgoing edge
            bd = np.nan_to_num(bd, nan=0.0)
            gain = ab + cd - ac - bd
            k = int(np.argmax(gain))
            if gain[k] > 1e-9:
                j = int(js[k])
                route[i : j + 1] = route[i : j + 1][::-1]
                improved = True
        if not improved:
            break
    return route


def plan_route(start: Point, points: Sequence[Point]) -> Route:
    """Nearest neighbour plus 2-opt from ``start`` through ``points``, with both lengths."""
    order = two_opt(start, points, nearest_neighbour(start, points))
    naive = list(range(len(points)))
    return Route(tuple(order), path_length(start, points, order), path_length(start, points, naive))
