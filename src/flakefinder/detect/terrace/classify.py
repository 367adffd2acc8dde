"""Material and layer number of a terrace from its mean contrast (numpy only).

The terrace is classified as a whole: its robust mean contrast against each layer Gaussian of
the profile's tables (Mahalanobis distance over the channels that carry contrast in its image;
a clipped channel is left out, not read as zero). The spread used is the profile's pixel spread
plus what differs between images of one setup (1 % absolute and 5 % of the contrast), because
a terrace mean is far less noisy than a pixel but moves with white balance and focus.

* The ladder: the path from the substrate (0 layers, no contrast) through the table's entries
  in layer order, layer numbers spaced evenly between two points. A terrace on the ladder at a
  layer number the table does not hold (4 L between measured 3 L and 5 L; 3 L below a table
  of 4-5 L) takes that number, with a low confidence and the nearer neighbour as the
  alternative, even when a measured layer's Gaussian would also accept it: a table measured on
  two images often skips layers, and the nearest measured one is then wrong.
* Else the nearest layer within ``max_sigma``: that layer, its posterior share as the
  confidence, the runner-up as the alternative.
* Else a few layers beyond the thickest entry along the ladder's last step (a table measured
  on 3-5 L reads a 6 L terrace), with a lower confidence. Beyond the thickest entry the
  nearest measured layer wins when it accepts the terrace: contrast saturates with thickness,
  so the last step's spacing overshoots.
* Otherwise: unknown thickness (``n_layers=None``), class "thick" when its contrast is stronger
  than the table's thickest entry, else "few". A flake is never dropped for an unsure number.
* A colour far from the material's whole ladder (the path from the substrate through the table's
  layers, continued beyond the thickest) is no thickness of the material: residue, dirt or
  another material. Such calls have ``fits_material=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import numpy as np

from flakefinder.domain import LayerClass

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.calibration.profile import SetupProfile

BETWEEN_CONFIDENCE = 0.3  # a layer number read off between two table entries
EXTRAPOLATED_CONFIDENCE = 0.2  # ... or beyond the table's ends
EXTRAPOLATE_LAYERS = 3  # how far beyond the thickest entry a layer number is still read off


@dataclass(frozen=True)
class LayerCall:
    """What a terrace is: material, layer number (None: unknown) and how sure that is."""

    material: str
    n_layers: int | None
    layer_class: LayerClass
    confidence: float
    alternative: int | None = None
    distance_sigma: float = math.nan
    fits_material: bool = True  # False: no thickness of the material has this colour


class TerraceClassifier(Protocol):
    """Anything that names material and layer number from a terrace's mean contrast."""

    def classify(self, contrast_rgb: np.ndarray) -> LayerCall: ...


def unknown_call(material: str, *, thick: bool = False) -> LayerCall:
    """A flake of ``material`` whose layer number is not known."""
    return LayerCall(material, None, LayerClass.THICK if thick else LayerClass.FEW, 0.0)


def _near_ladder(c: np.ndarray, means: np.ndarray, ok: np.ndarray) -> bool:
    """Whether ``c`` lies near the path substrate (0) -> layer means (in layer order) -> beyond."""
    pts = np.vstack([np.zeros((1, 3)), means])[:, ok]
    x = c[ok]
    best = math.inf
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        seg = b - a
        den = float(seg @ seg)
        u = 0.0 if den <= 0.0 else float((x - a) @ seg / den)
        u = max(0.0, u) if i == len(pts) - 2 else min(max(0.0, u), 1.0)  # the last one goes on
        best = min(best, float(np.linalg.norm(x - (a + u * seg))))
    return best <= max(0.04, 0.35 * float(np.linalg.norm(x)))


def _class_of(n: int) -> LayerClass:
    return LayerClass.from_layers(n) or LayerClass.THICK


