"""``TerraceDetector``: terrace segmentation + per-terrace classification as a ``Detector``.

With a setup profile, every terrace is classified by the profile's tables. Without one, the
detector calibrates itself on the images it is given (per batch; the first batch of a scan),
grouped by camera setting (:mod:`.selfcal`), and keeps those settings for later images of the
same settings. ``notes`` collects what it did, one line each, for the command to print.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.detect.terrace.classify import LayerCall, ProfileClassifier, TerraceClassifier
from flakefinder.detect.terrace.features import flake_confidence
from flakefinder.detect.terrace.segment import SegmentSettings, TerraceMap, segment_terraces
from flakefinder.detect.terrace.selfcal import (
    HUE_TOLERANCE,
    SettingCalibration,
    calibrate_settings,
    hue_distance,
    nearest_setting,
)
from flakefinder.domain import Detection, check_rgb_image
from flakefinder.errors import ImageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.detect.terrace.segment import Terrace
    from flakefinder.domain import ImagingContext

CALIBRATION_SCORE = 0.6  # terraces at least this flake-like calibrate a setting
WARMUP_IMAGES = 8  # without calibrate_on: recalibrate after 2, 4 and 8 images (a scan's first tiles)


class TerraceDetector:
    """Find flake terraces in real micrographs; implements ``Detector`` and ``BatchDetector``.

    Parameters
    ----------
    profile
        A setup profile, or None to self-calibrate on the images (see the module docstring).
    min_area_um2
        Smallest terrace reported, in µm² (at the context's pixel size).
    max_sigma
        Mahalanobis distance within which a terrace takes a table layer.
    long_side_px
        Working resolution (see :class:`~.segment.SegmentSettings`).
    k_sigma
        Foreground threshold in substrate noise sds.
    min_score
        Terraces less flake-like than this are not reported at all (the commands' ``--score``
        filters the reported ones afterwards).
    polygon_epsilon_px
        Outline simplification (original pixels).
    """

    name = "terrace"
    version = "1.0"

    def __init__(
        self,
        profile: SetupProfile | None = None,
        *,
        min_area_um2: float = 0.25,
        max_sigma: float = 4.0,
        long_side_px: int = 1024,
        k_sigma: float = 4.0,
        min_score: float = 0.05,
        polygon_epsilon_px: float = 1.0,
    ) -> None:
        for what, v in (("min_area_um2", min_area_um2), ("max_sigma", max_sigma),
                        ("k_sigma", k_sigma), ("min_score", min_score)):
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{what} must be a finite number >= 0, got {v}")
        if not 64 <= int(long_side_px) <= 8192:
            raise ValueError(f"long_side_px must be in 64..8192, got {long_side_px}")
        self.profile = profile
        self.min_area_um2 = float(min_area_um2)
        self.max_sigma = float(max_sigma)
        self.settings = SegmentSettings(long_side_px=int(long_side_px), k_sigma=float(k_sigma))
        self.min_score = float(min_score)
        self.polygon_epsilon_px = float(polygon_epsilon_px)
        self.calibrations: list[SettingCalibration] = []
        self.notes: list[str] = []
        self._frozen = False  # calibrate_on ran: no warm-up recalibration
        self._warmup: list[tuple[TerraceMap, np.ndarray, str]] = []

    @property
    def needs_calibration(self) -> bool:
        """True until the detector has a profile or has calibrated on a sample of images."""
        return self.profile is None and not self._frozen

    def calibrate_on(
        self, images: Sequence[np.ndarray], context: ImagingContext, names: Sequence[str]
    ) -> list[str]:
        """Self-calibrate on ``images`` (a sample of the batch to come); the notes it made."""
        if self.profile is not None:
            return []
        before = len(self.notes)
        maps, imgs, labels = [], [], []
        for im, label in zip(images, names, strict=True):
            try:
                maps.append(segment_terraces(check_rgb_image(im), self.settings))
                imgs.append(im)
                labels.append(label)
            except ImageError as exc:
                self.notes.append(f"{label}: not used for calibration ({exc})")
        self.calibrations = []
        if maps:
            self._calibrate(maps, imgs, labels, context)
        self._frozen = True
        return self.notes[before:]

    @property
    def profile_sha256(self) -> str | None:
        """sha256 of the profile in use (recorded by scans), None when self-calibrating."""
        return None if self.profile is None else self.profile.sha256

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        """The flake terraces of one image (a batch of one)."""
        return self.detect_batch([image], context)[0]

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext, names: Sequence[str] | None = None
    ) -> list[list[Detection]]:
        """The flake terraces of each image; self-calibrates on this batch when needed."""
        return [
            [] if tm is None or clf is None else self.detections(tm, clf, context)
            for tm, clf in self.analyse(images, context, names)
        ]

    def analyse(
        self, images: Sequence[np.ndarray], context: ImagingContext, names: Sequence[str] | None = None
    ) -> list[tuple[TerraceMap | None, TerraceClassifier | None]]:
        """Per image, its terraces and the classifier of its camera setting (None, None when the
        image cannot be searched; noted). Self-calibrates on this batch when needed.

        Other detectors that outline flakes their own way (:mod:`flakefinder.detect.net_terrace`)
        classify their regions with the same maps and classifiers.
        """
        imgs = [check_rgb_image(im) for im in images]
        labels = list(names) if names is not None else [f"image {i + 1}" for i in range(len(imgs))]
        maps: list[TerraceMap | None] = []
        for im, label in zip(imgs, labels, strict=True):
            try:
                maps.append(segment_terraces(im, self.settings))
            except ImageError as exc:
                self.notes.append(f"{label}: no flakes searched ({exc})")
                maps.append(None)
        classifiers = self._classifiers(maps, imgs, context, labels)
        return list(zip(maps, classifiers, strict=True))

    # -- classification ---------------------------------------------------------------------------
    def _classifiers(
        self, maps: Sequence[TerraceMap | None], images: Sequence[np.ndarray],
        context: ImagingContext, labels: Sequence[str],
    ) -> list[TerraceClassifier | None]:
        materials = list(context.materials)
        if self.profile is not None:
            from flakefinder.calibration.profile import check_compatible

            check_compatible(self.profile, materials=materials)
            clf = ProfileClassifier(self.profile, materials, max_sigma=self.max_sigma)
            return [None if m is None else clf for m in maps]
        present = [i for i, m in enumerate(maps) if m is not None]
        if not self._frozen and present:
            self._warm_up(maps, images, labels, context, present)
        unmatched = [i for i in present if not self._known(maps[i])]  # type: ignore[arg-type]
        if unmatched:
            self._calibrate([maps[i] for i in unmatched], [images[i] for i in unmatched],  # type: ignore[misc]
                            [labels[i] for i in unmatched], context)
        out: list[TerraceClassifier | None] = []
        for m in maps:
            if m is None:
                out.append(None)
                continue
            setting = nearest_setting(self.calibrations, m.work.substrate_rgb)
            out.append(setting.classifier(materials, self.max_sigma))
        return out

    def _warm_up(self, maps: Sequence[TerraceMap | None], images: Sequence[np.ndarray],
                 labels: Sequence[str], context: ImagingContext, present: list[int]) -> None:
        """Calibrate on the first images seen, again after 2, 4 and ``WARMUP_IMAGES``."""
        before = len(self._warmup)
        for i in present:
            if len(self._warmup) < WARMUP_IMAGES:
                self._warmup.append((maps[i], images[i], labels[i]))  # type: ignore[arg-type]
        after = len(self._warmup)
        if after == before:
            return
        if before == 0 or any(before < k <= after for k in (2, 4, WARMUP_IMAGES)):
            self.calibrations = []
            self._calibrate([m for m, _, _ in self._warmup], [im for _, im, _ in self._warmup],
                            [lb for _, _, lb in self._warmup], context)
        if after >= WARMUP_IMAGES:
            self._frozen = True
            self._warmup = []

    def _known(self, tm: TerraceMap) -> bool:
        return any(hue_distance(tm.work.substrate_rgb, np.array(c.substrate_rgb)) <= HUE_TOLERANCE
                   for c in self.calibrations)

    def _calibrate(self, maps: Sequence[TerraceMap], images: Sequence[np.ndarray],
                   labels: Sequence[str], context: ImagingContext) -> None:
        candidates = [
            [t for t in m.flakes
             if flake_confidence(t.features, m.work.valid, m.background.noise) >= CALIBRATION_SCORE]
            for m in maps
        ]
        new = calibrate_settings(
            maps, images, material=context.materials[0], oxide_nm=context.oxide_thickness_nm,
            um_per_px=context.um_per_px, candidates=candidates, names=labels,
        )
        from dataclasses import replace

        first = len(self.calibrations)
        for k, s in enumerate(new, start=first + 1):
            s = replace(s, name=f"setting {k}")
            self.notes.append(f"{s.name} ({s.source}): {s.note}")
            self.calibrations.append(s)

    # -- output -----------------------------------------------------------------------------------
    def detections(
        self, tm: TerraceMap, clf: TerraceClassifier, context: ImagingContext
    ) -> list[Detection]:
        from flakefinder.detect.contrast import mask_polygon

        min_px = self.min_area_um2 / max(context.um_per_px, 1e-9) ** 2
        dets: list[Detection] = []
        for t in tm.flakes:
            score = flake_confidence(t.features, tm.work.valid, tm.background.noise)
            if score < self.min_score or tm.area_full_px(t) < min_px:
                continue
            call: LayerCall = clf.classify(tm.contrast_rgb(t))
            if not call.fits_material:
                continue
            full, crop, (fx, fy) = tm.full_mask(t)
            poly = mask_polygon(crop, fx, fy, self.polygon_epsilon_px)
            if len(poly) < 3:
                continue
            xs = [p[0] for p in poly]
            ys = [p[1] for p in poly]
            c = tm.contrast_rgb(t)
            dets.append(
                Detection(
                    material=call.material,
                    layer_class=call.layer_class,
                    confidence=round(score, 4),
                    polygon_px=poly,
                    bbox_px=(min(xs), min(ys), max(xs), max(ys)),
                    area_px=float(full.sum()),
                    layer_count=call.n_layers,
                    contrast_rgb=_finite3(c),
                    mask=full,
                    layer_confidence=round(call.confidence, 4),
                    layer_alternative=call.alternative,
                )
            )
        return dets


def _finite3(c: np.ndarray) -> tuple[float, float, float] | None:
    """Contrast as a tuple; a clipped channel (NaN) is reported as 0.0 (no contrast measured)."""
    v = np.where(np.isfinite(c), c, 0.0)
    return (float(v[0]), float(v[1]), float(v[2]))


def describe_terrace(t: Terrace) -> str:
    """One line for logs: label, area and reason."""
    return f"terrace {t.label}: {t.features.area_px} px, {t.reason or 'flake'}"
