"""Raster scan plans: tile centres covering a chip in serpentine (boustrophedon) order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from flakefinder.errors import StageLimitError
from flakefinder.hardware.protocols import StageLimits


@dataclass(frozen=True)
class TilePlan:
    """One field of view of a scan: plan position ``index``, grid ``row``/``col``, stage centre."""

    index: int
    row: int
    col: int
    x_um: float
    y_um: float


def _tiles_along(start_um: float, stop_um: float, fov_um: float, step_um: float) -> list[float]:
    """Centres of tiles spaced ``step_um`` covering [start, stop], the grid centred on it."""
    length = stop_um - start_um
    n = 1 if length <= fov_um else math.ceil((length - fov_um) / step_um - 1e-9) + 1
    first = (start_um + stop_um) / 2.0 - (n - 1) * step_um / 2.0
    return [first + i * step_um for i in range(n)]


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
    x_min, x_max = min(p[0] for p in pts), max(p[0] for p in pts)
    y_min, y_max = min(p[1] for p in pts), max(p[1] for p in pts)
    xs = _tiles_along(x_min, x_max, fov_width_um, fov_width_um * (1.0 - overlap))
    ys = _tiles_along(y_min, y_max, fov_height_um, fov_height_um * (1.0 - overlap))
    tiles: list[TilePlan] = []
    for row, y in enumerate(ys):
        cols = range(len(xs)) if row % 2 == 0 else range(len(xs) - 1, -1, -1)
        for col in cols:
            tiles.append(TilePlan(len(tiles), row, col, xs[col], y))
    if limits is not None:
        check_plan_limits(tiles, limits)
    return tiles


def check_plan_limits(tiles: Sequence[TilePlan], limits: StageLimits) -> None:
    """Raise one :class:`StageLimitError` if any tile centre is outside the stage ``limits``."""
    outside = [t for t in tiles if not limits.contains(t.x_um, t.y_um)]
    if not outside:
        return
    x0, x1 = min(t.x_um for t in tiles), max(t.x_um for t in tiles)
    y0, y1 = min(t.y_um for t in tiles), max(t.y_um for t in tiles)
    raise StageLimitError(
        f"the scan area is outside the stage limits: {len(outside)} of {len(tiles)} tile centres "
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
