"""The working image: a shrunk copy, its substrate colour and which channels carry contrast."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from flakefinder.errors import ImageError

CLIP_LEVEL = 250
"""A stored value at or above which a channel counts as clipped (JPEG rounds 255 down a little)."""

DARK_LEVEL = 12.0
"""A substrate darker than this in every channel is too dark to measure contrast on."""

_BIN = 4  # histogram bin width (stored units) of the substrate-colour mode


@dataclass(frozen=True, eq=False)
class WorkingImage:
    """A micrograph at working resolution.

    Attributes
    ----------
    factor
        Integer shrink factor from the original image (working pixel = factor x factor pixels).
    shape
        (H, W) of the original image.
    small_u8
        (h, w, 3) uint8 RGB, area-averaged.
    valid
        (3,) bool: channels that do not clip on the substrate. A clipped channel carries no
        contrast in this image and is left out everywhere.
    clipped
        (h, w) bool: working pixels in which a valid channel clipped somewhere in the block.
    substrate_rgb
        (3,) float: the substrate colour (joint histogram mode), stored units.
    """

    factor: int
    shape: tuple[int, int]
    small_u8: np.ndarray
    valid: np.ndarray
    clipped: np.ndarray
    substrate_rgb: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the working image."""
        return (int(self.small_u8.shape[0]), int(self.small_u8.shape[1]))


def shrink_factor(height: int, width: int, long_side_px: int) -> int:
    """The integer factor that brings the longer side closest to ``long_side_px`` (>= 1)."""
    return max(1, round(max(height, width) / long_side_px))


def joint_mode(image_u8: np.ndarray) -> np.ndarray:
    """The most common colour of an (h, w, 3) uint8 image: the mode of a 3-D histogram of
    4-level bins smoothed over neighbouring bins, refined by the median of the pixels near it."""
    q = (image_u8 // _BIN).astype(np.int32).reshape(-1, 3)
    n = 256 // _BIN
    keys = (q[:, 0] * n + q[:, 1]) * n + q[:, 2]
    counts = np.bincount(keys, minlength=n**3).astype(np.float32).reshape(n, n, n)
    counts = ndi.uniform_filter(counts, size=3, mode="constant")  # a colour and its neighbours
    k = int(np.argmax(counts))
    centre = np.array([k // (n * n), k // n % n, k % n], np.float32) * _BIN + _BIN / 2
    flat = image_u8.reshape(-1, 3).astype(np.float32)
    near = np.abs(flat - centre).max(axis=1) <= 2 * _BIN
    return np.asarray(np.median(flat[near], axis=0) if near.any() else centre, dtype=np.float64)


def working_image(image: np.ndarray, *, long_side_px: int = 1024) -> WorkingImage:
    """Shrink ``image`` (H, W, 3 uint8) and find its substrate colour and usable channels.

    Raises
    ------
    ImageError
        For anything but an RGB uint8 image of at least 32 x 32 pixels.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ImageError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    if min(h, w) < 32:
        raise ImageError(f"image of {w} x {h} px is too small for terrace segmentation (32 px)")
    f = shrink_factor(h, w, long_side_px)
    hs, ws = h // f, w // f
    src = img[: hs * f, : ws * f]
    small = cv2.resize(src, (ws, hs), interpolation=cv2.INTER_AREA) if f > 1 else src.copy()
    tiny = cv2.resize(small, (max(8, ws // 4), max(8, hs // 4)), interpolation=cv2.INTER_AREA)
    mode = joint_mode(tiny)
    valid = mode < CLIP_LEVEL - 3
    if not valid.any():
        raise ImageError(
            "the substrate is clipped (overexposed) in every channel, so no contrast can be "
            "measured; lower the exposure"
        )
    if float(mode.max()) < DARK_LEVEL:
        raise ImageError(
            f"the image is nearly black (substrate level {mode.max():.0f} of 255), so no "
            "contrast can be measured; raise the exposure"
        )
    upper = tuple(float(CLIP_LEVEL - 1) if v else 255.0 for v in valid)
    hot = (cv2.inRange(src, (0, 0, 0), upper) == 0).astype(np.uint8)
    if f > 1:
        clipped = cv2.resize(hot, (ws, hs), interpolation=cv2.INTER_AREA) > 0
    else:
        clipped = hot > 0
    return WorkingImage(f, (h, w), small, valid, clipped, mode)
