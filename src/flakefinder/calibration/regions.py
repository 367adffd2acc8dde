"""Masks from a person's input for calibration: a click (region growing) or a drawn outline.

Numpy, SciPy and OpenCV only. :func:`grow_region` starts at the clicked pixel and keeps the
connected pixels whose (lightly smoothed) colour is close to the clicked colour; "close" is by
default half the distance between that colour and the substrate, so that a faint monolayer and a
dark thick flake both stop at their edge. :func:`polygon_mask` rasterises an outline.
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
    """Boolean (H, W) mask of the flake under pixel (``x_px``, ``y_px``): the full-image form
    of :func:`grow_region_crop` (same parameters and errors)."""
    crop = grow_region_crop(image, x_px, y_px, tolerance=tolerance, max_fraction=max_fraction)
    return crop.full(image.shape[:2])


class MaskCrop:
    """A boolean mask kept as its bounding box (plus a margin) at ``offset_yx`` of an image."""

    def __init__(self, offset_yx: tuple[int, int], mask: np.ndarray) -> None:
        self.offset_yx = (int(offset_yx[0]), int(offset_yx[1]))
        self.mask = np.asarray(mask, dtype=bool)

    @classmethod
    def around(
        cls, mask: np.ndarray, offset_yx: tuple[int, int] = (0, 0), margin: int = 4
    ) -> MaskCrop:
        """The bounding box of ``mask`` (itself a crop at ``offset_yx``), grown by ``margin``
        pixels on each side within ``mask``; an empty mask gives an empty crop."""
        rows = np.flatnonzero(mask.any(axis=1))
        if len(rows) == 0:
            return cls(offset_yx, np.zeros((0, 0), bool))
        cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
        y0, y1 = max(0, int(rows[0]) - margin), min(mask.shape[0], int(rows[-1]) + 1 + margin)
        x0, x1 = max(0, int(cols[0]) - margin), min(mask.shape[1], int(cols[-1]) + 1 + margin)
        return cls((offset_yx[0] + y0, offset_yx[1] + x0), mask[y0:y1, x0:x1].copy())

    @property
    def area_px(self) -> int:
        """Number of pixels in the mask."""
        return int(np.count_nonzero(self.mask))

    def full(self, shape_hw: tuple[int, int]) -> np.ndarray:
        """The mask as a boolean array of the whole image (``shape_hw``)."""
        out = np.zeros(shape_hw, bool)
        y0, x0 = self.offset_yx
        h, w = self.mask.shape
        out[y0 : y0 + h, x0 : x0 + w] = self.mask
        return out


def _smooth_channel(a: np.ndarray, c: int) -> np.ndarray:
    """Channel ``c`` of ``a`` as float32, averaged over 3 x 3 pixels (edges repeated)."""
    from scipy import ndimage

    return np.asarray(
        ndimage.uniform_filter(a[:, :, c], size=3, output=np.float32, mode="nearest")
    )


def grow_region_crop(
    image: np.ndarray,
    x_px: int,
    y_px: int,
    *,
    tolerance: float | None = None,
    max_fraction: float = 0.25,
) -> MaskCrop:
    """The flake under pixel (``x_px``, ``y_px``) by colour region growing, as a crop.

    Works channel by channel: a large image costs one float32 channel, two boolean images and
    one label image at a time, never a full-size float RGB copy.

    Parameters
    ----------
    image
        (H, W, 3) uint8 RGB micrograph.
    x_px, y_px
        The clicked pixel (column, row).
    tolerance
        Largest colour distance (max over channels, in 0-255 levels) from the clicked colour;
        None: half the distance from the clicked colour to the substrate, within 3-60.
    max_fraction
        Largest share of the image the region may cover; a larger one leaked into the substrate.

    Returns
    -------
    MaskCrop
        The region (holes filled, connected to the clicked pixel) in its bounding box.

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
    k = SEED_WINDOW_PX
    ys, xs = slice(max(0, y_px - k), y_px + k + 1), slice(max(0, x_px - k), x_px + k + 1)
    # the clicked colour: per channel, the median of the smoothed window (smoothing needs only
    # a two-pixel border around it)
    ys_pad = slice(max(0, ys.start - 1), min(h, ys.stop + 1))
    xs_pad = slice(max(0, xs.start - 1), min(w, xs.stop + 1))
    local = a[ys_pad, xs_pad]
    inner = (slice(ys.start - ys_pad.start, ys.stop - ys_pad.start),
             slice(xs.start - xs_pad.start, min(xs.stop, w) - xs_pad.start))  # fmt: skip
    seed = np.array([np.median(_smooth_channel(local, c)[inner]) for c in range(3)])
    to_substrate = float(np.abs(seed - substrate_rgb(a)).max())
    if tolerance is None:
        tolerance = min(MAX_TOLERANCE, max(MIN_TOLERANCE, to_substrate / 2))
    elif not (np.isfinite(tolerance) and 0 < tolerance <= 255):
        raise CalibrationError(f"tolerance must be in (0, 255] colour levels, got {tolerance}")
    if to_substrate < SUBSTRATE_LEVELS:
        raise CalibrationError(
            f"pixel ({x_px}, {y_px}) has the substrate's colour: click inside a flake"
        )
    close = np.ones((h, w), bool)
    for c in range(3):
        channel = _smooth_channel(a, c)
        np.subtract(channel, np.float32(seed[c]), out=channel)
        np.abs(channel, out=channel)
        close &= channel <= tolerance
        del channel
    labels, _ = ndimage.label(close)
    del close
    crop = MaskCrop.around(labels == labels[y_px, x_px], margin=1)
    del labels
    crop.mask[...] = ndimage.binary_fill_holes(crop.mask)
    if crop.area_px > max_fraction * h * w:
        raise CalibrationError(
            f"the region at ({x_px}, {y_px}) spreads over"
            f" {100 * crop.area_px / (h * w):.0f} % of the image:"
            " it is not one flake (draw its outline instead, or click nearer its middle)"
        )
    return crop


def polygon_mask(
    shape_hw: tuple[int, int], polygon_px: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Boolean (H, W) mask of the inside of ``polygon_px`` ((x, y) pixel vertices, >= 3).

    Raises
    ------
    CalibrationError
        For fewer than three vertices, non-finite vertices, or an outline with no pixel inside.
    """
    return polygon_crop(shape_hw, polygon_px).full(shape_hw)


def polygon_crop(
    shape_hw: tuple[int, int], polygon_px: Sequence[tuple[float, float]]
) -> MaskCrop:
    """:func:`polygon_mask` rasterised in the outline's bounding box only (same errors)."""
    import cv2

    pts = np.asarray(polygon_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise CalibrationError("an outline needs at least three (x, y) points")
    if not np.isfinite(pts).all():
        raise CalibrationError("outline points must be finite numbers")
    h, w = shape_hw
    clipped = np.clip(np.round(pts), -1, max(h, w) + 1).astype(np.int32)
    x0, y0 = max(0, int(clipped[:, 0].min())), max(0, int(clipped[:, 1].min()))
    x1, y1 = min(w, int(clipped[:, 0].max()) + 1), min(h, int(clipped[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        raise CalibrationError("the outline encloses no pixel of the image")
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shifted = (clipped - np.array([x0, y0], np.int32)).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [shifted], 1)
    if not canvas.any():
        raise CalibrationError("the outline encloses no pixel of the image")
    return MaskCrop.around(canvas.astype(bool), (y0, x0), margin=1)


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
