"""Viewport queries for the chip map: the flakes in a rectangle, or clusters when there are too many.

The chip map asks for one rectangle of a chip at a time (the view plus a margin). When at most
``max_flakes`` matching flakes overlap it, their outlines come back; otherwise the rectangle is cut
into square cells (a power-of-two size in µm, so cells stay put while the user pans) and each cell
with flakes comes back as one cluster with its count. Either way the answer stays small, whatever
the number of flakes on the chip.

The rectangle test runs on the ``ix_flakes_chip_bbox`` index (chip, bbox x min/max, y min/max):
the largest flake width of the chip bounds the x range to search, so the index range scanned is
the rectangle's width plus one flake, not everything to its left.

Coordinates are the stored flake coordinates in µm (stage µm; equal to chip µm for the identity
chip frame of simulated chips), the same as ``StoredFlake.bbox_um``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, cast, func, select

from flakefinder.db.models import FlakeRow
from flakefinder.db.queries import FlakeQuery

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

    from flakefinder.db.database import Database

BBox = tuple[float, float, float, float]
MAX_SPAN_UM = 1e7  # 10 m: anything wider is a client error, not a chip
DEFAULT_MAX_FLAKES = 1000
DEFAULT_GRID = 32


@dataclass(frozen=True)
class MapFlake:
    """One flake as the map draws it: outline, centre and what its tooltip says."""

    id: int
    material: str
    layer_class: str
    layer_count: int | None
    area_um2: float
    centroid_um: tuple[float, float]
    polygon_um: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; coordinates rounded to 0.01 µm."""
        return {
            "id": self.id,
            "material": self.material,
            "layer_class": self.layer_class,
            "layer_count": self.layer_count,
            "area_um2": round(self.area_um2, 2),
            "centroid_um": [round(self.centroid_um[0], 2), round(self.centroid_um[1], 2)],
            "polygon_um": [[round(x, 2), round(y, 2)] for x, y in self.polygon_um],
        }


@dataclass(frozen=True)
class MapCluster:
    """The flakes of one grid cell: how many, the mean of their bbox centres, their extent.

    No per-material split: grouping on the index columns alone keeps the query off the table.
    """

    x_um: float
    y_um: float
    count: int
    bbox_um: BBox

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; coordinates rounded to 0.01 µm."""
        return {
            "x_um": round(self.x_um, 2),
            "y_um": round(self.y_um, 2),
            "count": self.count,
            "bbox_um": [round(v, 2) for v in self.bbox_um],
        }


@dataclass(frozen=True)
class ChipViewport:
    """The answer for one rectangle: ``flakes`` or ``clusters`` (never both), and the exact total."""

    chip_id: int
    bbox_um: BBox
    total: int
    flakes: tuple[MapFlake, ...] = ()
    clusters: tuple[MapCluster, ...] = ()
    cell_um: float | None = None

    @property
    def mode(self) -> str:
        """``"clusters"`` when the flakes were aggregated, else ``"flakes"``."""
        return "clusters" if self.cell_um is not None else "flakes"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for the map's API."""
        return {
            "chip_id": self.chip_id,
            "bbox_um": list(self.bbox_um),
            "mode": self.mode,
            "total": self.total,
            "cell_um": self.cell_um,
            "flakes": [f.to_dict() for f in self.flakes],
            "clusters": [c.to_dict() for c in self.clusters],
        }


def check_bbox(bbox_um: BBox) -> BBox:
    """``bbox_um`` as floats, or ValueError unless finite with x0 < x1, y0 < y1, sane span."""
    if len(bbox_um) != 4:
        raise ValueError("a viewport is (x0, y0, x1, y1) in µm")
    x0, y0, x1, y1 = (float(v) for v in bbox_um)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError("viewport coordinates must be finite numbers")
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty viewport: need x0 < x1 and y0 < y1, got {(x0, y0, x1, y1)}")
    if x1 - x0 > MAX_SPAN_UM or y1 - y0 > MAX_SPAN_UM:
        raise ValueError(f"viewport wider than {MAX_SPAN_UM:g} µm")
    if max(abs(x0), abs(y0), abs(x1), abs(y1)) > 10 * MAX_SPAN_UM:
        raise ValueError("viewport coordinates out of range")
    return (x0, y0, x1, y1)


def cell_size_um(bbox_um: BBox, grid: int) -> float:
    """Cluster cell size: the power of two (in µm) nearest above ``max(width, height) / grid``."""
    span = max(bbox_um[2] - bbox_um[0], bbox_um[3] - bbox_um[1])
    return float(2.0 ** math.ceil(math.log2(max(span / grid, 1e-3))))


