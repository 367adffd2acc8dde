"""Raster scan plans: tile centres covering a chip in serpentine (boustrophedon) order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flakefinder.errors import StageLimitError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.hardware.protocols import StageLimits


@dataclass(frozen=True)
class TilePlan:
    """One field of view of a scan: plan position ``index``, grid ``row``/``col``, stage centre."""

    index: int
    row: int
    col: int
    x_um: float
    y_um: float


def _grid_along(
    start_um: float, stop_um: float, fov_um: float, step_um: float
) -> tuple[float, int]:
    """(first centre, count) of tiles spaced ``step_um`` covering [start, stop], centred on it."""
    length = stop_um - start_um
    n = 1 if length <= fov_um else math.ceil((length - fov_um) / step_um - 1e-9) + 1
    return (start_um + stop_um) / 2.0 - (n - 1) * step_um / 2.0, n


def _tiles_along(start_um: float, stop_um: float, fov_um: float, step_um: float) -> list[float]:
    """Centres of tiles spaced ``step_um`` covering [start, stop], the grid centred on it."""
    first, n = _grid_along(start_um, stop_um, fov_um, step_um)
    return [first + i * step_um for i in range(n)]


def _count_inside(first: float, n: int, step: float, lo: float, hi: float) -> int:
    """How many of the centres ``first + i * step`` (0 <= i < n) lie in [lo, hi]."""
    if n <= 100_000:  # exact, with the same floats as the listed tiles
        return sum(1 for i in range(n) if lo <= first + i * step <= hi)
    i_lo = max(0, math.ceil((lo - first) / step))
    i_hi = min(n - 1, math.floor((hi - first) / step))
    return max(0, i_hi - i_lo + 1)


def plan_raster(
    corners_um: Sequence[tuple[float, float]],
    fov_width_um: float,
    fov_height_um: float,
    overlap: float = 0.1,
    *,
    limits: StageLimits | None = None,
) -> list[TilePlan]:
    """Tiles covering the bounding rectangle of the chip ``corners_um`` (2 to 4 (x, y) points).

    Neighbouring tiles overlap by ``overlap`` of the field of view (step = fov * (1 - overlap));
    the grid is centred on the rectangle. Rows go along +y; even rows run along +x, odd rows
    back along -x. With ``limits``, a plan whose tile centres leave the stage travel raises
    :class:`StageLimitError`.
    """
    pts = [(float(p[0]), float(p[1])) for p in corners_um]
    if not 2 <= len(pts) <= 4:
        raise ValueError(f"give 2 to 4 chip corners (x, y) in µm, got {len(pts)}")
    if fov_width_um <= 0 or fov_height_um <= 0:
        raise ValueError(f"field of view must be > 0, got {fov_width_um} x {fov_height_um} µm")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if not all(math.isfinite(v) for p in pts for v in p):
        raise ValueError(f"chip corners must be finite numbers (µm), got {pts}")
    x_min, x_max = min(p[0] for p in pts), max(p[0] for p in pts)
    y_min, y_max = min(p[1] for p in pts), max(p[1] for p in pts)
    x_step, y_step = fov_width_um * (1.0 - overlap), fov_height_um * (1.0 - overlap)
    if limits is not None:  # before listing the tiles: a far-off area can mean millions of them
        _check_grid_limits(
            _grid_along(x_min, x_max, fov_width_um, x_step),
            _grid_along(y_min, y_max, fov_height_um, y_step),
            x_step,
            y_step,
            limits,
        )
    xs = _tiles_along(x_min, x_max, fov_width_um, x_step)
    ys = _tiles_along(y_min, y_max, fov_height_um, y_step)
    tiles: list[TilePlan] = []
    for row, y in enumerate(ys):
        cols = range(len(xs)) if row % 2 == 0 else range(len(xs) - 1, -1, -1)
        for col in cols:
            tiles.append(TilePlan(len(tiles), row, col, xs[col], y))
    return tiles


def check_plan_limits(tiles: Sequence[TilePlan], limits: StageLimits) -> None:
    """Raise one :class:`StageLimitError` if any tile centre is outside the stage ``limits``."""
    outside = [t for t in tiles if not limits.contains(t.x_um, t.y_um)]
    if not outside:
        return
    x0, x1 = min(t.x_um for t in tiles), max(t.x_um for t in tiles)
    y0, y1 = min(t.y_um for t in tiles), max(t.y_um for t in tiles)
    _raise_limits(len(outside), len(tiles), (x0, x1, y0, y1), limits)


def _check_grid_limits(
    xg: tuple[float, int], yg: tuple[float, int], x_step: float, y_step: float, limits: StageLimits
) -> None:
    """:func:`check_plan_limits` for the grid ``xg`` x ``yg`` (first centre, count), unlisted."""
    (x0, nx), (y0, ny) = xg, yg
    x1, y1 = x0 + (nx - 1) * x_step, y0 + (ny - 1) * y_step
    if limits.contains(x0, y0) and limits.contains(x1, y1):
        return
    inside = _count_inside(x0, nx, x_step, limits.x_min_um, limits.x_max_um) * _count_inside(
        y0, ny, y_step, limits.y_min_um, limits.y_max_um
    )
    _raise_limits(nx * ny - inside, nx * ny, (x0, x1, y0, y1), limits)


def _raise_limits(
    n_out: int, n: int, bounds: tuple[float, float, float, float], limits: StageLimits
) -> None:
    x0, x1, y0, y1 = bounds
    raise StageLimitError(
        f"the scan area is outside the stage limits: {n_out} of {n} tile centres "
        f"(x {x0:g}..{x1:g} µm, y {y0:g}..{y1:g} µm) leave the stage travel "
        f"(x {limits.x_min_um:g}..{limits.x_max_um:g} µm, "
        f"y {limits.y_min_um:g}..{limits.y_max_um:g} µm); check the chip corners"
    )


def plan_bounds_um(tiles: Sequence[TilePlan]) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of the tile centres."""
    if not tiles:
        raise ValueError("empty scan plan")
    return (
        min(t.x_um for t in tiles),
        min(t.y_um for t in tiles),
        max(t.x_um for t in tiles),
        max(t.y_um for t in tiles),
    )
