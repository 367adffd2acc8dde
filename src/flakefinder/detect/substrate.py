"""Substrate level of a real micrograph, in stored camera units (numpy + cv2, no linearisation).

The calibrated detector measures contrast ``C = I / I_bg - 1`` on the camera's stored values, the
convention of :mod:`flakefinder.calibration.profile`. ``I_bg`` comes from the image itself:

1. the dominant colour: per-channel mode of a histogram of the (small) image, the substrate
   covering most of a field of view of an exfoliated chip;
2. a smooth field: a quadratic surface in log intensity per channel, fitted by least squares to
   the pixels within a band around the current estimate (on a copy shrunk 4x more). The band is
   first around the global mode and narrower than the weakest layer contrast, so flakes,
   bulk crystals and residue never enter the fit, then around the fitted surface (twice), which
   lets the fit follow vignetting and illumination gradients into the corners. A surface, unlike
   local cell means, cannot be pulled onto a flake larger than a cell.

An optional flat-field image (bare substrate of the same setup) is divided out first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flakefinder.errors import ImageError


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


def _design(h: int, w: int) -> np.ndarray:
    """(h * w, 6) quadratic terms 1, u, v, u^2, uv, v^2 on pixel centres in [-1, 1]."""
    vv, uu = np.meshgrid(
        (np.arange(h) + 0.5) / h * 2.0 - 1.0, (np.arange(w) + 0.5) / w * 2.0 - 1.0, indexing="ij"
    )
    u, v = uu.ravel(), vv.ravel()
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


def _poly_field(log_img: np.ndarray, ok: np.ndarray, design: np.ndarray) -> np.ndarray:
    """exp of the quadratic least-squares fit of ``log_img`` over ``ok`` pixels -> (h, w, 3)."""
    h, w = ok.shape
    sel = ok.ravel()
    a = design[sel]
    y = log_img.reshape(-1, 3)[sel]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.exp(design @ coef).reshape(h, w, 3).astype(np.float32)


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
    # first pass: near the global mode, tighter than the weakest layer, so no flake gets in
    ok = _within(tiny / mode.astype(np.float32) - 1.0, 2.0 * band)
    if ok.mean() < 0.05:
        raise ImageError(
            "no bare substrate found in the image (less than 5 % of it is near its dominant colour)"
        )
    th, tw = tiny.shape[:2]
    design = _design(th, tw)
    log_tiny = np.log(np.maximum(tiny, 1.0))
    field_t = _poly_field(log_tiny, ok, design)
    for tol in (1.5 * band, band):
        ok_next = _within(tiny / field_t - 1.0, tol)
        if ok_next.mean() < 0.05:
            break
        ok = ok_next
        field_t = _poly_field(log_tiny, ok, design)
    field = np.maximum(cv2.resize(field_t, (w, h), interpolation=cv2.INTER_LINEAR), 1.0)
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
