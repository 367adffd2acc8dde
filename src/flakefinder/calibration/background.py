"""Substrate level of a micrograph, taken from the image itself, and the contrast image.

The bare substrate is the most common colour of a chip image. Per image we take the mode of the
(downsampled, lightly smoothed) colour histogram, keep the pixels near it as substrate, and fit a
smooth surface (a 2-D quadratic per channel, robust: two rounds of rejecting flakes and debris)
through them, so vignetting and illumination gradients leave the contrast unbiased. Contrast is
``C = I / I_bg - 1`` per channel on the stored values (the profile's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.errors import CalibrationError

__all__ = ["Background", "contrast_image", "estimate_background"]

_FIT_SIZE = 96  # long side of the grid the background surface is fitted on


@dataclass(frozen=True)
class Background:
    """Smooth substrate level of one image (stored units, RGB)."""

    substrate_rgb: tuple[float, float, float]  # level at the image centre
    coefficients: np.ndarray  # (6, 3) quadratic surface coefficients in normalised x, y
    shape: tuple[int, int]  # (H, W) of the image
    substrate_fraction: float  # share of the image that looks like bare substrate
    noise_rgb: tuple[float, float, float]  # robust sd of substrate contrast per channel

    def field(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The (H, W, 3) float32 background level."""
        h, w = self.shape if height is None or width is None else (height, width)
        y = np.linspace(-1.0, 1.0, h, dtype=np.float32)
        x = np.linspace(-1.0, 1.0, w, dtype=np.float32)
        out = np.empty((h, w, 3), dtype=np.float32)
        c = self.coefficients.astype(np.float32)
        for ch in range(3):
            row = c[0, ch] + c[1, ch] * x + c[3, ch] * x * x
            out[:, :, ch] = row[None, :] + (c[2, ch] * y + c[5, ch] * y * y)[:, None]
            out[:, :, ch] += c[4, ch] * y[:, None] * x[None, :]
        return np.maximum(out, 1.0)


def _design(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _check(image: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 16 or a.shape[1] < 16:
        raise CalibrationError(f"{what}: expected an (H, W, 3) colour image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise CalibrationError(f"{what}: expected 8-bit values (uint8), got {a.dtype}")
    return a


def estimate_background(image: np.ndarray, *, what: str = "image") -> Background:
    """Fit the substrate level of ``image`` (uint8 RGB); see the module docstring."""
    img = _check(image, what)
    h, w = img.shape[:2]
    scale = _FIT_SIZE / max(h, w)
    gh, gw = max(8, round(h * scale)), max(8, round(w * scale))
    # INTER_AREA averages blocks: noise goes down, flakes stay (area-weighted)
    small = cv2.resize(img, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float32)
    flat = small.reshape(-1, 3)
    # mode of the colour histogram: 4-DN bins, per channel on the joint-nearest pixels
    q = (flat // 4).astype(np.int32)
    keys = q[:, 0] * 4096 + q[:, 1] * 64 + q[:, 2]
    vals, counts = np.unique(keys, return_counts=True)
    k = int(vals[np.argmax(counts)])
    centre_bin = np.array([(k // 4096) * 4 + 2, (k // 64 % 64) * 4 + 2, (k % 64) * 4 + 2])
    near = np.abs(flat - centre_bin[None, :]).max(axis=1) <= 10.0
    if near.sum() < 0.05 * len(flat):
        raise CalibrationError(
            f"{what}: no bare substrate found (no colour covers 5 % of the image); "
            "is this a chip micrograph?"
        )
    mode = np.median(flat[near], axis=0)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    design = _design(
        (xx.ravel() + 0.5) / gw * 2.0 - 1.0, (yy.ravel() + 0.5) / gh * 2.0 - 1.0
    ).astype(np.float64)
    rel = np.abs(flat / np.maximum(mode, 1.0) - 1.0).max(axis=1)
    keep = rel < 0.04  # first pass: close to the mode; corners rejoin once the surface fits
    coef = np.zeros((6, 3))
    for _ in range(3):
        if keep.sum() < 12:
            raise CalibrationError(f"{what}: too little bare substrate to fit the background")
        coef, *_ = np.linalg.lstsq(design[keep], flat[keep].astype(np.float64), rcond=None)
        fit = design @ coef
        resid = flat / np.maximum(fit, 1.0) - 1.0
        sd = 1.4826 * np.median(np.abs(resid[keep]), axis=0)
        thr = np.clip(3.5 * sd, 0.012, 0.04)
        keep = np.all(np.abs(resid) < thr[None, :], axis=1)
    # per-pixel noise of the substrate: from full-resolution pixels of a central crop
    cy, cx = h // 2, w // 2
    r = min(h, w) // 4
    crop = img[cy - r : cy + r, cx - r : cx + r].reshape(-1, 3).astype(np.float32)
    centre = design[[gh // 2 * gw + gw // 2]] @ coef
    crel = crop / np.maximum(centre, 1.0) - 1.0
    ok = np.all(np.abs(crel) < 0.06, axis=1)
    if ok.sum() > 50:
        noise = 1.4826 * np.median(np.abs(crel[ok] - np.median(crel[ok], axis=0)), axis=0)
    else:
        noise = np.full(3, 0.01)
    level = _design(np.zeros(1), np.zeros(1)) @ coef
    return Background(
        substrate_rgb=(float(level[0, 0]), float(level[0, 1]), float(level[0, 2])),
        coefficients=coef,
        shape=(h, w),
        substrate_fraction=float(keep.mean()),
        noise_rgb=(float(noise[0]), float(noise[1]), float(noise[2])),
    )


def contrast_image(image: np.ndarray, background: Background | None = None) -> np.ndarray:
    """(H, W, 3) float32 contrast ``I / I_bg - 1`` of a uint8 RGB image."""
    bg = background if background is not None else estimate_background(image)
    field = bg.field(image.shape[0], image.shape[1])
    return np.asarray(image, dtype=np.float32) / field - 1.0
