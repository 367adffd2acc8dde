"""Microscope backend over pymmcore-plus (Micro-Manager's core).

``mmcore_microscope(config_file)`` loads a Micro-Manager hardware configuration; or pass an
already set-up ``core`` (a ``CMMCorePlus`` or a ``UniMMCore`` with Python devices). The XY
stage, focus and camera are the core's current devices. Images from Micro-Manager cameras
(grey 8/12/16-bit, RGB32 packed BGRA) become (H, W, 3) uint8 RGB via
:func:`flakefinder.imaging.to_rgb8`. pymmcore-plus is imported only when a core is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.errors import FlakefinderError, StageLimitError
from flakefinder.hardware.objectives import Objective, find_objective, merge_objectives
from flakefinder.hardware.protocols import Microscope, StageLimits
from flakefinder.imaging import to_rgb8

if TYPE_CHECKING:
    from collections.abc import Sequence

UNLIMITED = StageLimits(-1e9, 1e9, -1e9, 1e9)


class MicroscopeConfigError(FlakefinderError, ValueError):
    """A Micro-Manager configuration that cannot be loaded or lacks a needed device."""


def _require_device(core: Any, getter: str, what: str) -> str:
    label = str(getattr(core, getter)())
    if not label:
        raise MicroscopeConfigError(
            f"the Micro-Manager configuration has no current {what} device "
            f"(core.{getter}() is empty); set one in the configuration"
        )
    return label


class MMCoreStage:
    """The core's XY stage. Micro-Manager does not report travel limits: pass them."""

    def __init__(self, core: Any, *, limits: StageLimits = UNLIMITED) -> None:
        self.core = core
        self.label = _require_device(core, "getXYStageDevice", "XY stage")
        self._limits = limits

    @property
    def limits(self) -> StageLimits:
        return self._limits

    def get_xy_um(self) -> tuple[float, float]:
        x, y = self.core.getXYPosition()
        return (float(x), float(y))

    def move_xy_um(self, x_um: float, y_um: float) -> None:
        if not self._limits.contains(x_um, y_um):
            lim = self._limits
            raise StageLimitError(
                f"stage move to ({x_um:g}, {y_um:g}) µm is outside the stage limits "
                f"(x {lim.x_min_um:g}..{lim.x_max_um:g} µm, y {lim.y_min_um:g}..{lim.y_max_um:g} µm)"
            )
        self.core.setXYPosition(float(x_um), float(y_um))

    def wait_for_xy(self) -> None:
        self.core.waitForDevice(self.label)


