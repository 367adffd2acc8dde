"""Frozen values that ``flakefinder.db.Database`` returns. No SQLAlchemy here: safe to import anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from flakefinder.domain import LayerClass


class FlakeStatus(str, Enum):
    """What a person decided about a flake."""

    NEW = "new"  # just detected
    CANDIDATE = "candidate"  # shortlisted for a heterostructure
    USED = "used"  # picked up / built into a device
    REJECTED = "rejected"  # false positive, dirty, broken...

    @classmethod
    def parse(cls, value: str | FlakeStatus) -> FlakeStatus:
        """``value`` as a status; ValueError naming the allowed values otherwise."""
        if isinstance(value, FlakeStatus):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown flake status {value!r}; use one of {allowed}") from None


class ScanStatus(str, Enum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Chip:
    id: int
    name: str
    materials: tuple[str, ...]
    oxide_thickness_nm: float
    notes: str
    created_at: datetime


@dataclass(frozen=True)
class ScanInfo:
    """A scan and its progress (``tiles_done`` of ``n_tiles_planned``)."""

    id: int
    chip_id: int
    chip_name: str
    settings: dict[str, Any] = field(hash=False, compare=False)
    objective: str
    um_per_px: float
    detector: str
    detector_version: str
    n_tiles_planned: int
    started_at: datetime
    finished_at: datetime | None
    status: ScanStatus
    tiles_done: int
    n_flakes: int

    @property
    def progress(self) -> float:
        """Fraction of planned tiles stored, 0..1 (1 when nothing was planned)."""
        if self.n_tiles_planned <= 0:
            return 1.0
        return min(1.0, self.tiles_done / self.n_tiles_planned)


@dataclass(frozen=True)
class ImageInfo:
    id: int
    scan_id: int
    tile_index: int
    x_um: float
    y_um: float
    z_um: float
    width_px: int
    height_px: int
    um_per_px: float
    file_path: str | None
    acquired_at: datetime


@dataclass(frozen=True)
class StoredFlake:
    """A flake row: everything :class:`flakefinder.domain.FlakeRecord` has plus ids, status and notes."""

    id: int
    scan_id: int
    image_id: int | None
    chip_id: int
    material: str
    layer_class: LayerClass
    layer_count: int | None
    confidence: float
    polygon_um: tuple[tuple[float, float], ...]
    polygon_px: tuple[tuple[float, float], ...]
    bbox_um: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    bbox_px: tuple[float, float, float, float]
    area_um2: float
    centroid_um: tuple[float, float]
    contrast_rgb: tuple[float, float, float] | None
    detector: str
    detector_version: str
    status: FlakeStatus
    notes: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as strings, tuples as lists, time as ISO 8601)."""
        return {
            "id": self.id,
            "scan_id": self.scan_id,
            "image_id": self.image_id,
            "chip_id": self.chip_id,
            "material": self.material,
            "layer_class": self.layer_class.value,
            "layer_count": self.layer_count,
            "confidence": self.confidence,
            "polygon_um": [list(p) for p in self.polygon_um],
            "polygon_px": [list(p) for p in self.polygon_px],
            "bbox_um": list(self.bbox_um),
            "bbox_px": list(self.bbox_px),
            "area_um2": self.area_um2,
            "centroid_um": list(self.centroid_um),
            "contrast_rgb": None if self.contrast_rgb is None else list(self.contrast_rgb),
            "detector": self.detector,
            "detector_version": self.detector_version,
            "status": self.status.value,
            "notes": self.notes,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class DesignLayer:
    """One flake placed in a heterostructure design; ``order`` 0 is the bottom layer."""

    flake_id: int
    x_um: float = 0.0
    y_um: float = 0.0
    rotation_deg: float = 0.0
    order: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "flake_id": self.flake_id,
            "x_um": self.x_um,
            "y_um": self.y_um,
            "rotation_deg": self.rotation_deg,
            "order": self.order,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DesignLayer:
        return cls(
            flake_id=int(d["flake_id"]),
            x_um=float(d.get("x_um", 0.0)),
            y_um=float(d.get("y_um", 0.0)),
            rotation_deg=float(d.get("rotation_deg", 0.0)),
            order=int(d.get("order", 0)),
        )


@dataclass(frozen=True)
class Design:
    id: int
    name: str
    layers: tuple[DesignLayer, ...]  # sorted by order
    notes: str
    created_at: datetime
    updated_at: datetime
