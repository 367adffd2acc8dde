"""Measurements of a terrace and the reasons a region is not a flake (numpy + cv2).

A flake terrace is a compact area of one colour. What else ends up in the foreground:

* ``bulk``: thick crystals: clipped, far brighter than the substrate, or nearly black;
* ``sliver``: bands a few pixels wide: blurred outlines of thicker pieces, folds, scratches;
* ``halo``: a ring around a stronger region whose colour lies between it and the substrate
  (defocus, scattered light);
* ``residue``: tape glue and dirt: faint and mottled (its own scatter comparable to its contrast),
  or faint and crossed by edge lines over a quarter of its interior (dots and streaks; a
  terrace is flat);
* ``small``: under the size floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_K3 = np.ones((3, 3), np.uint8)
MIN_INTERIOR_PX = 10  # interior pixels needed to measure the edge share


@dataclass(frozen=True)
class FeatureLimits:
    """Thresholds of :func:`rejection_reason` (log contrast, working pixels)."""

    min_area_px: int = 20
    min_area_share: float = 8.7e-5  # of the field of view: 200 px of a 1920 x 1200 image
    min_radius_px: float = 1.6
    bright: float = 0.37  # log(I/I_sub) above which a terrace is bulk (C > +0.45)
    dark: float = -1.4  # below this in every valid channel: bulk or dirt (C < -0.75)
    max_clipped: float = 0.1
    residue_contrast: float = 0.06  # residue is faint ...
    residue_ratio: float = 0.6  # ... and its scatter is this share of its contrast or more
    halo_share: float = 0.3  # share of the outline on a stronger neighbour
    halo_radius_px: float = 4.0
    max_edge_share: float = 0.25  # of the interior on edge lines: more is textured residue ...
    textured_contrast: float = 0.3  # ... when fainter than this (log units, C of -26 % .. +35 %)


@dataclass(frozen=True)
class TerraceFeatures:
    """What :func:`measure` finds for one region (working pixels, log contrast).

    Attributes
    ----------
    area_px
        Pixels of the region.
    log_contrast
        (3,) median log contrast of the eroded interior (0 in channels that are not valid).
    scatter
        (3,) robust sd of the interior's log contrast.
    radius_px
        Largest distance from a region pixel to its outside.
    solidity
        Area over convex-hull area.
    clipped_share
        Share of the region and its 1-pixel ring that clipped.
    touches_border
        Whether the region touches the image border.
    stronger_neighbour_share
        Share of the region's outer ring that belongs to a region of the same hue and stronger
        contrast (a halo's core), or 0.
    edge_share
        Share of the interior (2 pixels in from the outline) on edge lines, or 0 when the
        interior is too small to tell.
    """

    area_px: int
    log_contrast: np.ndarray
    scatter: np.ndarray
    radius_px: float
    solidity: float
    clipped_share: float
    touches_border: bool
    stronger_neighbour_share: float
    edge_share: float = 0.0


def measure(
    comp: np.ndarray,
    log_contrast: np.ndarray,
    valid: np.ndarray,
    clipped: np.ndarray,
    ring_labels: np.ndarray,
    label_contrast: np.ndarray,
    at_border: bool,
    lines: np.ndarray | None = None,
) -> TerraceFeatures:
    """Features of the region ``comp`` (bool crop with a 2-pixel margin).

    ``log_contrast``, ``clipped``, ``ring_labels`` and ``lines`` are the same crop of the log
    contrast, the clipped mask, the label image and the edge lines; ``label_contrast`` holds
    every label's mean log contrast (for the halo test).
    """
    c8 = comp.astype(np.uint8)
    area = int(c8.sum())
    inner = cv2.erode(c8, _K3).astype(bool)
    if int(inner.sum()) < 6:
        inner = comp
    vals = log_contrast[inner]
    med = np.median(vals, axis=0)
    scatter = 1.4826 * np.median(np.abs(vals - med), axis=0)
    dt = cv2.distanceTransform(np.pad(c8, 1), cv2.DIST_L2, 3)
    contours, _ = cv2.findContours(c8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = sum(float(cv2.contourArea(cv2.convexHull(c))) for c in contours)
    solidity = min(1.0, area / hull) if hull > 0 else 1.0
    grown = cv2.dilate(c8, _K3).astype(bool)
    clipped_share = float(clipped[grown].mean()) if grown.any() else 0.0
    ring = grown & ~comp
    stronger = 0.0
    if ring.any():
        own = med[valid]
        own_mag = float(np.abs(own).max())
        neighbours = ring_labels[ring]
        hits = 0
        for lab in np.unique(neighbours[neighbours > 0]):
            other = label_contrast[lab][valid]
            other_mag = float(np.abs(other).max())
            if other_mag <= 1.5 * own_mag or other_mag == 0.0:
                continue
            t = float(np.dot(own, other) / np.dot(other, other))
            resid = float(np.linalg.norm(own - t * other))
            if 0.05 < t < 0.8 and resid < 0.5 * own_mag + 0.01:
                hits += int(np.sum(neighbours == lab))
        stronger = hits / int(ring.sum())
    edge_share = 0.0
    if lines is not None:
        core = cv2.erode(c8, _K3, iterations=2).astype(bool)
        if int(core.sum()) >= MIN_INTERIOR_PX:
            edge_share = float(lines[core].mean())
    return TerraceFeatures(
        area, med, scatter, float(dt.max()), solidity, clipped_share, at_border, stronger,
        edge_share,
    )


def rejection_reason(f: TerraceFeatures, valid: np.ndarray, limits: FeatureLimits) -> str | None:
    """Why the region is not a flake terrace (None: it is one)."""
    lc = f.log_contrast[valid]
    if f.area_px < limits.min_area_px:
        return "small"
    if f.clipped_share > limits.max_clipped or float(lc.max()) > limits.bright:
        return "bulk"
    if float(lc.max()) < limits.dark:
        return "bulk"
    if f.radius_px < limits.min_radius_px:
        return "sliver"
    if f.stronger_neighbour_share > limits.halo_share and f.radius_px < limits.halo_radius_px:
        return "halo"
    mag = float(np.abs(lc).max())
    spread = float(np.abs(f.scatter[valid]).max())
    if mag < limits.residue_contrast and spread > limits.residue_ratio * mag:
        return "residue"
    if f.edge_share > limits.max_edge_share and mag < limits.textured_contrast:
        # (a dark flake is not tested: its log contrast is noisier than the substrate's, and
        # the noise draws edge lines)
        return "residue"
    return None


def flake_confidence(f: TerraceFeatures, valid: np.ndarray, noise: np.ndarray) -> float:
    """0..1: how much the region looks like a flake terrace rather than debris or a fragment.

    The weakest of three terms, each 1 for a clear case: width (a terrace is several pixels
    wide; fragments, rims and specks are not), flatness (its own scatter is small next to its
    contrast; residue and halos are mottled or graded) and significance (contrast well above
    the substrate noise).
    """
    lc = np.abs(f.log_contrast[valid])
    mag = float(lc.max())
    if mag <= 0.0:
        return 0.0
    width = float(np.clip((f.radius_px - 1.5) / 2.5, 0.0, 1.0))
    ratio = float(np.abs(f.scatter[valid]).max()) / mag
    flat = float(np.clip((0.6 - ratio) / 0.3, 0.0, 1.0))
    snr = mag / float(np.max(noise[valid]))
    significant = float(np.clip((snr - 4.0) / 4.0, 0.0, 1.0))
    return min(width, flat, significant)
