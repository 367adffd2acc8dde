"""The search region: the chip area a search pass covers, minus excluded patches.

The overview pass proposes one (:mod:`flakefinder.scan.overview`); the user may edit it in the
web UI before the search starts; :func:`plan_region` turns it into the search pass's tiles.
A region is a rectangle in stage µm plus excluded rectangles (tape residue, empty areas, or
drawn by the user); a tile is left out when excluded rectangles cover its whole field of view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder import bounds
from flakefinder.errors import FlakefinderError
from flakefinder.scan.plan import TilePlan, check_plan_limits

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flakefinder.hardware.protocols import StageLimits

Rect = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max (stage µm)

EXCLUSION_KINDS = ("residue", "empty", "user")
MAX_EXCLUSIONS = 1000


class RegionError(FlakefinderError, ValueError):
    """A search region that is malformed (the message says what and where)."""


@dataclass(frozen=True)
class Exclusion:
    """A rectangle the search skips: ``residue`` (tape residue seen in the overview),
    ``empty`` (no object at all in the overview) or ``user`` (drawn in the region editor)."""

    kind: str
    rect_um: Rect

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rect_um": list(self.rect_um)}


@dataclass(frozen=True)
class SearchRegion:
    """``rect_um`` to search, less ``exclusions``."""

    rect_um: Rect
    exclusions: tuple[Exclusion, ...] = ()

    def __post_init__(self) -> None:
        _check_rect(self.rect_um, "region")
        if len(self.exclusions) > MAX_EXCLUSIONS:
            raise RegionError(f"a region may have at most {MAX_EXCLUSIONS} exclusions")
        for i, ex in enumerate(self.exclusions):
            if ex.kind not in EXCLUSION_KINDS:
                raise RegionError(
                    f"exclusion {i}: kind {ex.kind!r} is not one of {', '.join(EXCLUSION_KINDS)}"
                )
            _check_rect(ex.rect_um, f"exclusion {i}")

    @property
    def width_um(self) -> float:
        return self.rect_um[2] - self.rect_um[0]

    @property
    def height_um(self) -> float:
        return self.rect_um[3] - self.rect_um[1]

    @property
    def area_mm2(self) -> float:
        return self.width_um * self.height_um * 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {
            "rect_um": list(self.rect_um),
            "exclusions": [e.to_dict() for e in self.exclusions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchRegion:
        """Inverse of :meth:`to_dict`; :class:`RegionError` naming the bad field otherwise."""
        if not isinstance(data, dict):
            raise RegionError("a region is an object with rect_um and exclusions")
        raw = data.get("exclusions", [])
        if not isinstance(raw, list):
            raise RegionError("exclusions must be a list")
        if len(raw) > MAX_EXCLUSIONS:
            raise RegionError(f"a region may have at most {MAX_EXCLUSIONS} exclusions")
        exclusions = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise RegionError(f"exclusion {i} must be an object with kind and rect_um")
            exclusions.append(
                Exclusion(
                    str(item.get("kind", "user")), _rect(item.get("rect_um"), f"exclusion {i}")
                )
            )
        return cls(_rect(data.get("rect_um"), "region"), tuple(exclusions))


def _rect(raw: Any, what: str) -> Rect:
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        raise RegionError(f"{what}: rect_um must be [x_min, y_min, x_max, y_max] in µm")
    values = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise RegionError(f"{what}: rect_um must hold 4 numbers, got {raw!r}")
        values.append(float(v))
    return (values[0], values[1], values[2], values[3])


def _check_rect(rect: Rect, what: str) -> None:
    for v in rect:
        if not math.isfinite(v) or not bounds.POSITION_UM.lo <= v <= bounds.POSITION_UM.hi:
            raise RegionError(
                f"{what}: coordinates must be finite numbers in {bounds.POSITION_UM.describe()},"
                f" got {list(rect)}"
            )
    if not (rect[2] > rect[0] and rect[3] > rect[1]):
        raise RegionError(f"{what}: needs x_min < x_max and y_min < y_max, got {list(rect)}")


def _centres(lo: float, hi: float, fov: float, step: float) -> list[float]:
    """Tile centres spaced at most ``step`` whose fields of view stay inside [lo, hi] (one
    tile at the middle when the span is narrower than a field of view)."""
    span = hi - lo
    if span <= fov:
        return [(lo + hi) / 2.0]
    n = math.ceil((span - fov) / step - 1e-9) + 1
    first, last = lo + fov / 2.0, hi - fov / 2.0
    return [first + (last - first) * i / (n - 1) for i in range(n)]


def covered(rect: Rect, covers: Sequence[Rect] | np.ndarray) -> bool:
    """Whether the union of ``covers`` contains all of ``rect`` (exact, by cutting ``rect``
    along every edge of the covering rectangles that meet it)."""
    x0, y0, x1, y1 = rect
    c = np.asarray(covers, dtype=np.float64).reshape(-1, 4)
    c = c[(c[:, 0] < x1) & (c[:, 2] > x0) & (c[:, 1] < y1) & (c[:, 3] > y0)]
    if not len(c):
        return False
    xs = np.unique(np.clip(np.concatenate([[x0, x1], c[:, 0], c[:, 2]]), x0, x1))
    ys = np.unique(np.clip(np.concatenate([[y0, y1], c[:, 1], c[:, 3]]), y0, y1))
    mx, my = (xs[:-1] + xs[1:]) / 2.0, (ys[:-1] + ys[1:]) / 2.0
    for y in my:
        rows = c[(c[:, 1] <= y) & (y <= c[:, 3])]
        inside = ((rows[:, 0][:, None] <= mx[None, :]) & (mx[None, :] <= rows[:, 2][:, None])).any(
            axis=0
        )
        if not inside.all():
            return False
    return True


def plan_region(
    region: SearchRegion,
    fov_width_um: float,
    fov_height_um: float,
    overlap: float = 0.1,
    *,
    limits: StageLimits | None = None,
) -> list[TilePlan]:
    """Serpentine tiles covering ``region`` with every field of view inside its rectangle
    (neighbours overlap by at least ``overlap``), less the tiles whose whole field of view the
    exclusions cover. Indexes are 0..n-1 in scan order. With ``limits``, a tile centre outside
    the stage travel raises :class:`flakefinder.errors.StageLimitError`."""
    if fov_width_um <= 0 or fov_height_um <= 0:
        raise ValueError(f"field of view must be > 0, got {fov_width_um} x {fov_height_um} µm")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    x0, y0, x1, y1 = region.rect_um
    xs = _centres(x0, x1, fov_width_um, fov_width_um * (1.0 - overlap))
    ys = _centres(y0, y1, fov_height_um, fov_height_um * (1.0 - overlap))
    if len(xs) * len(ys) > 10_000_000:
        raise RegionError(
            f"the region needs {len(xs) * len(ys)} tiles at a {fov_width_um:g} µm field of view;"
            " check its rectangle"
        )
    covers = np.asarray([e.rect_um for e in region.exclusions], dtype=np.float64).reshape(-1, 4)
    hw, hh = fov_width_um / 2.0, fov_height_um / 2.0
    tiles: list[TilePlan] = []
    for row, y in enumerate(ys):
        cols = range(len(xs)) if row % 2 == 0 else range(len(xs) - 1, -1, -1)
        for col in cols:
            x = xs[col]
            if len(covers) and covered((x - hw, y - hh, x + hw, y + hh), covers):
                continue
            tiles.append(TilePlan(len(tiles), row, col, x, y))
    if limits is not None and tiles:
        check_plan_limits(tiles, limits)
    return tiles
