"""Flake search: :class:`FlakeQuery` (a frozen filter) and how it becomes SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select

from flakefinder.db.models import FlakeRow
from flakefinder.db.records import FlakeStatus
from flakefinder.domain import LayerClass

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.sql.elements import ColumnElement

# order_by names; prefix with "-" for descending, e.g. "-area_um2".
ORDER_FIELDS: tuple[str, ...] = (
    "id",
    "area_um2",
    "confidence",
    "layer_count",
    "material",
    "created_at",
    "chip_id",
    "scan_id",
)


def _as_tuple(value: str | Iterable[Any] | None) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, LayerClass, FlakeStatus)):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class FlakeQuery:
    """Which flakes to return. Empty tuples / None mean "no filter". All given filters must match.

    ``materials``, ``layer_classes`` and ``statuses`` accept a single string or any sequence; they are
    stored as tuples (``LayerClass`` / ``FlakeStatus`` members), unknown names raise ValueError.
    ``region_um`` = (x_min, y_min, x_max, y_max) keeps flakes whose bounding box overlaps that chip area.
    ``order_by`` is one of :data:`ORDER_FIELDS`, "-" prefix for descending; ties break by id.
    """

    materials: str | Sequence[str] = ()
    layer_classes: str | Sequence[str] = ()  # LayerClass is a str
    min_layer_count: int | None = None
    max_layer_count: int | None = None
    min_area_um2: float | None = None
    max_area_um2: float | None = None
    min_confidence: float | None = None
    statuses: str | Sequence[str] = ()  # FlakeStatus is a str
    chip_id: int | None = None
    scan_id: int | None = None
    region_um: tuple[float, float, float, float] | None = None
    order_by: str = "id"
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        mats = tuple(str(m) for m in _as_tuple(self.materials))
        object.__setattr__(self, "materials", mats)
        classes: list[LayerClass] = []
        for c in _as_tuple(self.layer_classes):
            try:
                classes.append(LayerClass(c))
            except ValueError:
                raise ValueError(
                    f"unknown layer class {c!r}; use one of mono, few, thick"
                ) from None
        object.__setattr__(self, "layer_classes", tuple(classes))
        statuses = tuple(FlakeStatus.parse(s) for s in _as_tuple(self.statuses))
        object.__setattr__(self, "statuses", statuses)
        if self.order_by.lstrip("-") not in ORDER_FIELDS:
            raise ValueError(
                f"cannot order flakes by {self.order_by!r}; use one of {', '.join(ORDER_FIELDS)}"
                " (prefix '-' for descending)"
            )
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {self.offset}")
        if self.region_um is not None:
            if len(self.region_um) != 4:
                raise ValueError("region_um must be (x_min, y_min, x_max, y_max)")
            object.__setattr__(self, "region_um", tuple(float(v) for v in self.region_um))

    def conditions(self) -> list[ColumnElement[bool]]:
        f = FlakeRow
        cond: list[ColumnElement[bool]] = []
        if self.materials:
            cond.append(f.material.in_(_as_tuple(self.materials)))
        if self.layer_classes:
            cond.append(
                f.layer_class.in_([LayerClass(c).value for c in _as_tuple(self.layer_classes)])
            )
        if self.min_layer_count is not None:
            cond.append(f.layer_count >= self.min_layer_count)
        if self.max_layer_count is not None:
            cond.append(f.layer_count <= self.max_layer_count)
        if self.min_area_um2 is not None:
            cond.append(f.area_um2 >= self.min_area_um2)
        if self.max_area_um2 is not None:
            cond.append(f.area_um2 <= self.max_area_um2)
        if self.min_confidence is not None:
            cond.append(f.confidence >= self.min_confidence)
        if self.statuses:
            cond.append(f.status.in_([FlakeStatus(s).value for s in _as_tuple(self.statuses)]))
        if self.chip_id is not None:
            cond.append(f.chip_id == self.chip_id)
        if self.scan_id is not None:
            cond.append(f.scan_id == self.scan_id)
        if self.region_um is not None:
            x0, y0, x1, y1 = self.region_um
            cond += [
                f.bbox_x_max_um >= x0,
                f.bbox_x_min_um <= x1,
                f.bbox_y_max_um >= y0,
                f.bbox_y_min_um <= y1,
            ]
        return cond

    def select(self) -> Select[Any]:
        """SELECT of the matching rows, ordered and paged."""
        stmt = select(FlakeRow).where(*self.conditions())
        name = self.order_by.lstrip("-")
        col = getattr(FlakeRow, name)
        if self.order_by.startswith("-"):
            stmt = stmt.order_by(col.desc(), FlakeRow.id.desc())
        else:
            stmt = stmt.order_by(col.asc(), FlakeRow.id.asc())
        if self.offset:
            stmt = stmt.offset(self.offset)
        if self.limit is not None:
            stmt = stmt.limit(self.limit)
        return stmt
