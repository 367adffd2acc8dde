"""Calibrated contrast detector: per-pixel Gaussian classification against a setup profile.

The contrast detector with a :class:`~flakefinder.calibration.profile.SetupProfile` (the approach
of Uslu et al. 2024, 2DMatGMM, re-implemented for speed with numpy/cv2):

1. optional flat-field division; the image is shrunk (area average) to a working pixel size near
   ``work_um_per_px`` (~0.75 um): averaging removes JPEG and shot noise, and everything after
   runs on 4x fewer pixels;
2. the substrate level comes from the image itself (:mod:`flakefinder.detect.substrate`), and
   contrast ``C = I / I_bg - 1`` per channel on stored camera values, the profile's convention;
3. each pixel goes to the most likely of the substrate and the profile's (material, layers)
   Gaussians, a layer only within ``max_sigma`` Mahalanobis distance
   (:mod:`flakefinder.detect.gaussians`); clipped pixels and far colours are "other" (bulk);
4. per layer class: connected components are the instances, so a multi-terrace flake splits into
   one region per thickness; a 3 x 3 opening grown back by one pixel removes speckle, one- and
   two-pixel rims and lines hanging off flakes; regions under ``min_area_um2`` go;
5. the false-positive filter (:mod:`flakefinder.detect.regions`) drops edge rims of bulk
   crystals, ragged noise clusters and off-colour residue;
6. masks are upsampled bilinearly to the full image; material, exact layer number and a confidence
   from the colour agreement are reported.

:func:`classify_instance` gives the same classification for any mask (e.g. from Mask R-CNN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from flakefinder.calibration.profile import SetupProfile, check_compatible
from flakefinder.detect.contrast import mask_polygon
from flakefinder.detect.gaussians import (
    OTHER,
    LayerGaussian,
    PixelClasses,
    background_gaussian,
    classify_pixels,
    layer_gaussians,
)
from flakefinder.detect.regions import (
    FilterSettings,
    confidence,
    region_features,
    rejection_reason,
)
from flakefinder.detect.substrate import Substrate, apply_flatfield, estimate_substrate
from flakefinder.domain import Detection, ImagingContext, LayerClass, check_rgb_image

if TYPE_CHECKING:
    from collections.abc import Sequence

CLIPPED = 254  # a stored value from which a channel counts as clipped


def work_factor(um_per_px: float, work_um_per_px: float) -> int:
    """Integer shrink factor that brings ``um_per_px`` closest to ``work_um_per_px`` (>= 1)."""
    return max(1, round(work_um_per_px / um_per_px))


@dataclass(frozen=True, eq=False)
class Prepared:
    """An image at working resolution with its substrate and per-pixel classes."""

    factor: int
    small: np.ndarray  # (h, w, 3) float32 stored units (flat-field corrected)
    substrate: Substrate
    contrast: np.ndarray  # (h, w, 3) float32
    classes: PixelClasses


def prepare(
    image: np.ndarray,
    gaussians: Sequence[LayerGaussian],
    *,
    factor: int,
    max_sigma: float,
    flatfield: np.ndarray | None = None,
    band: float | None = None,
) -> Prepared:
    """Shrink, estimate the substrate, form the contrast and classify every pixel."""
    img = check_rgb_image(image)
    h, w = img.shape[:2]
    hs, ws = max(1, h // factor), max(1, w // factor)
    src = img[: hs * factor, : ws * factor]
    small_u8 = cv2.resize(src, (ws, hs), interpolation=cv2.INTER_AREA) if factor > 1 else src
    clip_u8 = cv2.inRange(small_u8, (0, 0, 0), (CLIPPED - 1,) * 3) == 0
    if flatfield is not None:
        small = apply_flatfield(small_u8, flatfield)
    else:
        small = small_u8.astype(np.float32)
    if band is None:
        band = substrate_band(gaussians)
    sub = estimate_substrate(small, band=band)
    classes = classify_pixels(
        sub.contrast,
        gaussians,
        background_gaussian(sub.covariance_rgb),
        max_sigma=max_sigma,
        substrate=sub.substrate_mask,
        clipped=clip_u8,
    )
    return Prepared(factor, small, sub, sub.contrast, classes)


def substrate_band(gaussians: Sequence[LayerGaussian]) -> float:
    """Half-width of the substrate band: below half the weakest layer's strongest channel."""
    weakest = min(float(np.max(np.abs(g.mean))) for g in gaussians)
    return float(np.clip(0.4 * weakest, 0.015, 0.06))


