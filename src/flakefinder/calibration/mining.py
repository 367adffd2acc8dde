"""Candidate thin-flake regions in an unlabelled micrograph (for no-label calibration).

A pixel is a candidate when its contrast is clearly not substrate (beyond 5 noise sigmas in some
channel, after a small median filter), not far from it (thin flakes stay within ``max_contrast``
of the substrate in every channel; bulk crystals and bright debris do not), and locally flat (its
5 x 5 neighbourhood varies little: terrace interiors, not edges, wrinkles or residue textures).
Connected candidates of at least ``min_area_um2`` are regions; each is one candidate thickness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from flakefinder.calibration.background import Background

__all__ = ["mine_regions"]


def mine_regions(
    contrast: np.ndarray,
    background: Background,
    *,
    um_per_px: float,
    min_area_um2: float = 20.0,
    max_contrast: float = 0.75,
    max_regions: int = 200,
) -> list[tuple[int, int, np.ndarray]]:
    """Flat, thin-looking regions of one contrast image as ``(y0, x0, crop mask)``."""
    h, w = contrast.shape[:2]
    step = 2 if min(h, w) >= 600 else 1
    c = np.ascontiguousarray(contrast[::step, ::step])
    noise = np.maximum(np.asarray(background.noise_rgb, dtype=np.float32), 0.004)
    # median filter per channel on 8-bit-quantised contrast (cv2 supports uint8 for k=5)
    q = np.clip((c + 1.0) * 127.5, 0, 255).astype(np.uint8)
    med = cv2.medianBlur(q, 5).astype(np.float32) / 127.5 - 1.0
    z = np.abs(med) / noise[None, None, :]
    signif = z.max(axis=2) > 5.0
    thin = np.abs(med).max(axis=2) < max_contrast
    mean = cv2.blur(c, (5, 5))
    sq = cv2.blur(c * c, (5, 5))
    local_sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    flat = np.all(local_sd < np.maximum(2.5 * noise, 0.02)[None, None, :], axis=2)
    cand = (signif & thin & flat).astype(np.uint8)
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=4)
    min_px = min_area_um2 / (um_per_px * step) ** 2
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_px]
    keep.sort(key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    out = []
    for i in keep[:max_regions]:
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        sub = labels[y : y + bh, x : x + bw] == i
        if step > 1:
            sub = np.repeat(np.repeat(sub, step, axis=0), step, axis=1)
        ys, xs = y * step, x * step
        out.append((ys, xs, sub[: h - ys, : w - xs]))
    return out
