"""Per-flake contrast statistics from eroded interiors, and outlier-robust Gaussians.

Flake edges are blurred by the optics and mixed with the substrate, so every region is eroded
before its pixels are used (by 2 px, less when that would leave too little). Means and covariances
are trimmed: iteratively re-estimated on the pixels within the 97.5 % Mahalanobis quantile of a
3-D Gaussian, then scaled back by the consistency factor of that truncation (a one-step
reweighted MCD-like estimator), so dust, residue and mislabelled pixels do not inflate them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["FlakeStat", "flake_stat", "robust_gaussian"]

_CHI2_3_975 = 9.348  # 97.5 % quantile of chi^2 with 3 degrees of freedom
_TRIM_FACTOR = 0.975 / 0.9037  # E[d^2 | d^2 < q] correction: P(chi2_5 < q) = 0.9037
_MAX_SAMPLES = 20000


def robust_gaussian(pixels: np.ndarray, *, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed mean (3,) and covariance (3, 3) of ``pixels`` (N, 3); N >= 1.

    NaN marks a channel without contrast in that pixel's image (clipped on the substrate): each
    channel is then estimated from the pixels that have it, and the correlations from the
    pixels that have all three.
    """
    x = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    finite = np.isfinite(x)
    if not finite.all():
        return _robust_gaussian_missing(x, finite, floor)
    if len(x) > _MAX_SAMPLES:
        idx = np.random.default_rng(0).choice(len(x), _MAX_SAMPLES, replace=False)
        x = x[np.sort(idx)]
    mean = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - mean), axis=0)
    cov = np.diag(np.maximum(mad, np.sqrt(floor)) ** 2)
    keep = np.ones(len(x), dtype=bool)
    for _ in range(5):
        diff = x - mean
        d2 = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        new = d2 < _CHI2_3_975
        if new.sum() < 4:
            break
        keep = new
        mean = x[keep].mean(axis=0)
        cov = np.cov(x[keep].T) * _TRIM_FACTOR if keep.sum() > 3 else cov
        cov = 0.5 * (cov + cov.T) + np.eye(3) * floor
    return mean, cov


def _robust_gaussian_missing(
    x: np.ndarray, finite: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    mean = np.zeros(3)
    sd = np.full(3, np.sqrt(floor))
    for c in range(3):
        v = x[finite[:, c], c]
        if v.size == 0:
            continue
        m1, c1 = robust_gaussian(np.repeat(v[:, None], 3, axis=1), floor=floor)
        mean[c], sd[c] = m1[0], max(float(np.sqrt(c1[0, 0])), np.sqrt(floor))
    full = finite.all(axis=1)
    corr = np.eye(3)
    if int(full.sum()) >= 10:
        _, cov_full = robust_gaussian(x[full], floor=floor)
        d = np.sqrt(np.diag(cov_full))
        corr = cov_full / np.outer(d, d)
    cov = corr * np.outer(sd, sd)
    return mean, 0.5 * (cov + cov.T) + np.eye(3) * floor


@dataclass(frozen=True)
class FlakeStat:
    """Contrast summary of one outlined region (one flake or terrace of one thickness)."""

    image_index: int
    region_index: int
    median_rgb: np.ndarray  # (3,) median contrast of the eroded interior
    spread_rgb: np.ndarray  # (3,) robust sd of the interior contrast
    n_pixels: int  # interior pixels used
    area_px: int  # pixels of the whole mask
    pixels: np.ndarray  # (m, 3) float32 interior contrast sample (m <= 4000)


def _erode(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    area = int(m.sum())
    for r in (2, 1):
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        e = cv2.erode(m, k)
        if e.sum() >= max(10, 0.25 * area):
            return e.astype(bool)
    return mask.astype(bool)


def flake_stat(
    contrast: np.ndarray,
    mask: np.ndarray,
    *,
    image_index: int,
    region_index: int,
    offset: tuple[int, int] = (0, 0),
) -> FlakeStat | None:
    """Statistics of ``contrast`` (H, W, 3) inside the eroded ``mask``; None if it is empty.

    ``mask`` may be a crop whose top-left pixel is at ``offset`` (y, x) of the image.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    y0, y1 = max(int(rows[0]) - 3, 0), int(rows[-1]) + 4
    x0, x1 = max(int(cols[0]) - 3, 0), int(cols[-1]) + 4
    area = int(np.count_nonzero(mask[y0:y1, x0:x1]))
    inner = _erode(mask[y0:y1, x0:x1])
    oy, ox = offset
    window = contrast[oy + y0 : oy + y0 + inner.shape[0], ox + x0 : ox + x0 + inner.shape[1]]
    px = window[inner[: window.shape[0], : window.shape[1]]]
    if len(px) == 0:
        return None
    has = np.isfinite(px).any(axis=0)  # a channel clipped in this image is all NaN
    med = np.full(3, np.nan)
    spread = np.full(3, np.nan)
    if has.any():
        med[has] = np.nanmedian(px[:, has], axis=0)
        spread[has] = 1.4826 * np.nanmedian(np.abs(px[:, has] - med[has]), axis=0)
    sample = px
    if len(px) > 4000:
        idx = np.random.default_rng(region_index).choice(len(px), 4000, replace=False)
        sample = px[np.sort(idx)]
    return FlakeStat(
        image_index=image_index,
        region_index=region_index,
        median_rgb=med.astype(np.float64),
        spread_rgb=spread.astype(np.float64),
        n_pixels=len(px),
        area_px=area,
        pixels=np.asarray(sample, dtype=np.float32),
    )