class MMCoreFocus:
    """The core's focus (Z stage) device."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.label = _require_device(core, "getFocusDevice", "focus")

    def get_z_um(self) -> float:
        return float(self.core.getPosition())

    def move_z_um(self, z_um: float) -> None:
        self.core.setPosition(float(z_um))
        self.core.waitForDevice(self.label)


def mm_image_to_rgb8(image: np.ndarray, n_components: int = 1) -> np.ndarray:
    """Convert an image as Micro-Manager returns it into (H, W, 3) uint8 RGB.

    * grey uint8/uint16 (H, W) -> grey copied to R, G, B (12-bit data scaled by its range);
    * RGB32 not yet unpacked by pymmcore-plus: (H, W) uint32 with ``n_components == 4``,
      bytes B, G, R, A -> R, G, B;
    * (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped) as pymmcore-plus returns unpacked colour.
    """
    a = np.asarray(image)
    if a.ndim == 2 and (n_components == 4 or a.dtype == np.uint32):
        if a.dtype.itemsize != 4:
            raise FlakefinderError(f"RGB32 image must have 4-byte pixels, got {a.dtype}")
        bgra = np.ascontiguousarray(a).view(np.uint8).reshape(*a.shape, 4)
        return np.ascontiguousarray(bgra[:, :, [2, 1, 0]])
    return to_rgb8(a, what="Micro-Manager camera image")


class MMCoreCamera:
    """The core's camera; ``um_per_px`` as given, else the current objective's (``turret``),
    else from the active pixel-size configuration."""

    def __init__(
        self, core: Any, *, um_per_px: float | None = None, turret: MMCoreTurret | None = None
    ) -> None:
        self.core = core
        self.label = _require_device(core, "getCameraDevice", "camera")
        self._um_per_px = um_per_px
        self.turret = turret

    @property
    def exposure_ms(self) -> float:
        return float(self.core.getExposure())

    def set_exposure_ms(self, exposure_ms: float) -> None:
        if not exposure_ms > 0:
            raise ValueError(f"exposure_ms must be > 0, got {exposure_ms}")
        self.core.setExposure(float(exposure_ms))

    @property
    def shape_px(self) -> tuple[int, int]:
        return (int(self.core.getImageHeight()), int(self.core.getImageWidth()))

    @property
    def um_per_px(self) -> float:
        if self._um_per_px is not None:
            return self._um_per_px
        if self.turret is not None:
            return self.turret.current().pixel_size()
        size = float(self.core.getPixelSizeUm())
        if size <= 0:
            raise MicroscopeConfigError(
                "Micro-Manager reports no pixel size (getPixelSizeUm() == 0): define a pixel "
                "size configuration for the current objective, or pass um_per_px"
            )
        return size

    def snap(self) -> np.ndarray:
        image = self.core.snap()
        return mm_image_to_rgb8(image, int(self.core.getNumberOfComponents()))


def _settings(config_data: Any) -> list[tuple[str, str, str]]:
    """(device, property, value) of every setting of a Micro-Manager configuration (tuples from
    pymmcore-plus, or pymmcore ``PropertySetting`` objects)."""
    out: list[tuple[str, str, str]] = []
    for item in config_data:
        if isinstance(item, tuple) and len(item) == 3:
            out.append((str(item[0]), str(item[1]), str(item[2])))
        else:
            out.append(
                (item.getDeviceLabel(), item.getPropertyName(), item.getPropertyValue())
            )
    return out


def objective_device(core: Any) -> str:
    """The label of the core's objective turret (a state device): the one pymmcore-plus guesses,
    else the one state device the pixel-size configurations depend on."""
    guess = getattr(core, "guessObjectiveDevices", None)
    found = list(guess()) if callable(guess) else []
    if len(found) == 1:
        return str(found[0])
    states = {str(d) for d in core.getLoadedDevicesOfType(_STATE_DEVICE)}
    used = {
        dev
        for cfg in core.getAvailablePixelSizeConfigs()
        for dev, _, _ in _settings(core.getPixelSizeConfigData(cfg))
        if dev in states
    }
    if len(used) == 1:
        return used.pop()
    candidates = sorted(set(found) | used) or sorted(states)
    raise MicroscopeConfigError(
        "cannot tell which state device is the objective turret"
        + (f" (candidates: {', '.join(candidates)})" if candidates else " (no state device)")
        + "; name it (objective_device=...)"
    )


_STATE_DEVICE = 4  # pymmcore DeviceType.StateDevice


class MMCoreTurret:
    """The objective turret (a Micro-Manager state device). Each state label is an objective;
    its pixel size is the one of the pixel-size configuration that selects that label (or
    state); NA, focus offset and setup profile come from ``overrides`` (an objectives file)."""

    def __init__(
        self, core: Any, device: str | None = None, overrides: Sequence[Objective] = ()
    ) -> None:
        self.core = core
        self.device = device or objective_device(core)
        labels = [str(v) for v in core.getStateLabels(self.device)]
        if not labels:
            raise MicroscopeConfigError(f"objective device {self.device!r} has no state labels")
        sizes: dict[str, float] = {}
        for cfg in core.getAvailablePixelSizeConfigs():
            for dev, prop, value in _settings(core.getPixelSizeConfigData(cfg)):
                if dev != self.device:
                    continue
                label = value
                if prop == "State" and value.strip().isdigit() and int(value) < len(labels):
                    label = labels[int(value)]
                if label in labels and float(core.getPixelSizeUmByID(cfg)) > 0:
                    sizes[label] = float(core.getPixelSizeUmByID(cfg))
        base = [Objective(label, sizes.get(label)) for label in labels]
        self._objectives = merge_objectives(base, overrides)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return self._objectives

    def current(self) -> Objective:
        return find_objective(self._objectives, str(self.core.getStateLabel(self.device)))

    def select(self, name: str) -> None:
        self.core.setStateLabel(self.device, find_objective(self._objectives, name).name)
        self.core.waitForDevice(self.device)


@dataclass
class MMCoreMicroscope(Microscope):
    """A :class:`Microscope` that also keeps the pymmcore-plus ``core`` it drives."""

    core: Any = None


def _check_devices(core: Any, path: Path) -> None:
    """Refuse a configuration that does not define the devices a scan drives."""
    roles = {
        "XY stage (Core-XYStage)": core.getXYStageDevice(),
        "camera (Core-Camera)": core.getCameraDevice(),
    }
    missing = [role for role, device in roles.items() if not device]
    if missing:
        raise MicroscopeConfigError(
            f"Micro-Manager configuration {path} defines no {' and no '.join(missing)}; is it a"
            " Micro-Manager .cfg file of this microscope?"
        )


def mmcore_microscope(
    config_file: str | Path | None = None,
    core: Any = None,
    *,
    limits: StageLimits = UNLIMITED,
    um_per_px: float | None = None,
    objective: str = "unknown",
    objectives: Sequence[Objective] | None = None,
    objective_device: str | None = None,
) -> MMCoreMicroscope:
    """A :class:`Microscope` over Micro-Manager: loads ``config_file`` into a new
    ``CMMCorePlus`` (or into ``core`` when both are given), or uses ``core`` as set up.

    With ``objectives`` (an objectives file's, may be empty) or ``objective_device``, the
    microscope gets an :class:`MMCoreTurret` over the core's objective state device, and the
    camera's pixel size follows the current objective."""
    if config_file is None and core is None:
        raise MicroscopeConfigError(
            "give a Micro-Manager configuration file (--mm-config FILE) or a core object"
        )
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise MicroscopeConfigError(f"Micro-Manager configuration file not found: {path}")
        if core is None:
            try:
                from pymmcore_plus import CMMCorePlus
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise MicroscopeConfigError(
                    "pymmcore-plus is not installed: pip install 'flakefinder[microscope]'"
                ) from exc
            core = CMMCorePlus()
        try:
            core.loadSystemConfiguration(str(path))
        except Exception as exc:  # the C++ core raises RuntimeError/OSError with its own text
            raise MicroscopeConfigError(
                f"cannot load Micro-Manager configuration {path}: {exc}"
            ) from exc
        _check_devices(core, path)
    turret = None
    if objectives is not None or objective_device is not None:
        turret = MMCoreTurret(core, objective_device, objectives or ())
        objective = turret.current().name
    return MMCoreMicroscope(
        stage=MMCoreStage(core, limits=limits),
        focus=MMCoreFocus(core),
        camera=MMCoreCamera(core, um_per_px=um_per_px, turret=turret),
        objective=objective,
        name="micro-manager",
        turret=turret,
        core=core,
    )
