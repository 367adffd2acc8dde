"""Substrate level of a real micrograph, in stored camera units (numpy + cv2, no linearisation).

The calibrated detector measures contrast ``C = I / I_bg - 1`` on the camera's stored values, the
convention of :mod:`flakefinder.calibration.profile`. ``I_bg`` comes from the image itself:

1. the dominant colour: per-channel mode of a histogram of the (small) image, the substrate
   covering most of a field of view of an exfoliated chip;
2. a smooth field: the image is cut into coarse cells; each cell's mean over pixels within a
   band around the current estimate is a sample of the substrate there (flakes, bulk crystals and
   residue fall outside the band); cells with too few substrate pixels take their neighbours'
   value (normalised convolution); the cell grid is interpolated bilinearly to the image. The band
   is first loose around the global mode, then tight around the first field, so vignetting of
   10-20 % is followed without letting thin flakes into the estimate.

An optional flat-field image (bare substrate of the same setup) is divided out first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flakefinder.errors import ImageError

CELL_FRACTION = 1.0 / 8.0  # a background cell spans 1/8 of the shorter image side
MIN_CELL_FILL = 0.15  # a cell needs this fraction of substrate pixels to be trusted


@dataclass(frozen=True, eq=False)
class Substrate:
    """Background estimate of one image at the working resolution.

    Attributes
    ----------
    field : numpy.ndarray
        (h, w, 3) float32 substrate level per pixel, RGB, stored camera units.
    contrast : numpy.ndarray
        (h, w, 3) float32 ``I / field - 1``.
    substrate_mask : numpy.ndarray
        (h, w) bool, pixels within the band around the field (bare substrate).
    mode_rgb : numpy.ndarray
        (3,) global substrate colour (histogram mode).
    noise_rgb : numpy.ndarray
        (3,) robust per-channel scatter of the substrate contrast (MAD-based sigma).
    covariance_rgb : numpy.ndarray
        (3, 3) robust covariance of the substrate contrast (its Gaussian in colour space).
    fraction : float
        Fraction of pixels that look like bare substrate.
    """

    field: np.ndarray
    contrast: np.ndarray
    substrate_mask: np.ndarray
    mode_rgb: np.ndarray
    noise_rgb: np.ndarray
    covariance_rgb: np.ndarray
    fraction: float


def histogram_mode(small_u8: np.ndarray) -> np.ndarray:
    """Per-channel mode of a uint8 (h, w, 3) image, smoothed over +-2 levels -> (3,) float."""
    out = np.empty(3, dtype=np.float64)
    kernel = np.ones(5) / 5.0
    for c in range(3):
        hist = cv2.calcHist([small_u8], [c], None, [256], [0, 256]).ravel()
        hist[255] = 0.0  # clipped pixels are never the substrate of a usable image
        sm = np.convolve(hist, kernel, mode="same")
        out[c] = float(np.argmax(sm))
    return out


def _cell_grid(img: np.ndarray, ok: np.ndarray, cell_px: int) -> np.ndarray:
    """(gh, gw, 3) mean of ``img`` over ``ok`` pixels per cell, gaps filled from neighbours."""
    h, w = ok.shape
    gh, gw = max(1, round(h / cell_px)), max(1, round(w / cell_px))
    okf = ok.astype(np.float32)
    sums = cv2.resize(img * okf[..., None], (gw, gh), interpolation=cv2.INTER_AREA)
    fill = cv2.resize(okf, (gw, gh), interpolation=cv2.INTER_AREA)
    if gh * gw > 1:
        # normalised convolution: trusted cells dominate, empty cells borrow from neighbours
        wts = np.where(fill >= MIN_CELL_FILL, fill, 0.0).astype(np.float32)
        sums = sums * (wts / np.maximum(fill, 1e-6))[..., None]
        for _ in range(3):
            if np.all(wts > 0):
                break
            bs = cv2.GaussianBlur(sums, (3, 3), 0.8, borderType=cv2.BORDER_REPLICATE)
            bw = cv2.GaussianBlur(wts, (3, 3), 0.8, borderType=cv2.BORDER_REPLICATE)
            gap = wts <= 0
            sums[gap] = bs[gap]
            wts[gap] = bw[gap]
        fill = wts
    return (sums / np.maximum(fill, 1e-6)[..., None]).astype(np.float32)


def estimate_substrate(small: np.ndarray, *, band: float = 0.04) -> Substrate:
    """Estimate the substrate level of an (h, w, 3) image (uint8 or float32 in 0..255).

    The field is fitted on a copy shrunk 4x more (it is smooth on the scale of a cell) and
    interpolated to the image; the noise statistics come from the image itself.

    Parameters
    ----------
    small : numpy.ndarray
        The image at working resolution, RGB, stored camera units.
    band : float
        Half-width of the tight relative band around the field that counts as substrate; keep it
        below half the weakest layer contrast of interest.

    Returns
    -------
    Substrate
        The background field, the contrast image and substrate noise statistics.
    """
    if small.ndim != 3 or small.shape[2] != 3 or min(small.shape[:2]) < 8:
        raise ImageError(
            f"substrate estimate needs an (h, w, 3) image of 8 px and more, got {small.shape}"
        )
    h, w = small.shape[:2]
    img = small.astype(np.float32, copy=False)
    shrink = 4 if min(h, w) >= 128 else 1
    tiny = cv2.resize(img, (w // shrink, h // shrink), interpolation=cv2.INTER_AREA)
    tiny = np.ascontiguousarray(tiny)
    mode = np.maximum(histogram_mode(np.clip(tiny, 0, 255).astype(np.uint8)), 1.0)
    cell = max(4, round(min(tiny.shape[:2]) * CELL_FRACTION))
    loose = max(3.0 * band, 0.1)
    ok = _within(tiny / mode.astype(np.float32) - 1.0, loose)
    if ok.mean() < 0.05:
        raise ImageError(
            "no bare substrate found in the image (less than 5 % of it is near its dominant colour)"
        )
    grid = _cell_grid(tiny, ok, cell)
    for tol in (2.0 * band, band):
        field_t = cv2.resize(grid, (tiny.shape[1], tiny.shape[0]), interpolation=cv2.INTER_LINEAR)
        ok = _within(tiny / np.maximum(field_t, 1.0) - 1.0, tol)
        if ok.mean() < 0.05:
            break
        grid = _cell_grid(tiny, ok, cell)
    field = np.maximum(cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR), 1.0)
    contrast = np.asarray(cv2.divide(img, field), dtype=np.float32)
    contrast -= np.float32(1.0)
    on = _within(contrast, band)
    step = max(1, round(math.sqrt(h * w / 20000.0)))  # ~20k samples suffice
    sample = contrast[::step, ::step][on[::step, ::step]]
    if sample.shape[0] < 10:
        sample = contrast.reshape(-1, 3)[:1000]
    med = np.median(sample, axis=0)
    noise = np.maximum(1.4826 * np.median(np.abs(sample - med), axis=0), 1e-3)
    cov = np.cov(sample.T.astype(np.float64)) if sample.shape[0] > 3 else np.diag(noise**2)
    cov = cov + np.diag((0.25 * noise) ** 2)  # keep it positive definite
    return Substrate(
        field=field.astype(np.float32, copy=False),
        contrast=contrast,
        substrate_mask=on,
        mode_rgb=mode,
        noise_rgb=noise.astype(np.float64),
        covariance_rgb=np.asarray(cov, dtype=np.float64),
        fraction=float(on.mean()),
    )


def _within(contrast: np.ndarray, tol: float) -> np.ndarray:
    """(h, w) bool: every channel of ``contrast`` within +-tol."""
    t = float(tol)
    return cv2.inRange(contrast, (-t, -t, -t), (t, t, t)) > 0


def load_flatfield(path: str | Path) -> np.ndarray:
    """Read a flat-field image (bare substrate) -> (H, W, 3) float32 RGB normalised to mean 1.

    Raises
    ------
    ImageError
        When the file is missing, unreadable or has a dark channel.
    """
    from flakefinder.imaging import load_image

    img = load_image(path).astype(np.float32)
    means = img.reshape(-1, 3).mean(axis=0)
    if np.any(means < 1.0):
        raise ImageError(f"flat-field {path} has a dark channel (means {means.round(1).tolist()})")
    return img / means


def apply_flatfield(image: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``image / flat`` as float32 (flat resized to the image when the sizes differ)."""
    h, w = image.shape[:2]
    if flat.shape[:2] != (h, w):
        flat = cv2.resize(flat, (w, h), interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / np.maximum(flat, 1e-3)