@dataclass(frozen=True, eq=False)
class _Table:
    material: str
    layers: np.ndarray  # (K,) int
    means: np.ndarray  # (K, 3)
    covs: np.ndarray  # (K, 3, 3)

    @cached_property
    def measured(self) -> frozenset[int]:
        """The layer numbers the table holds."""
        return frozenset(int(n) for n in self.layers)

    @cached_property
    def ladder(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Layers (K+1,), means (K+1, 3) and covariances (K+1, 3, 3) of the ladder: the
        substrate (0 layers, no contrast, the thinnest entry's spread), then the entries."""
        return (
            np.concatenate([[0], self.layers]).astype(int),
            np.vstack([np.zeros((1, 3)), self.means]),
            np.concatenate([self.covs[:1], self.covs]),
        )


class ProfileClassifier:
    """Classify terrace contrasts with the colour tables of a setup profile.

    Parameters
    ----------
    profile
        The setup profile (``calibrate``, ``--setup FILE`` or a self-calibration).
    materials
        The materials on the chip (each must have a table in the profile).
    max_sigma
        Mahalanobis distance within which a terrace takes a table layer.
    measured
        Whether the tables were measured on this setup (labels, a lab's table, a
        self-calibration): only then is a colour far from every thickness refused
        (``fits_material=False``); a predicted table only says "unknown thickness".
    """

    def __init__(
        self,
        profile: SetupProfile,
        materials: Sequence[str],
        *,
        max_sigma: float = 4.0,
        measured: bool = True,
    ) -> None:
        self.profile = profile
        self.max_sigma = float(max_sigma)
        self.measured = measured
        self._tables = []
        for m in materials:
            t = profile.table(m)
            self._tables.append(
                _Table(t.material, np.array(t.layer_counts), t.means(), t.covariances())
            )

    def classify(self, contrast_rgb: np.ndarray) -> LayerCall:
        """The call for a terrace of mean contrast ``contrast_rgb`` (NaN: channel unusable)."""
        c = np.asarray(contrast_rgb, dtype=float)
        ok = np.isfinite(c)
        if not ok.any():
            return unknown_call(self._tables[0].material)
        best: list[tuple[float, str, int]] = []
        for t in self._tables:
            for n, mu, cov in zip(t.layers, t.means, t.covs, strict=True):
                best.append((self._d2(c, mu, cov, ok), t.material, int(n)))
        best.sort()
        d2, material, n = best[0]
        same = [b for b in best if b[1] == material]
        ladder = self._between(c, ok)
        if math.sqrt(d2) <= self.max_sigma:
            if (ladder is not None and not ladder[1] and ladder[0].material == material
                    and not self._in_table(ladder[0])):
                # on the ladder at a layer number the table skips (3 and 5 L measured, a 4 L
                # terrace; or thinner than its thinnest entry): the nearest measured layer
                # would be wrong. Beyond the thickest entry the nearest one still wins:
                # contrast saturates there, so the ladder's spacing overshoots.
                return ladder[0]
            w = np.array([math.exp(-0.5 * (b[0] - d2)) for b in same])
            conf = float(w[0] / w.sum())
            alt = same[1][2] if len(same) > 1 else None
            return LayerCall(material, n, _class_of(n), conf, alt, math.sqrt(d2))
        if ladder is not None:
            return ladder[0]
        table = next(t for t in self._tables if t.material == material)
        strongest = float(np.max(np.abs(table.means[-1][ok])))
        call = unknown_call(material, thick=float(np.max(np.abs(c[ok]))) > strongest)
        if self.measured and not any(_near_ladder(c, t.means, ok) for t in self._tables):
            call = LayerCall(material, None, call.layer_class, 0.0, fits_material=False)
        return call

    def _in_table(self, call: LayerCall) -> bool:
        t = next(t for t in self._tables if t.material == call.material)
        return call.n_layers in t.measured

    @staticmethod
    def _spread(mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
        return cov + np.diag(0.01**2 + (0.05 * mu) ** 2)

    def _d2(self, c: np.ndarray, mu: np.ndarray, cov: np.ndarray, ok: np.ndarray) -> float:
        s = self._spread(mu, cov)[np.ix_(ok, ok)]
        d = (c - mu)[ok]
        return float(d @ np.linalg.solve(s, d))

    def _between(self, c: np.ndarray, ok: np.ndarray) -> tuple[LayerCall, bool] | None:
        """A layer number read off the ladder, and whether it lies beyond the thickest entry.

        The ladder runs from the substrate (0 layers, no contrast) through the table's entries
        in layer order: a terrace between two of its points reads as the layer number at its
        projection (layer numbers spaced evenly between the two); beyond the thickest entry,
        up to ``EXTRAPOLATE_LAYERS`` more along the last step. Never below 1.
        """
        found: list[tuple[float, LayerCall, bool]] = []
        for t in self._tables:
            layers, means, covs = t.ladder
            k = len(layers)
            for i in range(k - 1):
                a, b = means[i], means[i + 1]
                seg = (b - a)[ok]
                den = float(seg @ seg)
                if den <= 0.0:
                    continue
                u = float((c[ok] - a[ok]) @ seg / den)
                lo, hi = int(layers[i]), int(layers[i + 1])
                est = lo + u * (hi - lo)
                inside = 0.0 <= u <= 1.0 and est >= 0.5
                above = i == k - 2 and u > 1.0 and est <= hi + EXTRAPOLATE_LAYERS + 0.5
                if not (inside or above):
                    continue
                cov = 0.5 * (self._spread(a, covs[i]) + self._spread(b, covs[i + 1]))
                d = math.sqrt(self._d2(c, a + u * (b - a), cov, ok))
                if d > self.max_sigma:
                    continue
                n = max(1, int(round(est)))
                conf = BETWEEN_CONFIDENCE if inside else EXTRAPOLATED_CONFIDENCE
                alt = (n - 1 if est < n else n + 1) if n > 1 else 2
                call = LayerCall(t.material, n, _class_of(n), conf, alt, d)
                found.append((d, call, not inside))
        if not found:
            return None
        best = min(found, key=lambda x: x[0])
        return best[1], best[2]