class ChipMapQueries:
    """Viewport queries on one database; remembers each chip's largest flake size (see module doc).

    The cached size only grows (it is refreshed whenever a chip gets a new highest flake id), so a
    deleted flake can only make the search range a little wider, never miss a flake.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sizes: dict[int, tuple[int, float, float]] = {}  # chip -> (max id, max w, max h)

    def _max_size(self, chip_id: int) -> tuple[float, float]:
        f = FlakeRow
        with self.db.session() as s:
            top = s.scalar(select(func.max(f.id)).where(f.chip_id == chip_id)) or 0
            cached = self._sizes.get(chip_id)
            if cached is not None and cached[0] == top:
                return cached[1], cached[2]
            w, h = s.execute(
                select(
                    func.max(f.bbox_x_max_um - f.bbox_x_min_um),
                    func.max(f.bbox_y_max_um - f.bbox_y_min_um),
                ).where(f.chip_id == chip_id)
            ).one()
        size = (float(w or 0.0), float(h or 0.0))
        self._sizes[chip_id] = (int(top), *size)
        return size

    def bounds(self, chip_id: int) -> BBox | None:
        """(x0, y0, x1, y1) around every flake of the chip, or None when it has none."""
        f = FlakeRow
        with self.db.session() as s:
            row = s.execute(
                select(
                    func.min(f.bbox_x_min_um),
                    func.min(f.bbox_y_min_um),
                    func.max(f.bbox_x_max_um),
                    func.max(f.bbox_y_max_um),
                ).where(f.chip_id == chip_id)
            ).one()
        if row[0] is None:
            return None
        return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))

    @staticmethod
    def _conditions(
        chip_id: int, bbox_um: BBox, filters: FlakeQuery, max_w: float, max_h: float
    ) -> list[ColumnElement[bool]]:
        f = FlakeRow
        x0, y0, x1, y1 = bbox_um
        return [
            *filters.conditions(),
            f.chip_id == chip_id,
            f.bbox_x_min_um >= x0 - max_w,
            f.bbox_x_min_um <= x1,
            f.bbox_x_max_um >= x0,
            f.bbox_y_min_um >= y0 - max_h,
            f.bbox_y_min_um <= y1,
            f.bbox_y_max_um >= y0,
        ]

    def query(
        self,
        chip_id: int,
        bbox_um: BBox,
        filters: FlakeQuery | None = None,
        *,
        max_flakes: int = DEFAULT_MAX_FLAKES,
        grid: int = DEFAULT_GRID,
    ) -> ChipViewport:
        """Flakes of ``chip_id`` overlapping ``bbox_um`` that match ``filters`` (its chip, order
        and paging are ignored): outlines if at most ``max_flakes``, else clusters on a grid of
        about ``grid`` cells across the longer side. ValueError for a bad rectangle or limits."""
        bbox = check_bbox(bbox_um)
        if not 1 <= max_flakes <= 100_000:
            raise ValueError(f"max_flakes must be in 1..100000, got {max_flakes}")
        if not 1 <= grid <= 512:
            raise ValueError(f"grid must be in 1..512, got {grid}")
        max_w, max_h = self._max_size(chip_id)
        cond = self._conditions(chip_id, bbox, filters or FlakeQuery(), max_w, max_h)
        f = FlakeRow
        with self.db.session() as s:
            capped = select(f.id).where(*cond).limit(max_flakes + 1).subquery()
            n = int(s.scalar(select(func.count()).select_from(capped)) or 0)
            if n <= max_flakes:
                rows = s.execute(
                    select(
                        f.id,
                        f.material,
                        f.layer_class,
                        f.layer_count,
                        f.area_um2,
                        f.centroid_x_um,
                        f.centroid_y_um,
                        f.polygon_um,
                    )
                    .where(*cond)
                    .order_by(f.id)
                ).all()
                flakes = tuple(
                    MapFlake(
                        int(r[0]),
                        str(r[1]),
                        str(r[2]),
                        None if r[3] is None else int(r[3]),
                        float(r[4]),
                        (float(r[5]), float(r[6])),
                        tuple((float(p[0]), float(p[1])) for p in r[7] or ()),
                    )
                    for r in rows
                )
                return ChipViewport(chip_id, bbox, len(flakes), flakes=flakes)
            return self._clusters(s, chip_id, bbox, cond, grid, (max_w, max_h))

    @staticmethod
    def _clusters(
        s: Session,
        chip_id: int,
        bbox: BBox,
        cond: list[ColumnElement[bool]],
        grid: int,
        max_size: tuple[float, float],
    ) -> ChipViewport:
        f = FlakeRow
        cell = cell_size_um(bbox, grid)
        # cell indices counted from a cell-aligned origin left of every candidate, so that the
        # values are >= 0 and integer truncation (SQLite's CAST) equals floor
        max_w, max_h = max_size
        ox = math.floor((bbox[0] - max_w) / cell) * cell - cell
        oy = math.floor((bbox[1] - max_h) / cell) * cell - cell
        cx = (f.bbox_x_min_um + f.bbox_x_max_um) / 2
        cy = (f.bbox_y_min_um + f.bbox_y_max_um) / 2
        ix_expr: ColumnElement[Any]
        iy_expr: ColumnElement[Any]
        if s.get_bind().dialect.name == "sqlite":
            ix_expr, iy_expr = cast((cx - ox) / cell, Integer), cast((cy - oy) / cell, Integer)
        else:
            ix_expr, iy_expr = func.floor((cx - ox) / cell), func.floor((cy - oy) / cell)
        ix, iy = ix_expr.label("ix"), iy_expr.label("iy")
        stmt = (
            select(
                ix,
                iy,
                func.count(),
                func.sum(cx),
                func.sum(cy),
                func.min(f.bbox_x_min_um),
                func.min(f.bbox_y_min_um),
                func.max(f.bbox_x_max_um),
                func.max(f.bbox_y_max_um),
            )
            .where(*cond)
            .group_by(ix, iy)
            .order_by(ix, iy)
        )
        clusters = tuple(
            MapCluster(
                float(r[3]) / int(r[2]),
                float(r[4]) / int(r[2]),
                int(r[2]),
                (float(r[5]), float(r[6]), float(r[7]), float(r[8])),
            )
            for r in s.execute(stmt)
        )
        total = sum(c.count for c in clusters)
        return ChipViewport(chip_id, bbox, total, clusters=clusters, cell_um=cell)
