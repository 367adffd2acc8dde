"""Typed values of the revisit pass: what to visit, what a visit stored, how to visit, and the
storage a revisit needs (``db.hunt.HuntStore`` implements :class:`RevisitStore`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.domain import FlakeRecord, LayerClass
    from flakefinder.scan.throughput import PassReport

Polygon = tuple[tuple[float, float], ...]
Rect = tuple[float, float, float, float]


class RevisitStatus(str, Enum):
    OK = "ok"  # found again; outline and layers refined
    NOT_FOUND = "not_found"  # no detection at this magnification overlaps the flake
    FOCUS_FAILED = "focus_failed"  # no sharpness peak near the predicted focus
    OUTSIDE_LIMITS = "outside_limits"  # the flake lies outside the stage travel
    TOO_LARGE = "too_large"  # larger than the field of view: close-up kept, not refined


@dataclass(frozen=True)
class RevisitTarget:
    """A flake to revisit (stage µm); ``z_um`` is the predicted focus at the revisit
    objective (None: start from the current focus)."""

    flake_id: int
    material: str
    layer_class: LayerClass
    layer_count: int | None
    polygon_um: Polygon
    bbox_um: Rect
    z_um: float | None = None

    @property
    def centre_um(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox_um
        return ((x0 + x1) / 2.0, (y0 + y1) / 2.0)


@dataclass(frozen=True)
class CloseupRecord:
    """One close-up frame of a visit; ``image_path`` is where the pixels were saved."""

    index: int
    x_um: float
    y_um: float
    z_um: float
    z_offset_um: float
    exposure_ms: float
    width_px: int
    height_px: int
    um_per_px: float
    sharpness: float
    image_path: str | None


@dataclass(frozen=True)
class RevisitRecord:
    """The outcome of one flake's visit; the refined fields are set when ``status`` is ok."""

    flake_id: int
    status: RevisitStatus
    message: str
    objective: str
    um_per_px: float
    focus_z_um: float | None = None
    refined: FlakeRecord | None = None
    iou_with_search: float | None = None


class RevisitStore(Protocol):
    """What the revisit pass needs from storage (``db.hunt.HuntStore`` implements it)."""

    def revisited_flakes(self, pass_id: int) -> set[int]:
        """Flake ids already stored for this pass (to resume)."""

    def record_revisit(
        self, pass_id: int, revisit: RevisitRecord, closeups: Sequence[CloseupRecord]
    ) -> None:
        """Store one visit and its close-ups in one transaction."""

    def finish_pass(self, pass_id: int, report: PassReport) -> None:
        """Mark the pass finished with its throughput report."""

    def mark_pass_interrupted(self, pass_id: int) -> None:
        """Mark the pass interrupted (resumable)."""


@dataclass(frozen=True)
class RevisitOptions:
    """How each flake is visited."""

    z_stack: int = 1  # close-up planes (odd: centred on the best focus)
    z_step_um: float = 0.5
    bracket: bool = False  # a second exposure: 0.5x for thick flakes, 1.5x for monolayers
    focus_range_um: float = 6.0  # coarse autofocus span around the predicted focus
    focus_step_um: float = 1.0
    fine_step_um: float = 0.25
    min_peak_gain: float = 0.03  # sharpness peak over the curve's minimum, else focus failed
    min_iou: float = 0.2  # overlap with the search outline to count as found again
    max_fov_fraction: float = 0.9  # larger flakes are not refined (too_large)
