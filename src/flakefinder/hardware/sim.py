"""A simulated microscope over a virtual chip: stage coordinates are chip coordinates (µm).

The camera renders the field of view at the current stage position through a *renderer*
callable with the signature of :func:`flakefinder.synth.render_view`::

    renderer(chip, center_x_um, center_y_um, width_px, height_px, um_per_px,
             *, focus_error_um=..., seed=..., [settings=...]) -> (H, W, 3) uint8

so tests can pass a small fake. The focus error is ``z - focal_plane(x, y)`` with the focal
plane ``z0 + dz_dx * x + dz_dy * y`` (a tilted chip). Frames are deterministic per
(stage position, focus position, seed, number of earlier frames at that position), so a scan
tile looks the same in every process (exact resume).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.errors import StageLimitError
from flakefinder.hardware.protocols import Microscope, StageLimits

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flakefinder.hardware.objectives import Objective

Renderer = Callable[..., np.ndarray]

#: Stage travel outside the chip that the simulated stage allows (µm).
DEFAULT_STAGE_MARGIN_UM = 5000.0
#: The sample holder around a chip (``simulated_microscope(chip_edge=True)``): reflectance
#: relative to the bare substrate for the default renderer, camera value for other renderers.
HOLDER_REFLECTANCE = 0.25
HOLDER_RGB = (38, 36, 40)


def format_limits(limits: StageLimits) -> str:
    return f"x {limits.x_min_um:g}..{limits.x_max_um:g} µm, y {limits.y_min_um:g}..{limits.y_max_um:g} µm"


class SimStage:
    """XY stage with travel limits and a move time that ``wait_for_xy`` honours: a fixed
    ``move_time_s`` plus, with ``speed_um_per_s``, the travelled distance at that speed.

    ``sleep`` and ``clock`` are injectable so tests can check the waiting without sleeping.
    """

    def __init__(
        self,
        limits: StageLimits,
        *,
        x_um: float = 0.0,
        y_um: float = 0.0,
        move_time_s: float = 0.0,
        speed_um_per_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if move_time_s < 0:
            raise ValueError(f"move_time_s must be >= 0, got {move_time_s}")
        if speed_um_per_s is not None and not speed_um_per_s > 0:
            raise ValueError(f"speed_um_per_s must be > 0, got {speed_um_per_s}")
        self.speed_um_per_s = speed_um_per_s
        self._limits = limits
        self._x_um = float(x_um)
        self._y_um = float(y_um)
        self.move_time_s = float(move_time_s)
        self._sleep = sleep
        self._clock = clock
        self._move_done_at = clock()
        self.moves = 0

    @property
    def limits(self) -> StageLimits:
        return self._limits

    def get_xy_um(self) -> tuple[float, float]:
        return (self._x_um, self._y_um)

    def move_xy_um(self, x_um: float, y_um: float) -> None:
        if not self._limits.contains(x_um, y_um):
            raise StageLimitError(
                f"stage move to ({x_um:g}, {y_um:g}) µm is outside the stage limits "
                f"({format_limits(self._limits)})"
            )
        travel = 0.0
        if self.speed_um_per_s is not None:
            travel = math.hypot(x_um - self._x_um, y_um - self._y_um) / self.speed_um_per_s
        self._x_um, self._y_um = float(x_um), float(y_um)
        self._move_done_at = self._clock() + self.move_time_s + travel
        self.moves += 1

    def wait_for_xy(self) -> None:
        remaining = self._move_done_at - self._clock()
        if remaining > 0:
            self._sleep(remaining)


class SimFocus:
    """Focus drive; optional travel limits ``(z_min_um, z_max_um)``."""

    def __init__(self, z_um: float = 0.0, *, limits_um: tuple[float, float] | None = None) -> None:
        self._z_um = float(z_um)
        self.limits_um = limits_um

    def get_z_um(self) -> float:
        return self._z_um

    def move_z_um(self, z_um: float) -> None:
        if self.limits_um is not None and not self.limits_um[0] <= z_um <= self.limits_um[1]:
            raise StageLimitError(
                f"focus move to z = {z_um:g} µm is outside the focus limits "
                f"{self.limits_um[0]:g}..{self.limits_um[1]:g} µm"
            )
        self._z_um = float(z_um)


def _default_renderer() -> Renderer:
    import importlib

    synth = importlib.import_module("flakefinder.synth")
    render_view = getattr(synth, "render_view", None)
    if render_view is None:  # package __init__ without re-exports
        render_view = importlib.import_module("flakefinder.synth.render").render_view
    return render_view  # type: ignore[no-any-return]


def frame_seed(seed: int, x_um: float, y_um: float, z_um: float, counter: int) -> int:
    """Noise seed of one simulated frame: a hash of position (to 1 nm), seed and ``counter``
    (the number of frames taken at that position before this one)."""
    key = struct.pack(
        "<qqqqq", seed, round(x_um * 1000), round(y_um * 1000), round(z_um * 1000), counter
    )
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


class SimCamera:
    """Renders the virtual chip under the stage. ``exposure_ms`` scales brightness linearly
    (``reference_exposure_ms`` gives the renderer's own brightness)."""

    def __init__(
        self,
        chip: Any,
        stage: SimStage,
        focus: SimFocus,
        *,
        renderer: Renderer | None = None,
        shape_px: tuple[int, int] = (1024, 1024),
        um_per_px: float = 0.2,
        focus_plane_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
        settings: Any = None,
        seed: int = 0,
        exposure_ms: float = 10.0,
        reference_exposure_ms: float = 10.0,
        noise_per_frame: bool = True,
        chip_edge: bool = False,
    ) -> None:
        if um_per_px <= 0:
            raise ValueError(f"um_per_px must be > 0, got {um_per_px}")
        if len(shape_px) != 2 or min(shape_px) < 8:
            raise ValueError(f"shape_px must be (height_px, width_px) >= 8, got {shape_px}")
        self.chip = chip
        self.stage = stage
        self.focus = focus
        self._renderer = renderer
        self._shape_px = (int(shape_px[0]), int(shape_px[1]))
        self._um_per_px = float(um_per_px)
        self.focus_plane_um = tuple(float(v) for v in focus_plane_um)
        self.settings = settings
        self.seed = int(seed)
        self._exposure_ms = float(exposure_ms)
        self.reference_exposure_ms = float(reference_exposure_ms)
        self.noise_per_frame = noise_per_frame
        self.chip_edge = chip_edge  # False: the substrate goes on for ever
        self.numerical_aperture: float | None = None  # set by a turret: the objective's NA
        self.focus_offset_um = 0.0  # set by a turret: the objective's true focal plane shift
        self.frame_counter = 0  # frames taken by this camera (statistics only)
        self._snaps_at: dict[tuple[int, ...], int] = {}  # frames taken at each pose

    def set_optics(
        self, *, um_per_px: float, numerical_aperture: float | None, focus_offset_um: float
    ) -> None:
        """What an objective change does to the camera: pixel size, NA and focal plane."""
        if not um_per_px > 0:
            raise ValueError(f"um_per_px must be > 0, got {um_per_px}")
        self._um_per_px = float(um_per_px)
        self.numerical_aperture = numerical_aperture
        self.focus_offset_um = float(focus_offset_um)

    @property
    def exposure_ms(self) -> float:
        return self._exposure_ms

    def set_exposure_ms(self, exposure_ms: float) -> None:
        if not exposure_ms > 0:
            raise ValueError(f"exposure_ms must be > 0, got {exposure_ms}")
        self._exposure_ms = float(exposure_ms)

    @property
    def shape_px(self) -> tuple[int, int]:
        return self._shape_px

    @property
    def um_per_px(self) -> float:
        return self._um_per_px

    def focal_plane_z_um(self, x_um: float, y_um: float) -> float:
        z0, dz_dx, dz_dy = self.focus_plane_um
        return z0 + dz_dx * x_um + dz_dy * y_um + self.focus_offset_um

    def _render_settings(self) -> Any:
        """The renderer settings, with the current objective's NA when a turret set one."""
        settings = self.settings
        changes: dict[str, float] = {}
        if self.numerical_aperture is not None:
            changes["numerical_aperture"] = self.numerical_aperture
        if self.chip_edge and self._renderer is None:
            changes["outside_chip_reflectance"] = HOLDER_REFLECTANCE
        if not changes:
            return settings
        if settings is None and self._renderer is None:
            import importlib

            render = importlib.import_module("flakefinder.synth.render")
            return render.RenderSettings(**changes)
        if dataclasses.is_dataclass(settings) and all(hasattr(settings, k) for k in changes):
            return dataclasses.replace(settings, **changes)  # type: ignore[type-var]
        return settings

    def _paint_holder(self, image: np.ndarray, x: float, y: float, seed: int) -> np.ndarray:
        """A renderer of its own (a test's) knows no holder: pixels beyond the chip's edges are
        painted :data:`HOLDER_RGB` (with camera noise) after rendering."""
        width = getattr(self.chip, "width_um", None)
        height = getattr(self.chip, "height_um", None)
        if not self.chip_edge or self._renderer is None or width is None or height is None:
            return image
        h, w = image.shape[:2]
        xs = x + (np.arange(w) + 0.5 - w / 2.0) * self._um_per_px
        ys = y + (np.arange(h) + 0.5 - h / 2.0) * self._um_per_px
        out_x = (xs < 0.0) | (xs > float(width))
        out_y = (ys < 0.0) | (ys > float(height))
        if not out_x.any() and not out_y.any():
            return image
        outside = out_y[:, None] | out_x[None, :]
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, 1.5, size=(int(outside.sum()), 3))
        holder = np.asarray(HOLDER_RGB, dtype=np.float64)[None, :] + noise
        image = np.array(image, copy=True)
        image[outside] = np.clip(np.rint(holder), 0, 255).astype(np.uint8)
        return image

    def snap(self) -> np.ndarray:
        x, y = self.stage.get_xy_um()
        z = self.focus.get_z_um()
        focus_error = z - self.focal_plane_z_um(x, y)
        # The noise of a frame depends only on the seed, the pose (to 1 nm) and how many frames
        # were taken at that pose before: a scan tile's first frame has the same noise in every
        # process, so a resumed scan sees exactly the tiles of an uninterrupted one.
        pose: tuple[int, ...] = (round(x * 1000), round(y * 1000), round(z * 1000))
        if self.numerical_aperture is not None:  # a turret: frames per objective counted apart
            pose = (*pose, round(self._um_per_px * 1e6))
        repeat = self._snaps_at.get(pose, 0)
        self._snaps_at[pose] = repeat + 1
        counter = repeat if self.noise_per_frame else 0
        self.frame_counter += 1
        gain = self._exposure_ms / self.reference_exposure_ms
        settings = self._render_settings()
        post_gain = gain
        if gain != 1.0 and dataclasses.is_dataclass(settings) and hasattr(settings, "illumination"):
            settings = dataclasses.replace(settings, illumination=settings.illumination * gain)  # type: ignore[type-var]
            post_gain = 1.0
        seed = frame_seed(self.seed, x, y, z, counter)
        kwargs: dict[str, Any] = {"focus_error_um": focus_error, "seed": seed}
        if settings is not None:
            kwargs["settings"] = settings
        renderer = self._renderer or _default_renderer()
        h, w = self._shape_px
        image = np.asarray(renderer(self.chip, x, y, w, h, self._um_per_px, **kwargs))
        if post_gain != 1.0:
            image = np.clip(np.rint(image.astype(np.float32) * post_gain), 0, 255).astype(np.uint8)
        return self._paint_holder(image, x, y, seed)


