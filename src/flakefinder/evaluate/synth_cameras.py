"""Synthetic micrographs with known flakes under varied cameras, for the calibrated detector.

Real setups differ in camera encoding (linear, gamma), white balance (grey-balanced or the
violet/blue of 90 nm SiO2 left as is), exposure and noise. :data:`CAMERAS` spans these;
:func:`model_profile` is the profile an ideal calibration of such a camera gives (the optics
model's relative reflectance, encoded the way the camera stores it: ``C = rel ** (1 / gamma) - 1``,
white balance and exposure cancel in the ratio), and :func:`measured_profile` measures the
Gaussians from rendered pixels under known masks (what a calibration from labels sees, blur and
noise included). :func:`camera_benchmark` scores the calibrated detector per camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.synth.chip import FlakeDistribution
from flakefinder.synth.render import RenderSettings, relative_rgb


@dataclass(frozen=True)
class CameraCase:
    """A named camera: how it renders (``settings``)."""

    name: str
    settings: RenderSettings


CAMERAS: tuple[CameraCase, ...] = (
    CameraCase(
        "linear, grey-balanced", RenderSettings(gamma=1.0, white_balance_rgb=(1.0, 1.0, 1.0))
    ),
    CameraCase("gamma 2.2, grey-balanced", RenderSettings(gamma=2.2)),
    CameraCase(
        "gamma 2.2, violet substrate",
        RenderSettings(gamma=2.2, white_balance_rgb=(0.85, 0.7, 1.35), substrate_level=0.45),
    ),
    CameraCase(
        "gamma 1.8, dim, noisy",
        RenderSettings(gamma=1.8, illumination=0.7, noise_sigma=0.008, inhomogeneity=0.2),
    ),
)


def model_profile(
    *,
    material: str = "graphene",
    layers: Sequence[int] = (1, 2, 3, 4),
    oxide_nm: float = 90.0,
    numerical_aperture: float = 0.55,
    gamma: float = 1.0,
    um_per_px: float = 0.2,
    sd: float = 0.012,
    name: str = "model",
) -> SetupProfile:
    """Profile of an ideally calibrated camera: model contrasts, isotropic covariance ``sd**2``."""
    entries = []
    cov = ((sd * sd, 0.0, 0.0), (0.0, sd * sd, 0.0), (0.0, 0.0, sd * sd))
    for n in layers:
        rel = np.asarray(relative_rgb(oxide_nm, numerical_aperture, material, n))
        c = rel ** (1.0 / gamma) - 1.0
        entries.append(
            LayerColour(n, (float(c[0]), float(c[1]), float(c[2])), cov, source="predicted")
        )
    return SetupProfile(
        name=name,
        um_per_px=um_per_px,
        oxide_nm=oxide_nm,
        materials=(MaterialTable(material, tuple(entries)),),
        numerical_aperture=numerical_aperture,
    )


def measured_profile(
    images: Sequence[np.ndarray],
    truth: Sequence[Sequence[tuple[np.ndarray, int]]],
    *,
    material: str,
    oxide_nm: float,
    um_per_px: float,
    max_layers: int = 4,
    name: str = "measured",
) -> SetupProfile:
    """Gaussians measured on eroded truth masks of ``images`` against each image's substrate.

    ``truth[i]`` lists (mask, n_layers) of image i. Layers without pixels are left out.
    """
    from flakefinder.detect.substrate import estimate_substrate

    samples: dict[int, list[np.ndarray]] = {}
    flakes: dict[int, int] = {}
    for im, inst in zip(images, truth, strict=True):
        sub = estimate_substrate(im.astype(np.float32), band=0.03)
        for mask, n in inst:
            if not 1 <= n <= max_layers:
                continue
            inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if inner.sum() < 20:
                continue
            samples.setdefault(n, []).append(sub.contrast[inner])
            flakes[n] = flakes.get(n, 0) + 1
    entries = []
    for n, parts in sorted(samples.items()):
        x = np.concatenate(parts).astype(np.float64)
        mean = np.median(x, axis=0)
        cov = np.cov(x.T) + 1e-6 * np.eye(3)
        entries.append(
            LayerColour(
                n,
                (float(mean[0]), float(mean[1]), float(mean[2])),
                tuple(tuple(float(v) for v in row) for row in cov),  # type: ignore[arg-type]
                n_pixels=int(x.shape[0]),
                n_flakes=flakes[n],
            )
        )
    return SetupProfile(
        name=name,
        um_per_px=um_per_px,
        oxide_nm=oxide_nm,
        materials=(MaterialTable(material, tuple(entries)),),
    )


@dataclass(frozen=True)
class CameraScore:
    """Class-agnostic scores of the calibrated detector for one camera on synthetic views.

    Attributes
    ----------
    camera : str
        Camera case name.
    n_truth, n_found, n_detections, n_correct, n_exact : int
        Thin (1..max_layers) flakes above the size floor; of those found at IoU >= 0.5;
        detections reported as 1..max_layers layers; correct ones; found with the exact layer
        number.
    """

    camera: str
    n_truth: int
    n_found: int
    n_detections: int
    n_correct: int
    n_exact: int

    @property
    def recall(self) -> float:
        """Found / truth."""
        return self.n_found / self.n_truth if self.n_truth else float("nan")

    @property
    def precision(self) -> float:
        """Correct / detections."""
        return self.n_correct / self.n_detections if self.n_detections else float("nan")


THIN_RICH = FlakeDistribution(
    mono_weight=0.3, few_weight=0.35, thick_weight=0.15, bulk_weight=0.2, thin_max_size_um=60.0
)


def camera_benchmark(
    camera: CameraCase,
    *,
    n_calibration: int = 2,
    n_test: int = 6,
    seed: int = 0,
    um_per_px: float = 0.3844,
    shape_px: tuple[int, int] = (600, 960),
    max_layers: int = 4,
    min_area_um2: float = 20.0,
) -> CameraScore:
    """Calibrate on ``n_calibration`` views with labelled flakes, detect on ``n_test`` others.

    Views are rendered from one random graphene chip on 90 nm SiO2 by ``camera``; the profile
    comes from :func:`flakefinder.calibration.calibrate` in labels mode on the calibration views'
    1..``max_layers`` layer instances (layers missing there are predicted by its optics fit).
    """
    from flakefinder.detect.calibrated import CalibratedContrastDetector
    from flakefinder.domain import ImagingContext
    from flakefinder.evaluate.matching import match_masks
    from flakefinder.synth.chip import random_chip
    from flakefinder.synth.instances import view_instances
    from flakefinder.synth.render import render_view

    h, w = shape_px
    vw, vh = w * um_per_px, h * um_per_px
    n_views = n_calibration + n_test
    chip = random_chip(
        vw * n_views, vh, ("graphene",), flakes_per_mm2=250.0, distribution=THIN_RICH, seed=seed
    )
    views = []
    for k in range(n_views):
        cx, cy = (k + 0.5) * vw, 0.5 * vh
        img = render_view(chip, cx, cy, w, h, um_per_px, settings=camera.settings, seed=seed + k)
        gt = [
            g
            for g in view_instances(chip, cx, cy, w, h, um_per_px)
            if 1 <= g.n_layers <= max_layers
        ]
        views.append((img, gt))
    from flakefinder.calibration import LabelledRegion, calibrate

    cal = views[:n_calibration]
    regions = [
        LabelledRegion(image_index=i, mask=g.mask, n_layers=g.n_layers)
        for i, (_, gt) in enumerate(cal)
        for g in gt
    ]
    profile = calibrate(
        [im for im, _ in cal],
        material="graphene",
        oxide_nm=90.0,
        um_per_px=um_per_px,
        regions=regions,
        name=f"synthetic {camera.name}",
    ).profile
    det = CalibratedContrastDetector(profile, min_area_um2=min_area_um2)
    ctx = ImagingContext(um_per_px, 90.0, ("graphene",), camera.settings.numerical_aperture)
    floor_px = min_area_um2 / um_per_px**2
    n_truth = n_found = n_det = n_correct = n_exact = 0
    for img, gt in views[n_calibration:]:
        truth = [g for g in gt if g.area_px >= floor_px]
        dets = [
            d
            for d in det.detect(img, ctx)
            if d.layer_count is not None and d.layer_count <= max_layers
        ]
        m = match_masks(
            [d.mask for d in dets if d.mask is not None],
            [g.mask for g in truth],
            scores=[d.confidence for d in dets],
        )
        n_truth += len(truth)
        n_det += len(dets)
        n_found += m.true_positives
        n_correct += m.true_positives
        n_exact += sum(dets[p].layer_count == truth[g].n_layers for p, g, _ in m.matches)
    return CameraScore(camera.name, n_truth, n_found, n_det, n_correct, n_exact)
