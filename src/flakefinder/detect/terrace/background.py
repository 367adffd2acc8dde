"""The substrate field of a working image, its log contrast and the foreground.

The substrate is found as a region, not only as a colour: the edge-free areas (low colour
gradient) that mostly hold the substrate colour. A smooth field is then spread from them by
normalised convolution (a Gaussian-weighted average of substrate pixels only), which follows
vignetting, illumination gradients and tinted corners, and fills the area under flakes from their
surroundings. Two more rounds take as substrate exactly the pixels that fit the field: corners
first left out rejoin, faint flakes that leaked into the first mask leave it.

Contrast is kept as ``L = log(I / I_substrate)`` per channel, smoothed by a 1-pixel Gaussian;
``C = exp(L) - 1`` is the profile convention ``I / I_substrate - 1``. Channels that clip on the
substrate are zero in ``L`` and left out of every distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from flakefinder.detect.terrace.channels import channel_abs_max, channel_norm
from flakefinder.errors import ImageError

if TYPE_CHECKING:
    from flakefinder.detect.terrace.image import WorkingImage

_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True, eq=False)
class Background:
    """Substrate field and contrast of one working image.

    Attributes
    ----------
    log_contrast
        (h, w, 3) float32 smoothed ``log(I / I_substrate)``; 0 in channels that are not valid.
    noise
        (3,) robust sd of ``log_contrast`` on the substrate (inf in channels that are not valid).
    substrate
        (h, w) bool: pixels that fit the field (bare substrate).
    foreground
        (h, w) bool: pixels that differ from the substrate by more than the noise allows.
    edge_strength
        (h, w) float32 colour gradient in units of the image's typical (median) gradient.
    """

    log_contrast: np.ndarray
    noise: np.ndarray
    substrate: np.ndarray
    foreground: np.ndarray
    edge_strength: np.ndarray

    @property
    def substrate_fraction(self) -> float:
        """Share of the working image that is bare substrate."""
        return float(self.substrate.mean())


def _normalised_convolution(
    img: np.ndarray, mask: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    m = mask.astype(np.float32)
    num = cv2.GaussianBlur(img * m[:, :, None], (0, 0), sigma)
    den = cv2.GaussianBlur(m, (0, 0), sigma)
    return num / np.maximum(den, 1e-6)[:, :, None], den


def _quadratic_design(h: int, w: int) -> np.ndarray:
    """(h * w, 6) terms 1, u, v, u^2, uv, v^2 on pixel centres in [-1, 1]."""
    vv, uu = np.meshgrid(
        (np.arange(h) + 0.5) / h * 2.0 - 1.0, (np.arange(w) + 0.5) / w * 2.0 - 1.0, indexing="ij"
    )
    u, v = uu.ravel(), vv.ravel()
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


def _field(small4: np.ndarray, sub4: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth substrate field: a quadratic in log intensity (vignetting, gradients; it also
    carries the field into corners the substrate mask has not reached yet) plus the local
    deviations from it, spread by normalised convolution and fading out away from substrate."""
    h, w = sub4.shape
    log4 = np.log(np.maximum(small4, 1.0))
    design = _quadratic_design(h, w)
    idx = np.flatnonzero(sub4.ravel())
    idx = idx[:: max(1, idx.size // 4000)]
    a = design[idx]
    coef = np.linalg.solve(a.T @ a + 1e-9 * np.eye(6), a.T @ log4.reshape(-1, 3)[idx])
    trend = (design @ coef).reshape(h, w, 3).astype(np.float32)
    local, weight = _normalised_convolution(log4 - trend, sub4, sigma)
    fade = np.clip(weight / 0.2, 0.0, 1.0)[:, :, None]
    return np.asarray(np.exp(trend + fade * local), dtype=np.float32)


def _contrast(
    log_img: np.ndarray, sub: np.ndarray, field: np.ndarray, valid: np.ndarray, k_sigma: float,
    min_contrast: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed log contrast against ``field``, the substrate noise and the foreground."""
    lc = log_img - np.log(np.maximum(field, 1.0))
    lc[:, :, ~valid] = 0.0
    lc = cv2.GaussianBlur(lc, (0, 0), 1.0)
    step = max(1, round(float(np.sqrt(sub.size / 40000.0))))
    sample = lc[::step, ::step][sub[::step, ::step]]
    if sample.shape[0] < 20:
        raise ImageError("no bare substrate found: too few substrate pixels")
    med = np.median(sample, axis=0)
    noise = np.maximum(1.4826 * np.median(np.abs(sample - med), axis=0), 1e-3)
    noise[~valid] = np.inf
    z = channel_norm(lc, valid, noise)
    amp = channel_abs_max(lc, valid)
    return lc, noise, (z > k_sigma) & (amp > min_contrast)


def estimate_background(
    work: WorkingImage,
    *,
    k_sigma: float = 4.0,
    min_contrast: float = 0.008,
    edge_k: float = 5.0,
) -> Background:
    """Fit the substrate field of ``work`` and mark the foreground.

    The first two rounds run on a copy shrunk 4x more (the field is smooth), the last one at
    working resolution.

    Parameters
    ----------
    k_sigma
        Foreground: the colour differs from the field by more than ``k_sigma`` noise sds ...
    min_contrast
        ... and by more than this in some channel (log units, ~ relative contrast).
    edge_k
        Pixels whose colour gradient exceeds ``edge_k`` times the image's median gradient are
        edges; the substrate is grown through the edge-free ones.

    Raises
    ------
    ImageError
        When no bare substrate can be found (an image of a single colour other than substrate,
        or a field filled with bulk).
    """
    valid = work.valid
    h, w = work.size
    tw, th = max(8, w // 4), max(8, h // 4)
    small = work.small_u8.astype(np.float32)
    small4 = cv2.resize(small, (tw, th), interpolation=cv2.INTER_AREA)
    log4 = np.log(np.maximum(small4, 1.0))
    grad = cv2.dilate(log4, _K3) - cv2.erode(log4, _K3)
    scale = np.maximum(np.median(grad.reshape(-1, 3), axis=0), 1e-4)
    edge = channel_norm(grad, valid, scale) / np.float32(np.sqrt(valid.sum()))
    calm = edge < edge_k
    rel = small4 / np.maximum(work.substrate_rgb, 1.0).astype(np.float32) - 1.0
    spread = channel_abs_max(rel, valid)
    near = spread < 0.05
    n, lab, stats, _ = cv2.connectedComponentsWithStats(calm.astype(np.uint8), connectivity=4)
    near_count = np.bincount(lab[near], minlength=n)
    near_count[0] = 0
    if near_count.max() == 0:
        raise ImageError("no bare substrate found: no calm area has the image's dominant colour")
    area = stats[:, cv2.CC_STAT_AREA]
    is_sub = ((near_count > 0.3 * area) & (area > 0.002 * th * tw)) | (
        near_count == near_count.max()
    )
    is_sub[0] = False
    sub = is_sub[lab] & (spread < 0.15)
    sigma = max(th, tw) / 16.0
    for _ in range(2):
        if not sub.any():
            raise ImageError("no bare substrate found: the substrate area is too small to fit")
        _, _, fg4 = _contrast(log4, sub, _field(small4, sub, sigma), valid, k_sigma, min_contrast)
        # whatever fits the field is substrate (corners the first mask missed rejoin), whatever
        # does not is not (faint flakes that leaked into the first mask leave it)
        sub = ~cv2.dilate(fg4.astype(np.uint8), _K3).astype(bool)
    if not sub.any():
        raise ImageError("no bare substrate found: the substrate area is too small to fit")
    field = cv2.resize(_field(small4, sub, sigma), (w, h), interpolation=cv2.INTER_LINEAR)
    sub_full = cv2.resize(sub.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    lc, noise, fg = _contrast(
        np.log(np.maximum(small, 1.0)), sub_full, field, valid, k_sigma, min_contrast
    )
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, _K3).astype(bool)
    substrate = sub_full & ~fg
    return Background(lc.astype(np.float32), noise, substrate, fg, edge.astype(np.float32))
