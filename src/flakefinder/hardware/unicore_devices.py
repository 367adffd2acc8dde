"""Pure-Python Micro-Manager devices (pymmcore-plus ``experimental.unicore``) over the simulation.

They let a ``UniMMCore`` drive the virtual chip, so the Micro-Manager backend
(:mod:`flakefinder.hardware.mmcore`) is exercised without any C++ device adapter::

    core = simulated_unicore(chip, shape_px=(128, 128), um_per_px=0.5, pixel_format="gray16")
    microscope = mmcore_microscope(core=core)

``pixel_format`` picks what the camera hands Micro-Manager: ``"rgb8"`` (H, W, 3) uint8,
``"gray8"``/``"gray16"`` (H, W) grey (16-bit scaled x257), ``"rgb32"`` packed BGRA in (H, W)
uint32 as colour cameras deliver it. pymmcore-plus is imported when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pymmcore_plus.experimental.unicore import (
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    UniMMCore,
    XYStageDevice,
)

from flakefinder.hardware.sim import SimCamera, SimFocus, SimStage, simulated_microscope
from flakefinder.hardware.sim_turret import SimTurret

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flakefinder.hardware.protocols import Microscope

PIXEL_FORMATS = ("rgb8", "gray8", "gray16", "rgb32")


class SimXYStageDevice(XYStageDevice):
    """XY stage device over a :class:`SimStage` (limits enforced by the SimStage)."""

    def __init__(self, stage: SimStage) -> None:
        super().__init__()
        self.stage = stage

    def set_position_um(self, x: float, y: float) -> None:
        self.stage.move_xy_um(x, y)

    def get_position_um(self) -> tuple[float, float]:
        return self.stage.get_xy_um()

    def busy(self) -> bool:
        self.stage.wait_for_xy()  # a simulated move finishes when anybody asks
        return False

    def set_origin_x(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin (chip coordinates)")

    def set_origin_y(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin (chip coordinates)")

    def home(self) -> None:
        self.stage.move_xy_um(0.0, 0.0)

    def stop(self) -> None:
        pass


class SimFocusDevice(StageDevice):
    """Focus (Z stage) device over a :class:`SimFocus`."""

    def __init__(self, focus: SimFocus) -> None:
        super().__init__()
        self.focus = focus

    def set_position_um(self, val: float) -> None:
        self.focus.move_z_um(val)

    def get_position_um(self) -> float:
        return self.focus.get_z_um()

    def home(self) -> None:
        self.focus.move_z_um(0.0)

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        raise NotImplementedError("the simulated focus drive has a fixed origin")


class SimObjectiveDevice(StateDevice):
    """Objective turret (state device) over a :class:`SimTurret`: state i is objective i,
    labelled with its name."""

    def __init__(self, turret: SimTurret) -> None:
        self.turret = turret
        self._names = [o.name for o in turret.objectives]
        super().__init__(dict(enumerate(self._names)))

    def get_state(self) -> int:
        return self._names.index(self.turret.current().name)

    def set_state(self, position: int) -> None:
        self.turret.select(self._names[int(position)])


def rgb8_to_format(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """Encode an (H, W, 3) uint8 frame the way a Micro-Manager camera of ``pixel_format`` would."""
    if pixel_format == "rgb8":
        return image
    if pixel_format in ("gray8", "gray16"):
        grey = np.rint(image.astype(np.float32).mean(axis=2)).astype(np.uint8)
        return cast("np.ndarray", grey if pixel_format == "gray8" else grey.astype(np.uint16) * np.uint16(257))
    if pixel_format == "rgb32":
        h, w, _ = image.shape
        bgra = np.empty((h, w, 4), np.uint8)
        bgra[:, :, 0] = image[:, :, 2]
        bgra[:, :, 1] = image[:, :, 1]
        bgra[:, :, 2] = image[:, :, 0]
        bgra[:, :, 3] = 255
        return bgra.view(np.uint32).reshape(h, w)
    raise ValueError(f"pixel_format {pixel_format!r} is not one of {', '.join(PIXEL_FORMATS)}")


class SimCameraDevice(SimpleCameraDevice):
    """Camera device rendering the chip through a :class:`SimCamera`."""

    def __init__(self, camera: SimCamera, pixel_format: str = "rgb8") -> None:
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"pixel_format {pixel_format!r} is not one of {', '.join(PIXEL_FORMATS)}"
            )
        super().__init__()
        self.camera = camera
        self.pixel_format = pixel_format

    def get_exposure(self) -> float:
        return self.camera.exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self.camera.set_exposure_ms(exposure)

    def sensor_shape(self) -> tuple[int, int] | tuple[int, int, int]:
        h, w = self.camera.shape_px
        return (h, w, 3) if self.pixel_format == "rgb8" else (h, w)

    def dtype(self) -> Any:
        return {"rgb8": np.uint8, "gray8": np.uint8, "gray16": np.uint16, "rgb32": np.uint32}[
            self.pixel_format
        ]

    def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
        buffer[...] = rgb8_to_format(self.camera.snap(), self.pixel_format)
        return {}


def load_sim_devices(
    core: UniMMCore, microscope: Microscope, *, pixel_format: str = "rgb8"
) -> UniMMCore:
    """Load the devices of a simulated ``microscope`` into ``core`` as XY, Z and Camera, make
    them current and define a pixel-size configuration ``sim`` with the camera's pixel size.

    A microscope with a :class:`SimTurret` also gets a state device ``Objective`` and one
    pixel-size configuration ``Res<name>`` per objective that has a pixel size (selected by
    the objective's label), as a Micro-Manager hardware configuration defines them."""
    stage, focus, camera = microscope.stage, microscope.focus, microscope.camera
    if not (
        isinstance(stage, SimStage)
        and isinstance(focus, SimFocus)
        and isinstance(camera, SimCamera)
    ):
        raise TypeError("load_sim_devices needs a microscope from simulated_microscope()")
    core.loadPyDevice("XY", SimXYStageDevice(stage))
    core.loadPyDevice("Z", SimFocusDevice(focus))
    core.loadPyDevice("Camera", SimCameraDevice(camera, pixel_format))
    core.initializeAllDevices()
    core.setXYStageDevice("XY")
    core.setFocusDevice("Z")
    core.setCameraDevice("Camera")
    turret = microscope.turret
    if isinstance(turret, SimTurret):
        core.loadPyDevice("Objective", SimObjectiveDevice(turret))
        core.initializeDevice("Objective")
        for obj in turret.objectives:
            if obj.um_per_px is not None:
                core.definePixelSizeConfig(f"Res{obj.name}", "Objective", "Label", obj.name)
                core.setPixelSizeUm(f"Res{obj.name}", obj.um_per_px)
        return core
    core.definePixelSizeConfig("sim", "Core", "AutoShutter", "1")
    core.setPixelSizeUm("sim", camera.um_per_px)
    core.setPixelSizeConfig("sim")
    return core


def simulated_unicore(chip: Any, *, pixel_format: str = "rgb8", **sim_options: Any) -> UniMMCore:
    """A ``UniMMCore`` driving the virtual ``chip``; ``sim_options`` go to
    :func:`flakefinder.hardware.sim.simulated_microscope`."""
    return load_sim_devices(
        UniMMCore(), simulated_microscope(chip, **sim_options), pixel_format=pixel_format
    )
