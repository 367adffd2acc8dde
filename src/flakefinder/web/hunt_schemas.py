"""Request and response bodies of the hunt API: passes, the search region, close-ups."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from flakefinder.db.hunt_records import PassInfo, RevisitInfo
from flakefinder.scan.region import MAX_EXCLUSIONS, Exclusion, SearchRegion
from flakefinder.web.schemas import PositionUm

RectUm = Annotated[list[PositionUm], Field(min_length=4, max_length=4)]


class ExclusionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["residue", "empty", "user"] = "user"
    rect_um: RectUm


class RegionIn(BaseModel):
    """A search region: the rectangle to search and the rectangles to skip (stage µm)."""

    model_config = ConfigDict(extra="forbid")

    rect_um: RectUm
    exclusions: list[ExclusionIn] = Field(default_factory=list, max_length=MAX_EXCLUSIONS)

    def to_region(self) -> SearchRegion:
        """The region; :class:`flakefinder.scan.region.RegionError` when it is not one."""
        x0, y0, x1, y1 = self.rect_um
        return SearchRegion(
            (x0, y0, x1, y1),
            tuple(
                Exclusion(e.kind, (e.rect_um[0], e.rect_um[1], e.rect_um[2], e.rect_um[3]))
                for e in self.exclusions
            ),
        )


class PassView(BaseModel):
    """One pass and its progress and throughput."""

    id: int
    scan_id: int | None
    kind: str
    objective: str
    um_per_px: float
    status: str
    n_planned: int
    n_done: int
    progress: float
    tiles_per_s: float | None
    hours_per_cm2: float | None
    wall_s: float | None

    @classmethod
    def of(cls, p: PassInfo) -> PassView:
        r = p.report
        return cls(
            id=p.id,
            scan_id=p.scan_id,
            kind=p.kind,
            objective=p.objective,
            um_per_px=p.um_per_px,
            status=p.status.value,
            n_planned=p.n_planned,
            n_done=p.n_done,
            progress=p.progress,
            tiles_per_s=None if r is None else r.tiles_per_s,
            hours_per_cm2=None if r is None or r.frames <= 0 else r.hours_per_cm2,
            wall_s=None if r is None else r.wall_s,
        )


class RegionView(BaseModel):
    """The scan's search region, what the overview proposed, and what the search will do."""

    scan_id: int
    overview_pass_id: int
    region: dict[str, object]
    proposed_region: dict[str, object]
    edited: bool
    editable: bool
    area_um: list[float]
    chip_corners_um: list[list[float]]
    mosaic_url: str | None
    mosaic_extent_um: list[float] | None
    search_objective: str
    search_fov_um: list[float]
    n_tiles: int
    tiles_um: list[list[float]]


class CloseupView(BaseModel):
    id: int
    frame_index: int
    z_um: float
    z_offset_um: float
    exposure_ms: float
    um_per_px: float
    url: str | None


class RevisitView(BaseModel):
    """One visit of a flake at high magnification, with its close-ups."""

    id: int
    pass_id: int
    flake_id: int
    status: str
    message: str
    objective: str
    layer_count: int | None
    layer_class: str | None
    area_um2: float | None
    iou_with_search: float | None
    polygon_um: list[tuple[float, float]]
    closeups: list[CloseupView]

    @classmethod
    def of(cls, r: RevisitInfo) -> RevisitView:
        return cls(
            id=r.id,
            pass_id=r.pass_id,
            flake_id=r.flake_id,
            status=r.status,
            message=r.message,
            objective=r.objective,
            layer_count=r.layer_count,
            layer_class=r.layer_class,
            area_um2=r.area_um2,
            iou_with_search=r.iou_with_search,
            polygon_um=list(r.polygon_um),
            closeups=[
                CloseupView(
                    id=c.id,
                    frame_index=c.frame_index,
                    z_um=c.z_um,
                    z_offset_um=c.z_offset_um,
                    exposure_ms=c.exposure_ms,
                    um_per_px=c.um_per_px,
                    url=f"/closeups/{c.id}.png" if c.file_path else None,
                )
                for c in r.closeups
            ],
        )
