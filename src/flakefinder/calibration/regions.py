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


def _smooth_window(a: np.ndarray, ys: slice, xs: slice, c: int) -> np.ndarray:
    """:func:`_smooth_channel` of ``a`` cut to rows ``ys`` and columns ``xs``, computed from
    that window and a one-pixel border only (the same numbers as smoothing the whole image)."""
    h, w = a.shape[:2]
    y0, y1 = ys.start, min(h, ys.stop)
    x0, x1 = xs.start, min(w, xs.stop)
    py0, px0 = max(0, y0 - 1), max(0, x0 - 1)
    local = a[py0 : min(h, y1 + 1), px0 : min(w, x1 + 1)]
    return _smooth_channel(local, c)[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]


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
        None: per channel, half the distance from the clicked colour to the substrate (max over
        channels) but at most :data:`MAX_TOLERANCE_CONTRAST` of that channel's substrate level,
        within 3-60 levels.
    max_fraction
        Largest share of the image the region may cover; a larger one leaked into the substrate.

    Returns
    -------
    MaskCrop
        The region (holes filled; the connected part that most of the clicked window belongs
        to) in its bounding box.

    Raises
    ------
    CalibrationError
        For a pixel outside the image, a click on bare substrate, a clicked window with no
        pixel close to its own colour, or a region that grows over more than ``max_fraction``
        of the image.
    """
    from scipy import ndimage

    a = _check_image(image)
    h, w = a.shape[:2]
    if not (0 <= x_px < w and 0 <= y_px < h):
        raise CalibrationError(f"pixel ({x_px}, {y_px}) lies outside the {w}x{h} image")
    k = SEED_WINDOW_PX
    ys, xs = slice(max(0, y_px - k), y_px + k + 1), slice(max(0, x_px - k), x_px + k + 1)
    # the clicked colour: per channel, the median of the smoothed window
    seed = np.array([np.median(_smooth_window(a, ys, xs, c)) for c in range(3)])
    substrate = substrate_rgb(a)
    to_substrate = float(np.abs(seed - substrate).max())
    # the wider tolerance of the blurred rim towards the substrate (default tolerance only)
    loose_tol = max(MIN_TOLERANCE, min(MAX_TOLERANCE, to_substrate / 2))
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
    close = np.ones((h, w), bool)
    for c in range(3):
        channel = _smooth_channel(a, c)
        np.subtract(channel, np.float32(seed[c]), out=channel)
        np.abs(channel, out=channel)
        close &= channel <= tol_rgb[c]
        del channel
    labels, _ = ndimage.label(close)
    del close
    near = labels[ys, xs]
    if not near.any():
        raise CalibrationError(
            f"the colour around ({x_px}, {y_px}) is too uneven to grow a region: click nearer "
            "the flake's middle, or draw its outline"
        )
    # the region most of the clicked window belongs to
    region = labels == np.bincount(near[near > 0]).argmax()
    crop = MaskCrop.around(region, margin=1 if tolerance is not None else 2)
    del region
    del labels
    if tolerance is None:
        # one more pixel of the rim within the wider tolerance: only the crop (whose margin
        # holds the dilation) needs its colours
        y0, x0 = crop.offset_yx
        rows, cols = slice(y0, y0 + crop.mask.shape[0]), slice(x0, x0 + crop.mask.shape[1])
        loose = np.ones(crop.mask.shape, bool)
        for c in range(3):
            loose &= np.abs(_smooth_window(a, rows, cols, c) - np.float32(seed[c])) <= loose_tol
        crop.mask |= ndimage.binary_dilation(crop.mask) & loose
        crop = MaskCrop.around(crop.mask, crop.offset_yx, margin=1)
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