class CalibratedContrastDetector:
    """Contrast detector calibrated by a setup profile; implements ``domain.Detector``.

    Parameters
    ----------
    profile : SetupProfile
        The microscope setup's colour tables.
    flatfield : numpy.ndarray or None
        Flat-field image normalised to mean 1 (:func:`~flakefinder.detect.substrate.load_flatfield`).
    min_area_um2 : float
        Size floor of a flake region.
    max_sigma : float
        Mahalanobis distance within which a pixel belongs to a layer class.
    max_layers : int or None
        Ignore profile entries thicker than this.
    work_um_per_px : float
        Target pixel size of the classification (the image is shrunk by an integer factor).
    filter_settings : FilterSettings or None
        Thresholds of the false-positive filter; ``None`` turns the filter off.
    """

    name = "contrast-calibrated"
    version = "2.0"

    def __init__(
        self,
        profile: SetupProfile,
        *,
        flatfield: np.ndarray | None = None,
        min_area_um2: float = 20.0,
        max_sigma: float = 5.0,
        max_layers: int | None = None,
        work_um_per_px: float = 0.75,
        filter_settings: FilterSettings | None = FilterSettings(),
        polygon_epsilon_px: float = 1.0,
    ) -> None:
        for what, v in (("min_area_um2", min_area_um2), ("max_sigma", max_sigma)):
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{what} must be a finite number >= 0, got {v}")
        if not math.isfinite(work_um_per_px) or work_um_per_px <= 0:
            raise ValueError(f"work_um_per_px must be > 0, got {work_um_per_px}")
        self.profile = profile
        self.flatfield = flatfield
        self.min_area_um2 = float(min_area_um2)
        self.max_sigma = float(max_sigma)
        self.max_layers = max_layers
        self.work_um_per_px = float(work_um_per_px)
        self.filter_settings = filter_settings
        self.polygon_epsilon_px = float(polygon_epsilon_px)
        self._cache: dict[tuple[str, ...], tuple[LayerGaussian, ...]] = {}

    @property
    def profile_sha256(self) -> str:
        """sha256 of the profile in use (recorded by scans)."""
        return self.profile.sha256

    def gaussians(self, materials: Sequence[str]) -> tuple[LayerGaussian, ...]:
        """The layer classes of ``materials`` (cached)."""
        key = tuple(materials)
        if key not in self._cache:
            self._cache[key] = layer_gaussians(self.profile, key, max_layers=self.max_layers)
        return self._cache[key]

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        """Find flakes of ``context.materials`` in ``image`` (see the module docstring)."""
        check_compatible(
            self.profile, materials=context.materials, oxide_nm=context.oxide_thickness_nm
        )
        gaussians = self.gaussians(context.materials)
        img = check_rgb_image(image)
        h, w = img.shape[:2]
        f = work_factor(context.um_per_px, self.work_um_per_px)
        prep = prepare(img, gaussians, factor=f, max_sigma=self.max_sigma, flatfield=self.flatfield)
        um_work = context.um_per_px * f
        min_px = max(4, math.ceil(self.min_area_um2 / um_work**2))
        labels = prep.classes.labels
        # one connected-component pass over all layer pixels; each blob is then split by class
        layer_px = cv2.inRange(labels, 1, len(gaussians))
        n, cc, stats, _ = cv2.connectedComponentsWithStats(layer_px, connectivity=8)
        dets: list[Detection] = []
        hs, ws = labels.shape
        for lab in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_px) + 1:
            x0, y0, bw, bh = (int(v) for v in stats[lab, :4])
            px0, py0 = max(0, x0 - 4), max(0, y0 - 4)
            px1, py1 = min(ws, x0 + bw + 4), min(hs, y0 + bh + 4)
            sl = (slice(py0, py1), slice(px0, px1))
            blob = cc[sl] == lab
            lab_crop = labels[sl]
            for k in np.unique(lab_crop[blob]):
                for comp in self._class_parts(lab_crop, blob, int(k), min_px):
                    det = self._region(comp, sl, prep, gaussians, int(k) - 1, f, um_work, h, w)
                    if det is not None:
                        dets.append(det)
        dets.sort(key=lambda d: (d.bbox_px[1], d.bbox_px[0]))
        return dets

    @staticmethod
    def _class_parts(
        lab_crop: np.ndarray, blob: np.ndarray, k: int, min_px: int
    ) -> list[np.ndarray]:
        """Connected parts of class ``k`` inside ``blob``, without speckle and thin appendages.

        The class mask is opened (3 x 3: drops speckle, one- and two-pixel rims and lines) and
        grown back by one pixel inside the closed class mask (substrate pinholes filled), so
        small or narrow flakes keep their outline while lines hanging off a flake are cut.
        """
        is_k = (lab_crop == k) & blob
        if int(is_k.sum()) < min_px:
            return []
        kernel = np.ones((3, 3), np.uint8)
        core = cv2.morphologyEx(is_k.view(np.uint8), cv2.MORPH_OPEN, kernel)
        closed = cv2.morphologyEx(is_k.view(np.uint8), cv2.MORPH_CLOSE, kernel)
        allowed = np.asarray(closed, dtype=np.uint8) & (is_k | (lab_crop == 0)).view(np.uint8)
        m = np.asarray(cv2.dilate(core, kernel), dtype=np.uint8) & allowed
        n, cc, st, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        return [(cc == j).view(np.uint8) for j in range(1, n) if st[j, cv2.CC_STAT_AREA] >= min_px]

    def _region(
        self,
        comp: np.ndarray,
        sl: tuple[slice, slice],
        prep: Prepared,
        gaussians: Sequence[LayerGaussian],
        index: int,
        f: int,
        um_work: float,
        h: int,
        w: int,
    ) -> Detection | None:
        g = gaussians[index]
        feats = region_features(
            comp,
            prep.classes.labels[sl],
            prep.classes.distance[sl],
            prep.contrast[sl],
            g.spread,
            thicker_labels(gaussians, g),
        )
        if self.filter_settings is not None:
            if rejection_reason(feats, self.filter_settings, um_work) is not None:
                return None
        layer_class = LayerClass.from_layers(g.n_layers)
        if layer_class is None:
            return None
        conf = confidence(feats, self.max_sigma)
        med = np.median(prep.contrast[sl][comp.astype(bool)], axis=0)
        px0, py0 = sl[1].start, sl[0].start
        full, crop, (fx0, fy0) = upsample_mask(comp, px0, py0, f, h, w)
        ys, xs = np.nonzero(crop)
        if xs.size == 0:
            return None
        return Detection(
            material=g.material,
            layer_class=layer_class,
            confidence=conf,
            polygon_px=mask_polygon(crop, fx0, fy0, self.polygon_epsilon_px),
            bbox_px=(
                float(xs.min() + fx0),
                float(ys.min() + fy0),
                float(xs.max() + fx0 + 1),
                float(ys.max() + fy0 + 1),
            ),
            area_px=float(xs.size),
            layer_count=g.n_layers,
            contrast_rgb=(float(med[0]), float(med[1]), float(med[2])),  # the profile's C
            mask=full,
        )


