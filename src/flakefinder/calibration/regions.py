"""Masks from a person's input for calibration: a click (region growing) or a drawn outline.

Numpy, SciPy and OpenCV only. :func:`grow_region` starts at the clicked pixel and keeps the
connected pixels whose (lightly smoothed) colour is close to the clicked colour; "close" is by
default half the distance between that colour and the substrate, so that a faint monolayer and a
dark thick flake both stop at their edge, but never more than a contrast of
:data:`MAX_TOLERANCE_CONTRAST` per channel, so that a click on one terrace does not run into the
next thicker or thinner one (graphene on 90 nm SiO2 changes by about 0.1 per layer; on the
shipped real micrographs an uncapped click on a bilayer took in the monolayer beside it and the
optics fit then proposed the wrong layer numbers). :func:`polygon_mask` rasterises an outline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flakefinder.errors import CalibrationError

if TYPE_CHECKING:
    from collections.abc import Sequence

MIN_TOLERANCE = 3.0  # colour levels (0-255): below this, camera noise splits a flake
MAX_TOLERANCE = 60.0
SUBSTRATE_LEVELS = 6.0  # a click closer than this to the substrate colour is not on a flake
SEED_WINDOW_PX = 2  # the clicked colour is the median of a (2k + 1)² window
MAX_TOLERANCE_CONTRAST = 0.05  # default tolerance at most this share of the substrate level


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise CalibrationError(f"expected an (H, W, 3) uint8 RGB image, got {a.shape} {a.dtype}")
    return a


def substrate_rgb(image: np.ndarray) -> np.ndarray:
    """The substrate colour: the per-channel median of the image (most of a chip is bare)."""
    return np.asarray(np.median(_check_image(image).reshape(-1, 3), axis=0), dtype=np.float64)


def grow_region(
    image: np.ndarray,
    x_px: int,
    y_px: int,
    *,
    tolerance: float | None = None,
    max_fraction: float = 0.25,
) -> np.ndarray:
    """Boolean mask of the flake under pixel (``x_px``, ``y_px``) by colour region growing.

    Parameters
    ----------
    image
        (H, W, 3) uint8 RGB micrograph.
    x_px, y_px
        The clicked pixel (column, row).
    tolerance
        Largest colour distance (max over channels, in 0-255 levels) from the clicked colour;
        None: per channel, half the distance from the clicked colour to the substrate (max over
        channels) but at most :data:`MAX_TOLERANCE_CONTRAST` of that channel's substrate level,
        within 3-60 levels.
    max_fraction
        Largest share of the image the region may cover; a larger one leaked into the substrate.

    Returns
    -------
    numpy.ndarray
        (H, W) bool mask, holes filled, connected to the clicked pixel.

    Raises
    ------
    CalibrationError
        For a pixel outside the image, a click on bare substrate, or a region that grows over
        more than ``max_fraction`` of the image.
    """
    from scipy import ndimage

    a = _check_image(image)
    h, w = a.shape[:2]
    if not (0 <= x_px < w and 0 <= y_px < h):
        raise CalibrationError(f"pixel ({x_px}, {y_px}) lies outside the {w}x{h} image")
    smooth = ndimage.uniform_filter(a.astype(np.float32), size=(3, 3, 1), mode="nearest")
    k = SEED_WINDOW_PX
    window = smooth[max(0, y_px - k) : y_px + k + 1, max(0, x_px - k) : x_px + k + 1]
    seed = np.median(window.reshape(-1, 3), axis=0)
    substrate = substrate_rgb(a)
    to_substrate = float(np.abs(seed - substrate).max())
    if tolerance is None:
        limit = np.minimum(to_substrate / 2, MAX_TOLERANCE_CONTRAST * substrate)
        tol_rgb = np.clip(limit, MIN_TOLERANCE, MAX_TOLERANCE)
    elif not (np.isfinite(tolerance) and 0 < tolerance <= 255):
        raise CalibrationError(f"tolerance must be in (0, 255] colour levels, got {tolerance}")
    else:
        tol_rgb = np.full(3, float(tolerance))
    if to_substrate < SUBSTRATE_LEVELS:
        raise CalibrationError(
            f"pixel ({x_px}, {y_px}) has the substrate's colour: click inside a flake"
        )
    distance = np.abs(smooth - seed)
    labels, _ = ndimage.label(np.all(distance <= tol_rgb, axis=2))
    near = labels[max(0, y_px - k) : y_px + k + 1, max(0, x_px - k) : x_px + k + 1]
    if not near.any():
        raise CalibrationError(
            f"the colour around ({x_px}, {y_px}) is too uneven to grow a region: click nearer "
            "the flake's middle, or draw its outline"
        )
    mask = labels == np.bincount(near[near > 0]).argmax()
    if tolerance is None:
        # the blurred rim towards the substrate: one more pixel within the wider tolerance
        loose = np.all(distance <= max(MIN_TOLERANCE, min(MAX_TOLERANCE, to_substrate / 2)), axis=2)
        mask |= ndimage.binary_dilation(mask) & loose
    mask = ndimage.binary_fill_holes(mask)
    if mask.sum() > max_fraction * h * w:
        raise CalibrationError(
            f"the region at ({x_px}, {y_px}) spreads over {100 * mask.mean():.0f} % of the image:"
            " it is not one flake (draw its outline instead, or click nearer its middle)"
        )
    return np.asarray(mask, dtype=bool)


def polygon_mask(
    shape_hw: tuple[int, int], polygon_px: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Boolean (H, W) mask of the inside of ``polygon_px`` ((x, y) pixel vertices, >= 3).

    Raises
    ------
    CalibrationError
        For fewer than three vertices, non-finite vertices, or an outline with no pixel inside.
    """
    import cv2

    pts = np.asarray(polygon_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise CalibrationError("an outline needs at least three (x, y) points")
    if not np.isfinite(pts).all():
        raise CalibrationError("outline points must be finite numbers")
    h, w = shape_hw
    canvas = np.zeros((h, w), np.uint8)
    clipped = np.clip(np.round(pts), -1, max(h, w) + 1).astype(np.int32)
    cv2.fillPoly(canvas, [clipped.reshape(-1, 1, 2)], 1)
    if not canvas.any():
        raise CalibrationError("the outline encloses no pixel of the image")
    return canvas.astype(bool)


def mask_outline(mask: np.ndarray) -> list[tuple[int, int]]:
    """Outer outline of the largest part of ``mask`` as (x, y) pixel vertices (for drawing)."""
    import cv2

    contours, _ = cv2.findContours(
        np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return []
    c = max(contours, key=cv2.contourArea)
    return [(int(p[0][0]), int(p[0][1])) for p in c]
