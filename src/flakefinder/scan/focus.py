"""Contrast autofocus and a planar focus map for tilted chips.

Sharpness is the variance of the Laplacian of the grey, block-averaged frame, divided by the
squared mean brightness (so it does not depend on exposure). :func:`autofocus` scans a coarse
z range, then a fine range around the best coarse z, and refines the best fine z with a
parabola through it and its two neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.hardware.protocols import Microscope


def sharpness(image: np.ndarray, *, downsample: int = 4) -> float:
    """Normalised variance of the Laplacian of ``image`` block-averaged by ``downsample``."""
    a = np.asarray(image, dtype=np.float64)
    grey = a.mean(axis=2) if a.ndim == 3 else a
    if downsample > 1:
        h = grey.shape[0] // downsample * downsample
        w = grey.shape[1] // downsample * downsample
        grey = grey[:h, :w].reshape(h // downsample, downsample, w // downsample, downsample)
        grey = grey.mean(axis=(1, 3))
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        raise ValueError(
            f"image too small for a sharpness measure after downsampling: {grey.shape}"
        )
    lap = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    mean = float(grey.mean())
    return float(lap.var()) / max(mean * mean, 1e-12)


@dataclass(frozen=True)
class AutofocusResult:
    z_um: float
    sharpness: float
    n_frames: int
    curve: tuple[tuple[float, float], ...]  # (z_um, sharpness) of every frame taken


def _measure(microscope: Microscope, z_um: float, downsample: int) -> float:
    microscope.focus.move_z_um(z_um)
    return sharpness(microscope.camera.snap(), downsample=downsample)


def _parabola_peak(z: Sequence[float], s: Sequence[float], i: int) -> float:
    """Vertex of the parabola through points i-1, i, i+1 (equally spaced), clamped to one step."""
    if i <= 0 or i >= len(z) - 1:
        return z[i]
    step = z[i + 1] - z[i]
    denom = s[i - 1] - 2.0 * s[i] + s[i + 1]
    if denom >= 0:  # not a maximum
        return z[i]
    offset = 0.5 * (s[i - 1] - s[i + 1]) / denom
    return z[i] + float(np.clip(offset, -1.0, 1.0)) * step


def _steps(center: float, half_range: float, step: float) -> list[float]:
    n = int(round(half_range / step))
    return [center + k * step for k in range(-n, n + 1)]


def autofocus(
    microscope: Microscope,
    *,
    center_z_um: float | None = None,
    coarse_range_um: float = 20.0,
    coarse_step_um: float = 2.0,
    fine_step_um: float = 0.25,
    fine_range_um: float | None = None,
    downsample: int = 4,
    refine: bool = True,
) -> AutofocusResult:
    """Find the sharpest z near ``center_z_um`` (default: the current z) and move there.

    Coarse: ``coarse_range_um`` wide in ``coarse_step_um`` steps. Fine: +-``fine_range_um``
    (default one coarse step) in ``fine_step_um`` steps around the best coarse z.
    """
    if coarse_step_um <= 0 or fine_step_um <= 0 or coarse_range_um < 0:
        raise ValueError("autofocus steps must be > 0 and the range >= 0")
    z_start = microscope.focus.get_z_um() if center_z_um is None else center_z_um
    curve: list[tuple[float, float]] = []

    coarse_z = _steps(z_start, coarse_range_um / 2.0, coarse_step_um)
    coarse_s = [_measure(microscope, z, downsample) for z in coarse_z]
    curve += zip(coarse_z, coarse_s, strict=True)
    best_coarse = coarse_z[int(np.argmax(coarse_s))]

    half = coarse_step_um if fine_range_um is None else fine_range_um
    fine_z = _steps(best_coarse, half, fine_step_um)
    fine_s = [_measure(microscope, z, downsample) for z in fine_z]
    curve += zip(fine_z, fine_s, strict=True)
    i = int(np.argmax(fine_s))
    z_best = _parabola_peak(fine_z, fine_s, i) if refine else fine_z[i]

    microscope.focus.move_z_um(z_best)
    return AutofocusResult(
        z_um=float(z_best), sharpness=float(fine_s[i]), n_frames=len(curve), curve=tuple(curve)
    )


@dataclass(frozen=True)
class FocusMap:
    """Focal plane z = z0_um + dz_dx * x_um + dz_dy * y_um (a tilted chip)."""

    z0_um: float
    dz_dx: float = 0.0
    dz_dy: float = 0.0

    def z_at(self, x_um: float, y_um: float) -> float:
        return self.z0_um + self.dz_dx * x_um + self.dz_dy * y_um

    @classmethod
    def fit(cls, points: Sequence[tuple[float, float, float]]) -> FocusMap:
        """Least-squares plane through (x_um, y_um, z_um) points; 1 or 2 points (or points on
        a line) give a flat map at their mean z, since a tilt cannot be determined."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(p) == 0:
            raise ValueError("a focus map needs at least one measured point")
        a = np.column_stack([np.ones(len(p)), p[:, 0], p[:, 1]])
        if len(p) < 3 or np.linalg.matrix_rank(a - a.mean(axis=0) * [0, 1, 1]) < 3:
            return cls(float(p[:, 2].mean()))
        # centre x, y for a well-conditioned solve, then shift the constant back
        mx, my = p[:, 0].mean(), p[:, 1].mean()
        ac = np.column_stack([np.ones(len(p)), p[:, 0] - mx, p[:, 1] - my])
        (c, dx, dy), *_ = np.linalg.lstsq(ac, p[:, 2], rcond=None)
        return cls(float(c - dx * mx - dy * my), float(dx), float(dy))

    def residuals_um(self, points: Sequence[tuple[float, float, float]]) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return p[:, 2] - (self.z0_um + self.dz_dx * p[:, 0] + self.dz_dy * p[:, 1])


def focus_points(
    bounds_um: tuple[float, float, float, float], grid: int = 3
) -> list[tuple[float, float]]:
    """``grid`` x ``grid`` points spanning (x_min, y_min, x_max, y_max), serpentine order."""
    x0, y0, x1, y1 = bounds_um
    n = max(1, grid)
    xs = np.linspace(x0, x1, n) if x1 > x0 else np.array([x0])
    ys = np.linspace(y0, y1, n) if y1 > y0 else np.array([y0])
    out: list[tuple[float, float]] = []
    for r, y in enumerate(ys):
        row = xs if r % 2 == 0 else xs[::-1]
        out += [(float(x), float(y)) for x in row]
    return out


def measure_focus_map(
    microscope: Microscope,
    points_um: Sequence[tuple[float, float]],
    **autofocus_options: float,
) -> tuple[FocusMap, list[tuple[float, float, float]]]:
    """Autofocus at each (x, y) point (starting from the last best z) and fit a plane.
    Returns the map and the measured (x, y, z) points."""
    measured: list[tuple[float, float, float]] = []
    for x, y in points_um:
        microscope.stage.move_xy_um(x, y)
        microscope.stage.wait_for_xy()
        result = autofocus(microscope, **autofocus_options)  # type: ignore[arg-type]
        measured.append((x, y, result.z_um))
    return FocusMap.fit(measured), measured
