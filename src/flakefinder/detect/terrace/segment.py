"""``segment_terraces``: one micrograph to its terraces, no profile needed (see the package)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from flakefinder.detect.terrace.background import Background, estimate_background
from flakefinder.detect.terrace.features import (
    FeatureLimits,
    TerraceFeatures,
    measure,
    rejection_reason,
)
from flakefinder.detect.terrace.image import WorkingImage, working_image
from flakefinder.detect.terrace.regions import (
    RegionSettings,
    edge_lines,
    region_stats,
    terrace_labels,
)

MIN_FLAKE_LOG_CONTRAST = 0.008
"""The foreground's minimum |log contrast| (``SegmentSettings.min_contrast``'s default)."""


@dataclass(frozen=True)
class SegmentSettings:
    """Settings of :func:`segment_terraces`.

    Attributes
    ----------
    long_side_px
        Working resolution: the image is shrunk by an integer factor so that its longer side is
        near this (1920 x 1200 -> 960 x 600).
    k_sigma, min_contrast
        Foreground: colour differs from the substrate field by more than ``k_sigma`` noise sds
        and by more than ``min_contrast`` (log units) in some channel.
    regions, limits
        See :class:`~.regions.RegionSettings` and :class:`~.features.FeatureLimits`.
    """

    long_side_px: int = 1024
    k_sigma: float = 4.0
    min_contrast: float = MIN_FLAKE_LOG_CONTRAST
    regions: RegionSettings = field(default_factory=RegionSettings)
    limits: FeatureLimits = field(default_factory=FeatureLimits)


@dataclass(frozen=True, eq=False)
class Terrace:
    """One region of one colour found in a micrograph.

    Attributes
    ----------
    label
        Its label in :attr:`TerraceMap.labels`.
    box
        (x0, y0, x1, y1) in working pixels (exclusive end), with a 2-pixel margin.
    mask
        Bool crop of ``box``: the region.
    features
        Its measurements (:class:`~.features.TerraceFeatures`).
    reason
        Why it is not a flake terrace, or None when it is one.
    """

    label: int
    box: tuple[int, int, int, int]
    mask: np.ndarray
    features: TerraceFeatures
    reason: str | None

    @property
    def contrast_rgb(self) -> np.ndarray:
        """(3,) ``C = I / I_substrate - 1`` of the interior (NaN in channels that clipped)."""
        return np.asarray(np.expm1(self.features.log_contrast), dtype=np.float64)

    @property
    def is_flake(self) -> bool:
        """True when no rejection reason applies."""
        return self.reason is None


@dataclass(frozen=True, eq=False)
class TerraceMap:
    """The terraces of one micrograph and the working image they were found in."""

    work: WorkingImage
    background: Background
    labels: np.ndarray
    terraces: tuple[Terrace, ...]

    @property
    def flakes(self) -> tuple[Terrace, ...]:
        """The terraces that are flakes (no rejection reason)."""
        return tuple(t for t in self.terraces if t.is_flake)

    def contrast_rgb(self, terrace: Terrace) -> np.ndarray:
        """Terrace contrast with NaN in the channels that carry none in this image."""
        c = terrace.contrast_rgb.copy()
        c[~self.work.valid] = np.nan
        return c

    def full_mask(self, terrace: Terrace) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """The terrace at the original resolution: (H, W) bool mask, uint8 crop, crop origin."""
        from flakefinder.detect.calibrated import upsample_mask

        x0, y0, _, _ = terrace.box
        h, w = self.work.shape
        return upsample_mask(terrace.mask.astype(np.uint8), x0, y0, self.work.factor, h, w)

    def area_full_px(self, terrace: Terrace) -> float:
        """Area in original pixels."""
        return float(terrace.features.area_px * self.work.factor**2)

    def mask_contrast(self, mask: np.ndarray, k_sigma: float = 4.0) -> tuple[np.ndarray, bool]:
        """Contrast of any region given as an (H, W) bool mask at the original resolution.

        The median log contrast of its eroded interior at working resolution (as for a
        terrace), as ``C = I / I_substrate - 1`` with NaN in channels that carry none, and
        whether it stands out of the substrate (more than ``k_sigma`` noise sds and the
        foreground's minimum contrast in some valid channel).
        """
        import cv2

        f = self.work.factor
        h, w = self.labels.shape
        m8 = np.asarray(mask, dtype=np.uint8)[: h * f, : w * f]
        if f > 1:
            m8 = np.asarray(cv2.resize(m8 * np.uint8(255), (w, h), interpolation=cv2.INTER_AREA))
            m8 = (m8 >= 128).astype(np.uint8)
        m = m8.astype(bool)
        if m.shape != (h, w):
            grown = np.zeros((h, w), dtype=bool)
            grown[: m.shape[0], : m.shape[1]] = m
            m = grown
        inner = cv2.erode(m.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        sel = inner if int(inner.sum()) >= 6 else m
        nan3 = np.full(3, np.nan)
        if not sel.any():
            return nan3, False
        med = np.median(self.background.log_contrast[sel], axis=0).astype(np.float64)
        valid = self.work.valid
        c = np.where(valid, np.expm1(med), np.nan)
        if not valid.any():
            return c, False
        mag = np.abs(med[valid])
        noise = np.asarray(self.background.noise, dtype=np.float64)[valid]
        significant = bool(np.any((mag > k_sigma * noise) & (mag > MIN_FLAKE_LOG_CONTRAST)))
        return c, significant


def segment_terraces(image: np.ndarray, settings: SegmentSettings | None = None) -> TerraceMap:
    """Find the terraces of ``image`` (H, W, 3 uint8 RGB); see the package docstring.

    Raises
    ------
    ImageError
        For an image that is not RGB uint8, too small, or has no bare substrate.
    """
    s = settings or SegmentSettings()
    work = working_image(image, long_side_px=s.long_side_px)
    bg = estimate_background(work, k_sigma=s.k_sigma, min_contrast=s.min_contrast)
    r = s.regions
    lines = edge_lines(bg.log_contrast, bg.noise, work.valid, r.canny_low, r.canny_high)
    labels = terrace_labels(
        bg.log_contrast, bg.noise, work.valid, bg.foreground, work.clipped, r, lines=lines
    )
    n = int(labels.max()) + 1
    terraces: list[Terrace] = []
    if n > 1:
        mean, count, _ = region_stats(labels, bg.log_contrast, n)
        h, w = labels.shape
        floor = max(s.limits.min_area_px, round(s.limits.min_area_share * h * w))
        limits = replace(s.limits, min_area_px=floor)
        boxes = _label_boxes(labels, n)
        for lab in range(1, n):
            box = boxes[lab]
            if box is None or count[lab] < floor:
                continue
            x0, y0, x1, y1 = box
            x0, y0 = max(0, x0 - 2), max(0, y0 - 2)
            x1, y1 = min(w, x1 + 2), min(h, y1 + 2)
            crop = labels[y0:y1, x0:x1]
            comp = crop == lab
            at_border = x0 == 0 or y0 == 0 or x1 == w or y1 == h
            f = measure(
                comp,
                bg.log_contrast[y0:y1, x0:x1],
                work.valid,
                work.clipped[y0:y1, x0:x1],
                crop,
                mean,
                at_border,
                lines[y0:y1, x0:x1],
            )
            reason = rejection_reason(f, work.valid, limits)
            terraces.append(Terrace(lab, (x0, y0, x1, y1), comp, f, reason))
    return TerraceMap(work, bg, labels, tuple(terraces))


def _label_boxes(labels: np.ndarray, n: int) -> list[tuple[int, int, int, int] | None]:
    """Bounding box (x0, y0, x1, y1), exclusive end, of every label 0..n-1 (None when absent)."""
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    out: list[tuple[int, int, int, int] | None] = [None] * n
    if lab.size == 0:
        return out
    big = np.iinfo(np.int64).max
    x0 = np.full(n, big)
    y0 = np.full(n, big)
    x1 = np.full(n, -1)
    y1 = np.full(n, -1)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs)
    np.maximum.at(y1, lab, ys)
    for i in np.flatnonzero(x1 >= 0):
        out[int(i)] = (int(x0[i]), int(y0[i]), int(x1[i]) + 1, int(y1[i]) + 1)
    return out


def min_area_px(min_area_um2: float, um_per_px: float, factor: int) -> int:
    """Working pixels of ``min_area_um2`` at ``um_per_px`` (original) shrunk by ``factor``."""
    return max(1, math.ceil(min_area_um2 / (um_per_px * factor) ** 2))
