"""Per-pixel classification of contrast against a setup profile's layer Gaussians (numpy + cv2).

Each (material, layer number) of a :class:`~flakefinder.calibration.profile.SetupProfile` is a
Gaussian in contrast space ``C = I / I_bg - 1`` (RGB). The substrate is one more Gaussian centred
on 0 with the image's own measured noise. A pixel goes to the class of highest likelihood
(squared Mahalanobis distance plus log-determinant); a layer class only keeps it when its
Mahalanobis distance is at most ``max_sigma``; anything else that is not substrate-like is
"other" (bulk crystals, residue, clipped pixels).

The distance is computed with ``cv2.transform`` on a whitening matrix (Cholesky factor of the
inverse covariance). Pixels already known to be bare substrate are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.calibration.profile import SetupProfile
from flakefinder.errors import ProfileError

OTHER = 255  # label of pixels that are neither substrate nor any layer class
BACKGROUND = 0
COV_FLOOR = 1e-5  # added to the diagonal: JPEG quantisation noise floor (contrast units^2)


@dataclass(frozen=True, eq=False)
class LayerGaussian:
    """One class: a layer number of a material, ready for fast Mahalanobis distances.

    Attributes
    ----------
    material, n_layers : str, int
        What the class is.
    mean : numpy.ndarray
        (3,) mean contrast, RGB.
    whitening : numpy.ndarray
        (3, 4) float32 matrix ``[W | -W mean]`` with ``W^T W = inverse covariance``.
    log_det : float
        Log-determinant of the covariance (for likelihood comparison across classes).
    spread : float
        Root mean of the covariance diagonal (a typical per-channel standard deviation).
    """

    material: str
    n_layers: int
    mean: np.ndarray
    whitening: np.ndarray
    log_det: float
    spread: float = 0.01

    @classmethod
    def build(
        cls, material: str, n_layers: int, mean: np.ndarray, cov: np.ndarray
    ) -> LayerGaussian:
        """Whitening data of the Gaussian ``N(mean, cov)`` (cov regularised by ``COV_FLOOR``)."""
        c = np.asarray(cov, dtype=np.float64) + COV_FLOOR * np.eye(3)
        inv = np.linalg.inv(c)
        w = np.linalg.cholesky(inv).T  # W^T W = inv
        m = np.asarray(mean, dtype=np.float64)
        mat = np.hstack([w, (-w @ m)[:, None]]).astype(np.float32)
        spread = float(np.sqrt(np.trace(c) / 3.0))
        return cls(material, int(n_layers), m, mat, float(np.linalg.slogdet(c)[1]), spread)

    def distance2_points(self, points: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of (N, 3) float32 contrasts -> (N,)."""
        pts = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 1, 3)
        if pts.shape[0] == 0:
            return np.zeros(0, np.float32)
        y = cv2.transform(pts, self.whitening)
        d2 = cv2.transform(cv2.multiply(y, y), np.ones((1, 3), np.float32))
        return np.asarray(d2, dtype=np.float32).reshape(-1)

    def distance2(self, contrast: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of every pixel of an (h, w, 3) float32 image -> (h, w)."""
        y = cv2.transform(contrast, self.whitening)
        return cv2.transform(cv2.multiply(y, y), np.ones((1, 3), np.float32))


def layer_gaussians(
    profile: SetupProfile, materials: Sequence[str], *, max_layers: int | None = None
) -> tuple[LayerGaussian, ...]:
    """The classes of ``materials`` in ``profile`` (layer order), at most ``max_layers`` layers.

    Raises
    ------
    ProfileError
        When the profile lacks one of the materials or no class is left.
    """
    out: list[LayerGaussian] = []
    for m in materials:
        table = profile.table(m)
        for e in table.layers:
            if max_layers is not None and e.n_layers > max_layers:
                continue
            out.append(LayerGaussian.build(table.material, e.n_layers, e.mean, e.covariance))
    if not out:
        raise ProfileError(f"the setup profile {profile.name!r} has no layer colours to detect")
    return tuple(out)


@dataclass(frozen=True, eq=False)
class PixelClasses:
    """Result of :func:`classify_pixels`.

    Attributes
    ----------
    labels : numpy.ndarray
        (h, w) uint8: 0 substrate, k (1..K) class ``gaussians[k-1]``, ``OTHER`` anything else.
    distance : numpy.ndarray
        (h, w) float32 Mahalanobis distance to the chosen class (to the substrate for 0/OTHER).
    """

    labels: np.ndarray
    distance: np.ndarray


def classify_pixels(
    contrast: np.ndarray,
    gaussians: Sequence[LayerGaussian],
    background: LayerGaussian,
    *,
    max_sigma: float = 5.0,
    substrate: np.ndarray | None = None,
    clipped: np.ndarray | None = None,
) -> PixelClasses:
    """Assign every pixel of an (h, w, 3) float32 contrast image to a class.

    Parameters
    ----------
    contrast : numpy.ndarray
        Per-pixel ``I / I_bg - 1``, RGB, float32.
    gaussians : sequence of LayerGaussian
        Layer classes (at most 254).
    background : LayerGaussian
        The substrate class (mean 0, the image's noise covariance).
    max_sigma : float
        Largest Mahalanobis distance at which a pixel still belongs to a layer class.
    substrate : numpy.ndarray or None
        (h, w) bool of pixels known to be substrate (inside the substrate band): labelled 0
        without computing distances, which is most of an image.
    clipped : numpy.ndarray or None
        (h, w) bool of pixels with a clipped channel: always ``OTHER``.
    """
    if len(gaussians) > 254:
        raise ProfileError("at most 254 layer classes can be detected at once")
    h, w = contrast.shape[:2]
    flat = np.ascontiguousarray(contrast, dtype=np.float32).reshape(-1, 3)
    if substrate is None:
        idx = np.arange(h * w)
    else:
        idx = np.flatnonzero(~substrate.reshape(-1))
    c = flat[idx]
    d2 = background.distance2_points(c)
    best = d2 + np.float32(background.log_det)
    lab = np.zeros(idx.size, np.uint8)
    for k, g in enumerate(gaussians, start=1):
        dk = g.distance2_points(c)
        score = dk + np.float32(g.log_det)
        better = score < best
        best[better] = score[better]
        d2[better] = dk[better]
        lab[better] = k
    lab[d2 > np.float32(max_sigma * max_sigma)] = OTHER
    labels = np.zeros(h * w, np.uint8)
    labels[idx] = lab
    labels = labels.reshape(h, w)
    dist = np.zeros(h * w, np.float32)
    dist[idx] = np.sqrt(d2)
    if clipped is not None:
        labels[clipped] = OTHER
    return PixelClasses(labels=labels, distance=dist.reshape(h, w))


def background_gaussian(covariance_rgb: np.ndarray) -> LayerGaussian:
    """The substrate class: mean contrast 0, the measured substrate covariance."""
    return LayerGaussian.build("substrate", 0, np.zeros(3), covariance_rgb)
