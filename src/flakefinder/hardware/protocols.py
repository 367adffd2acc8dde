"""Small device Protocols, in the spirit of ophyd-async: units in every name.

Real backends (``flakefinder.hardware.mmcore``) and the simulation
(``flakefinder.hardware.sim``) implement these; scans only use these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flakefinder.hardware.objectives import ObjectiveTurret

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Camera", "FocusDrive", "Microscope", "ObjectiveTurret", "StageLimits", "XYStage"]


@dataclass(frozen=True)
class StageLimits:
    x_min_um: float
    x_max_um: float
    y_min_um: float
    y_max_um: float

    def contains(self, x_um: float, y_um: float) -> bool:
        return self.x_min_um <= x_um <= self.x_max_um and self.y_min_um <= y_um <= self.y_max_um


@runtime_checkable
class XYStage(Protocol):
    @property
    def limits(self) -> StageLimits: ...

    def get_xy_um(self) -> tuple[float, float]: ...

    def move_xy_um(self, x_um: float, y_um: float) -> None:
        """Start a move; raises StageLimitError outside ``limits``."""

    def wait_for_xy(self) -> None:
        """Block until the last move has finished."""


@runtime_checkable
class FocusDrive(Protocol):
    def get_z_um(self) -> float: ...

    def move_z_um(self, z_um: float) -> None: ...


@runtime_checkable
class Camera(Protocol):
    @property
    def exposure_ms(self) -> float: ...

    def set_exposure_ms(self, exposure_ms: float) -> None: ...

    @property
    def shape_px(self) -> tuple[int, int]:
        """(height_px, width_px) of a frame."""

    @property
    def um_per_px(self) -> float:
        """Pixel size on the sample, for the current objective."""

    def snap(self) -> np.ndarray:
        """Acquire one frame as (H, W, 3) uint8 RGB."""


@dataclass
class Microscope:
    """The devices a scan needs, plus a name for the record. ``turret`` is None for a
    microscope with one objective (``objective`` names it)."""

    stage: XYStage
    focus: FocusDrive
    camera: Camera
    objective: str = "50x"
    name: str = "microscope"
    turret: ObjectiveTurret | None = None
