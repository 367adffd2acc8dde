"""Scores of the real-data benchmark (:mod:`flakefinder.evaluate.real_bench`): per image and per row.

:func:`score_terraces` matches one image's detections to its outlined terraces (one-to-one,
greedy by confidence, mask IoU >= 0.5); every reported detection counts. Recall is over the
outlined terraces except those labelled thicker than the numbered ones (a match to one of those
is still correct); layer accuracy is over matched terraces with a layer number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.evaluate.matching import match_masks
from flakefinder.evaluate.real import TruthImage, mean_sd
from flakefinder.evaluate.real_types import LabelledImage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.domain import Detection

__all__ = ["ModeResult", "TerraceScore", "is_thick", "score_terraces"]


@dataclass
class TerraceScore:
    """Counts of one run over some images (see the module docstring)."""

    n_images: int = 0
    n_outlined: int = 0
    n_counted: int = 0  # terraces that recall counts
    n_detections: int = 0
    n_correct: int = 0  # detections matched to any outlined terrace
    n_found: int = 0  # counted terraces matched
    n_layer_known: int = 0  # matched terraces with a layer number
    n_layer_exact: int = 0

    @property
    def recall(self) -> float:
        return self.n_found / self.n_counted if self.n_counted else math.nan

    @property
    def precision(self) -> float:
        return self.n_correct / self.n_detections if self.n_detections else math.nan

    @property
    def layer_accuracy(self) -> float:
        return self.n_layer_exact / self.n_layer_known if self.n_layer_known else math.nan

    def add(self, other: TerraceScore) -> None:
        """Add ``other``'s counts to these."""
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_json(self) -> dict[str, Any]:
        """Counts and rates (NaN as null)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("recall", "precision", "layer_accuracy"):
            v = getattr(self, k)
            out[k] = None if math.isnan(v) else round(v, 4)
        return out


def is_thick(truth: TruthImage, k: int) -> bool:
    """Whether terrace ``k`` is labelled thicker than the numbered layers."""
    return truth.is_thick(k) if isinstance(truth, LabelledImage) else False


def score_terraces(
    truth: TruthImage, dets: Sequence[Detection], *, iou_threshold: float = 0.5
) -> TerraceScore:
    """Score one image's detections against its outlined terraces."""
    from flakefinder.evaluate.cocodata import detection_mask

    if not truth.masks:
        return TerraceScore(n_images=1, n_detections=len(dets))
    h, w = truth.masks[0].shape
    res = match_masks(
        [detection_mask(d, h, w) for d in dets],
        truth.masks,
        scores=[d.confidence for d in dets],
        iou_threshold=iou_threshold,
    )
    counted = [k for k in range(len(truth.masks)) if not is_thick(truth, k)]
    s = TerraceScore(
        n_images=1,
        n_outlined=len(truth.masks),
        n_counted=len(counted),
        n_detections=len(dets),
        n_correct=res.true_positives,
    )
    for p, g, _ in res.matches:
        if g in counted:
            s.n_found += 1
        if truth.layers[g] is not None:
            s.n_layer_known += 1
            s.n_layer_exact += int(dets[p].layer_count == truth.layers[g])
    return s


@dataclass(frozen=True)
class ModeResult:
    """One row of the table: a set, a mode, per-split scores, timing and notes.

    ``kind``: ``accuracy`` (against the labels), ``agreement`` (against the ``table`` mode's
    detections), ``reference`` or ``counts`` (detections only), ``n/a`` (mode not run).
    ``detections`` holds the detections of the first scored split (masks dropped), with
    ``image_indices`` the images they belong to.
    """

    set_name: str
    mode: str
    kind: str
    n_images: int
    scores: tuple[TerraceScore, ...] = ()
    ms_per_image: tuple[float, ...] = ()
    calibration_s: tuple[float, ...] = ()
    notes: tuple[str, ...] = ()
    exhaustive: bool = False
    layers_comparable: bool = True
    image_indices: tuple[int, ...] = ()
    detections: tuple[tuple[Detection, ...], ...] = field(default=(), repr=False)
    detector_notes: tuple[str, ...] = ()

    def stat(self, name: str) -> tuple[float, float]:
        """Mean and sd over the splits of ``recall``, ``precision`` or ``layer_accuracy``."""
        if name == "precision" and not (self.exhaustive or self.kind == "agreement"):
            return math.nan, math.nan
        if name == "layer_accuracy" and not self.layers_comparable:
            return math.nan, math.nan
        return mean_sd([float(getattr(s, name)) for s in self.scores])

    def mean_count(self, name: str) -> float:
        """Mean over the splits of a :class:`TerraceScore` count."""
        return float(np.mean([getattr(s, name) for s in self.scores])) if self.scores else math.nan

    @property
    def median_ms(self) -> float:
        return float(np.median(self.ms_per_image)) if self.ms_per_image else math.nan

    def to_json(self) -> dict[str, Any]:
        """Every number of the row (NaN as null)."""

        def f(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 4)

        out: dict[str, Any] = {
            "set": self.set_name,
            "mode": self.mode,
            "kind": self.kind,
            "images": self.n_images,
            "median_ms_per_image": f(self.median_ms),
            "calibration_s": [round(v, 3) for v in self.calibration_s],
            "notes": list(self.notes),
            "detector_notes": list(self.detector_notes),
            "splits": [s.to_json() for s in self.scores],
        }
        for k in ("recall", "precision", "layer_accuracy"):
            m, sd = self.stat(k)
            out[k] = {"mean": f(m), "sd": f(sd)}
        return out