def chip_stage_limits(chip: Any, margin_um: float = DEFAULT_STAGE_MARGIN_UM) -> StageLimits:
    """Stage limits covering the chip (``width_um`` x ``height_um`` from 0) plus a margin."""
    return StageLimits(
        -margin_um,
        float(chip.width_um) + margin_um,
        -margin_um,
        float(chip.height_um) + margin_um,
    )


def simulated_microscope(
    chip: Any,
    *,
    shape_px: tuple[int, int] = (1024, 1024),
    um_per_px: float = 0.2,
    focus_plane_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
    move_time_s: float = 0.0,
    speed_um_per_s: float | None = None,
    settings: Any = None,
    seed: int = 0,
    limits: StageLimits | None = None,
    renderer: Renderer | None = None,
    exposure_ms: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    objectives: Sequence[Objective] | None = None,
    objective: str | None = None,
    parfocal_error_um: Mapping[str, float] | None = None,
    chip_edge: bool = False,
) -> Microscope:
    """A :class:`Microscope` whose camera renders ``chip`` (a ``synth.VirtualChip`` or any object
    the renderer accepts). The stage starts at the chip centre, focus at the focal plane there.
    ``renderer`` defaults to ``flakefinder.synth.render_view``; ``settings`` to its default.

    With ``objectives`` the microscope has a :class:`SimTurret` starting at ``objective``
    (default: the first) and ``um_per_px`` is ignored: the objective sets the pixel size.
    ``chip_edge`` renders the sample holder (:data:`HOLDER_REFLECTANCE`) beyond the chip's
    edges, blurred by defocus like the chip."""
    if limits is None:
        limits = chip_stage_limits(chip)
    cx, cy = float(chip.width_um) / 2.0, float(chip.height_um) / 2.0
    if not limits.contains(cx, cy):
        cx = min(max(cx, limits.x_min_um), limits.x_max_um)
        cy = min(max(cy, limits.y_min_um), limits.y_max_um)
    stage = SimStage(
        limits, x_um=cx, y_um=cy, move_time_s=move_time_s, speed_um_per_s=speed_um_per_s,
        sleep=sleep,
    )  # fmt: skip
    z0, dz_dx, dz_dy = focus_plane_um
    focus = SimFocus(z0 + dz_dx * cx + dz_dy * cy)
    camera = SimCamera(
        chip,
        stage,
        focus,
        renderer=renderer,
        shape_px=shape_px,
        um_per_px=um_per_px,
        focus_plane_um=focus_plane_um,
        settings=settings,
        seed=seed,
        exposure_ms=exposure_ms,
        chip_edge=chip_edge,
    )
    if not objectives:
        return Microscope(
            stage=stage, focus=focus, camera=camera, objective="sim", name="simulated"
        )
    from flakefinder.hardware.sim_turret import SimTurret

    turret = SimTurret(
        camera,
        objectives,
        objective or objectives[0].name,
        parfocal_error_um=parfocal_error_um,
    )
    focus.move_z_um(camera.focal_plane_z_um(cx, cy))
    return Microscope(
        stage=stage,
        focus=focus,
        camera=camera,
        objective=turret.current().name,
        name="simulated",
        turret=turret,
    )
