"""Typed request and response bodies of the web UI's JSON API (pydantic).

Every number a client sends is bounded here (finite, and inside the ranges of
:mod:`flakefinder.bounds`), so a bad value is a 422 with the field's name before any route runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from flakefinder import bounds
from flakefinder.db.records import Chip, Design, DesignLayer, ScanInfo, StoredFlake
from flakefinder.design.geometry import StackSummary

DbId = Annotated[int, Field(ge=1, le=bounds.SQL_BIGINT_MAX)]
PositionUm = Annotated[
    float,
    Field(ge=bounds.POSITION_UM.lo, le=bounds.POSITION_UM.hi, allow_inf_nan=False),
]
AngleDeg = Annotated[
    float, Field(ge=bounds.ANGLE_DEG.lo, le=bounds.ANGLE_DEG.hi, allow_inf_nan=False)
]


class LayerIn(BaseModel):
    """One flake placed in a design (``order`` 0 is the bottom)."""

    model_config = ConfigDict(extra="forbid")

    flake_id: DbId
    x_um: PositionUm = 0.0
    y_um: PositionUm = 0.0
    rotation_deg: AngleDeg = 0.0
    order: int = Field(0, ge=0, le=10_000)

    def to_layer(self) -> DesignLayer:
        """The layer as the database stores it."""
        return DesignLayer(self.flake_id, self.x_um, self.y_um, self.rotation_deg, self.order)


class DesignIn(BaseModel):
    """A design to create or replace."""

    name: str = Field(min_length=1, max_length=200)
    notes: str = Field("", max_length=10_000)
    layers: list[LayerIn] = Field(default_factory=list, max_length=64)


class PreviewIn(BaseModel):
    """Layers to summarise without saving."""

    layers: list[LayerIn] = Field(max_length=64)


class StatusIn(BaseModel):
    """A flake's new status and, optionally, notes."""

    status: str = Field(max_length=40)
    notes: str | None = Field(None, max_length=10_000)


class FlakeView(BaseModel):
    """A stored flake as the API shows it."""

    id: int
    scan_id: int
    image_id: int | None
    chip_id: int
    material: str
    layer_class: str
    layer_count: int | None
    confidence: float
    polygon_um: list[tuple[float, float]]
    polygon_px: list[tuple[float, float]]
    bbox_um: tuple[float, float, float, float]
    bbox_px: tuple[float, float, float, float]
    area_um2: float
    centroid_um: tuple[float, float]
    contrast_rgb: tuple[float, float, float] | None
    detector: str
    detector_version: str
    status: str
    notes: str
    created_at: str

    @classmethod
    def of(cls, flake: StoredFlake) -> FlakeView:
        """The view of a stored flake."""
        return cls.model_validate(flake.to_dict())


class FlakePage(BaseModel):
    """One page of a flake query and the number of matching flakes."""

    total: int
    flakes: list[FlakeView]


class ChipView(BaseModel):
    """A chip."""

    id: int
    name: str
    materials: list[str]
    oxide_thickness_nm: float

    @classmethod
    def of(cls, chip: Chip) -> ChipView:
        """The view of a chip."""
        return cls(
            id=chip.id,
            name=chip.name,
            materials=list(chip.materials),
            oxide_thickness_nm=chip.oxide_thickness_nm,
        )


class ScanView(BaseModel):
    """A scan and its progress."""

    id: int
    chip: str
    status: str
    tiles_done: int
    n_tiles_planned: int
    progress: float
    n_flakes: int

    @classmethod
    def of(cls, scan: ScanInfo) -> ScanView:
        """The view of a scan."""
        return cls(
            id=scan.id,
            chip=scan.chip_name,
            status=scan.status.value,
            tiles_done=scan.tiles_done,
            n_tiles_planned=scan.n_tiles_planned,
            progress=scan.progress,
            n_flakes=scan.n_flakes,
        )


class PairView(BaseModel):
    """Two neighbouring layers: their overlap and twist."""

    lower: int
    upper: int
    overlap_um2: float
    twist_deg: float


class SummaryView(BaseModel):
    """Areas, stack overlap and neighbouring pairs of a design."""

    areas_um2: list[float]
    stack_overlap_um2: float
    pairs: list[PairView]

    @classmethod
    def of(cls, s: StackSummary) -> SummaryView:
        """The view of a stack summary."""
        return cls(
            areas_um2=list(s.areas_um2),
            stack_overlap_um2=s.stack_overlap_um2,
            pairs=[
                PairView(
                    lower=p.lower, upper=p.upper, overlap_um2=p.overlap_um2, twist_deg=p.twist_deg
                )
                for p in s.pairs
            ],
        )


class StoredLayerView(BaseModel):
    """A design layer as stored (a design saved before validation may hold bad values)."""

    flake_id: int
    x_um: float | None
    y_um: float | None
    rotation_deg: float | None
    order: int

    @classmethod
    def of(cls, layer: DesignLayer) -> StoredLayerView:
        """The view of a stored layer (non-finite numbers become ``null``)."""

        def num(v: float) -> float | None:
            return v if v == v and abs(v) != float("inf") else None

        return cls(
            flake_id=layer.flake_id,
            x_um=num(layer.x_um),
            y_um=num(layer.y_um),
            rotation_deg=num(layer.rotation_deg),
            order=layer.order,
        )


class DesignView(BaseModel):
    """A saved design with its flakes and summary; ``problem`` says why it cannot be drawn."""

    id: int
    name: str
    notes: str
    layers: list[StoredLayerView]
    flakes: list[FlakeView]
    summary: SummaryView | None
    problem: str | None = None
    created_at: str
    updated_at: str


class DesignListItem(BaseModel):
    """A design in the list of designs."""

    id: int
    name: str
    n_layers: int

    @classmethod
    def of(cls, design: Design) -> DesignListItem:
        """The list entry of a design."""
        return cls(id=design.id, name=design.name, n_layers=len(design.layers))
