"""Synthetic micrographs with known flakes under varied cameras, for the calibrated detector.

Real setups differ in camera encoding (linear, gamma), white balance (grey-balanced or the
violet/blue of 90 nm SiO2 left as is), exposure and noise. :data:`CAMERAS` spans these;
:func:`model_profile` is the profile an ideal calibration of such a camera gives (the optics
model's relative reflectance, encoded the way the camera stores it: ``C = rel ** (1 / gamma) - 1``,
white balance and exposure cancel in the ratio), and :func:`measured_profile` measures the
Gaussians from rendered pixels under known masks (what a calibration from labels sees, blur and
noise included). :func:`synthetic_scenes` renders random chips with ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
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