def thicker_labels(gaussians: Sequence[LayerGaussian], g: LayerGaussian) -> np.ndarray:
    """(256,) bool: labels thicker than ``g`` (``OTHER`` and classes of stronger contrast)."""
    out = np.zeros(256, bool)
    out[OTHER] = True
    strength = float(np.linalg.norm(g.mean))
    for k, other in enumerate(gaussians, start=1):
        out[k] = float(np.linalg.norm(other.mean)) > strength
    return out


def upsample_mask(
    comp: np.ndarray, x0: int, y0: int, f: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Upsample a working-resolution crop ``comp`` at (x0, y0) by ``f`` into an (h, w) image.

    Returns the full bool mask, the uint8 0/1 full-resolution crop and the crop's origin.
    """
    ch, cw = comp.shape
    if f == 1:
        big = comp.astype(np.uint8)
    else:
        up = cv2.resize(comp * np.uint8(255), (cw * f, ch * f), interpolation=cv2.INTER_LINEAR)
        big = (np.asarray(up) >= 128).view(np.uint8)
    fy, fx = y0 * f, x0 * f
    hh, ww = min(h - fy, big.shape[0]), min(w - fx, big.shape[1])
    crop = np.ascontiguousarray(big[:hh, :ww])
    full = np.zeros((h, w), dtype=bool)
    full[fy : fy + hh, fx : fx + ww] = crop.view(bool)
    return full, crop, (fx, fy)


@dataclass(frozen=True)
class InstanceClass:
    """The calibrated classification of one instance mask.

    Attributes
    ----------
    material : str or None
        Best material, ``None`` when no layer class explains the region's colour.
    n_layers : int or None
        Exact layer number of that material.
    confidence : float
        Share of the region's interior pixels that vote for the chosen class, in [0, 1].
    contrast_rgb : tuple of float
        Median contrast ``I / I_bg - 1`` of the interior, RGB.
    sigma : float
        Mahalanobis distance of that median to the chosen class (inf when none).
    """

    material: str | None
    n_layers: int | None
    confidence: float
    contrast_rgb: tuple[float, float, float]
    sigma: float


def classify_instance(
    image: np.ndarray,
    mask: np.ndarray,
    profile: SetupProfile,
    materials: Sequence[str],
    *,
    um_per_px: float | None = None,
    max_sigma: float = 5.0,
    flatfield: np.ndarray | None = None,
    work_um_per_px: float = 0.75,
) -> InstanceClass:
    """Material and exact layer number of the flake under ``mask`` by the profile's Gaussians.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, 3) uint8 RGB.
    mask : numpy.ndarray
        (H, W) bool/0-1 mask of one instance (e.g. from Mask R-CNN).
    profile : SetupProfile
        Colour tables; ``materials`` must be in it.
    um_per_px : float or None
        Pixel size (default: the profile's).
    """
    img = check_rgb_image(image)
    m = np.asarray(mask)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask shape {m.shape} differs from the image's {img.shape[:2]}")
    gaussians = layer_gaussians(profile, materials)
    f = work_factor(um_per_px or profile.um_per_px, work_um_per_px)
    prep = prepare(img, gaussians, factor=f, max_sigma=max_sigma, flatfield=flatfield)
    hs, ws = prep.contrast.shape[:2]
    mu8 = (m[: hs * f, : ws * f] > 0).astype(np.uint8)
    small = cv2.resize(mu8 * np.uint8(255), (ws, hs), interpolation=cv2.INTER_AREA) >= 128
    inner = cv2.erode(small.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    sel = inner if inner.sum() >= 4 else small
    if not sel.any():
        return InstanceClass(None, None, 0.0, (0.0, 0.0, 0.0), math.inf)
    med = np.median(prep.contrast[sel], axis=0).astype(np.float32)
    votes = np.bincount(prep.classes.labels[sel], minlength=256)
    d = [float(np.sqrt(g.distance2(med.reshape(1, 1, 3))[0, 0])) for g in gaussians]
    best = int(np.argmin(d))
    crgb = (float(med[0]), float(med[1]), float(med[2]))
    if d[best] > max_sigma:
        return InstanceClass(None, None, 0.0, crgb, d[best])
    share = float(votes[best + 1]) / float(sel.sum())
    g = gaussians[best]
    return InstanceClass(g.material, g.n_layers, share, crgb, d[best])
