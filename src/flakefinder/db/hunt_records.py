"""Frozen values of the hunt tables (passes, revisits, close-ups). No SQLAlchemy here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from flakefinder.db.records import ScanStatus
    from flakefinder.scan.throughput import PassReport


@dataclass(frozen=True)
class PassInfo:
    """One pass and its progress (``n_done`` of ``n_planned``: tiles, or flakes visited)."""

    id: int
    chip_id: int
    scan_id: int | None
    kind: str
    objective: str
    um_per_px: float
    status: ScanStatus
    n_planned: int
    n_done: int
    settings: dict[str, Any] = field(hash=False, compare=False)
    report: PassReport | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def progress(self) -> float:
        if self.n_planned <= 0:
            return 1.0 if self.status.value == "finished" else 0.0
        return min(1.0, self.n_done / self.n_planned)


@dataclass(frozen=True)
class CloseupInfo:
    id: int
    revisit_id: int
    frame_index: int
    x_um: float
    y_um: float
    z_um: float
    z_offset_um: float
    exposure_ms: float
    width_px: int
    height_px: int
    um_per_px: float
    sharpness: float
    file_path: str | None
    acquired_at: datetime


@dataclass(frozen=True)
class RevisitInfo:
    """One stored visit of a flake, with its close-ups (frame order)."""

    id: int
    pass_id: int
    flake_id: int
    status: str
    message: str
    objective: str
    um_per_px: float
    focus_z_um: float | None
    material: str | None
    layer_class: str | None
    layer_count: int | None
    confidence: float | None
    polygon_um: tuple[tuple[float, float], ...]
    polygon_px: tuple[tuple[float, float], ...]
    area_um2: float | None
    iou_with_search: float | None
    detector: str
    detector_version: str
    created_at: datetime
    closeups: tuple[CloseupInfo, ...] = ()
