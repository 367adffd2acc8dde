"""Region features and the false-positive filter of the calibrated detector (numpy + cv2).

A candidate is one connected region of one layer class at working resolution. Real thin flakes
are compact areas of uniform colour bordered by substrate or by other layers of the same crystal.
The common false positives in real micrographs are

* rims: the blurred edge of a bulk crystal or a fold passes through thin-layer colours, giving a
  band one or two pixels wide along the edge (small inscribed radius, touching "other" pixels);
* residue and debris: small, textured, with colours only loosely matching a layer;
* ragged noise clusters of near-threshold substrate pixels (low solidity, far from the mean);
* ramps: a wide blurred edge (out-of-focus bulk crystal, a fold) whose colour slides through the
  thin-layer colours; each colour band is a region several pixels wide, but it is not flat.

The features are cheap: inscribed radius (distance transform), solidity (area over convex hull),
the share of the region's surrounding ring that is bulk/other, the median Mahalanobis distance,
and the median colour gradient inside the region in units of the class's spread (``ramp``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.detect.gaussians import OTHER

RING_PX = 2  # width of the ring around a region that is inspected for neighbours


@dataclass(frozen=True)
class RegionFeatures:
    """Shape and context features of one candidate region (working-resolution pixels).

    Attributes
    ----------
    area_px : int
        Pixels in the region.
    inscribed_radius_px : float
        Largest distance from a region pixel to the region's outside.
    solidity : float
        Area over convex-hull area (1 = convex).
    ring_other : float
        Share of the surrounding ring that is thicker than the region: bulk, residue or clipped
        (``OTHER``) or a layer class of stronger contrast (see ``beyond`` in
        :func:`region_features`). A rim runs between such a neighbour and the substrate.
    median_sigma : float
        Median Mahalanobis distance of the region's pixels to their class.
    ramp : float
        Median colour gradient (per working pixel) inside the region over the class's spread:
        ~1 or less on a flat flake, several on a blurred edge.
    """

    area_px: int
    inscribed_radius_px: float
    solidity: float
    ring_other: float
    median_sigma: float
    ramp: float = 0.0


@dataclass(frozen=True)
class FilterSettings:
    """Thresholds of the false-positive filter (physical units where they have one).

    Attributes
    ----------
    min_width_um : float
        Smallest inscribed diameter of a flake: thinner regions are edge rims.
    min_solidity : float
        Ragged clusters below this solidity are noise.
    rim_other : float
        A region whose ring is more than this share bulk/other ...
    rim_width_factor : float
        ... and whose inscribed diameter is below ``rim_width_factor * min_width_um`` is a rim.
    max_median_sigma : float
        Regions whose median pixel lies further than this from their class are not that class.
    max_ramp : float
        Regions whose colour slides faster than this (see :class:`RegionFeatures`) are edges.
    """

    min_width_um: float = 1.5
    min_solidity: float = 0.3
    rim_other: float = 0.35
    rim_width_factor: float = 2.5
    max_median_sigma: float = 3.5
    max_ramp: float = 2.5


def region_features(
    comp: np.ndarray,
    labels: np.ndarray,
    distance: np.ndarray,
    contrast: np.ndarray | None = None,
    class_sd: float = 1.0,
    beyond: np.ndarray | None = None,
) -> RegionFeatures:
    """Features of the region ``comp`` (uint8 0/1 crop) given the crop's labels and distances.

    ``contrast`` is the crop's contrast image (for the ramp feature) and ``class_sd`` the spread
    of the region's class (root mean of its covariance diagonal). ``beyond`` is a (256,) bool
    lookup of the labels that count as thicker than the region (default: ``OTHER`` only).
    """
    area = int(comp.sum())
    dt = cv2.distanceTransform(np.pad(comp, 1), cv2.DIST_L2, 3)
    radius = float(dt.max())
    contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = 0.0
    for c in contours:
        hull_area += float(cv2.contourArea(cv2.convexHull(c)))
    solidity = min(1.0, area / hull_area) if hull_area > 0 else 1.0
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RING_PX + 1, 2 * RING_PX + 1))
    ring = cv2.dilate(comp, k).astype(bool) & ~comp.astype(bool)
    n_ring = int(ring.sum())
    if beyond is None:
        beyond = np.zeros(256, bool)
        beyond[OTHER] = True
    ring_other = float(beyond[labels[ring]].sum()) / n_ring if n_ring else 0.0
    sel = comp.astype(bool)
    med = float(np.median(distance[sel]))
    ramp = 0.0
    if contrast is not None:
        gx = cv2.Sobel(contrast, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(contrast, cv2.CV_32F, 0, 1, ksize=3)
        g = np.sqrt(np.max(gx * gx + gy * gy, axis=2)) / 8.0  # Sobel-3 weights sum to 8
        inner = cv2.erode(comp, np.ones((3, 3), np.uint8)).astype(bool)
        use = inner if int(inner.sum()) >= 10 else sel  # the outline is steep on any flake
        ramp = float(np.median(g[use])) / max(class_sd, 1e-6)
    return RegionFeatures(area, radius, solidity, ring_other, med, ramp)


def rejection_reason(
    f: RegionFeatures, settings: FilterSettings, um_per_work_px: float
) -> str | None:
    """Why the region is a false positive (``None``: keep it)."""
    width_um = 2.0 * f.inscribed_radius_px * um_per_work_px
    if width_um < settings.min_width_um:
        return "thin"
    if (
        f.ring_other > settings.rim_other
        and width_um < settings.rim_width_factor * settings.min_width_um
    ):
        return "rim"
    if f.solidity < settings.min_solidity:
        return "ragged"
    if f.median_sigma > settings.max_median_sigma:
        return "off-colour"
    if f.ramp > settings.max_ramp:
        return "ramp"
    return None


def confidence(f: RegionFeatures, max_sigma: float) -> float:
    """Confidence in [0, 1]: colour agreement, lowered for ragged shapes."""
    colour = max(0.0, 1.0 - (f.median_sigma / max_sigma) ** 2)
    shape = min(1.0, 0.5 + f.solidity)
    return float(np.clip(colour * shape, 0.0, 1.0))
