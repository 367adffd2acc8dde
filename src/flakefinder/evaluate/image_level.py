"""The paper's image-level precision and recall, plus flake-level counts.

Per image (Masubuchi et al., "Deep-learning-based image segmentation integrated with optical
microscopy for automatically searching for two-dimensional materials"):

* a detection is *correct* if it is matched one-to-one (greedy, highest score first) to a
  ground-truth instance with mask IoU >= ``iou_threshold`` (0.5) and the same category
  (``<material>_<class>``); with ``class_agnostic=True`` any category matches;
* **TP**: the image holds at least one correct detection;
* **FP**: the image has detections and none is correct;
* **FN**: the image holds ground truth and none of it is correctly detected;
* **TN**: no ground truth and no detection.

An image whose detections are all wrong while it holds ground truth counts as *both* FP and
FN. precision = TP / (TP + FP), recall = TP / (TP + FN). When a denominator is zero the value
is undefined and reported as ``NaN`` (no detections anywhere -> precision NaN; no ground
truth anywhere -> recall NaN).

Flake level: ``flake_precision`` = correct detections / detections,
``flake_recall`` = correctly detected GT instances / GT instances (NaN on zero denominators).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from flakefinder.errors import DatasetError
from flakefinder.evaluate.cocodata import Instance, gt_instances, result_instances
from flakefinder.evaluate.pairing import match_instances

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def ratio(num: int, den: int) -> float:
    """num / den, or NaN when den == 0."""
    return num / den if den else float("nan")


@dataclass(frozen=True)
class ImageOutcome:
    """What happened on one image."""

    image_id: int
    n_ground_truth: int
    n_detections: int
    n_correct: int  # detections matched to a ground-truth instance

    @property
    def tp(self) -> bool:
        return self.n_correct > 0

    @property
    def fp(self) -> bool:
        return self.n_detections > 0 and self.n_correct == 0

    @property
    def fn(self) -> bool:
        return self.n_ground_truth > 0 and self.n_correct == 0

    @property
    def tn(self) -> bool:
        return self.n_ground_truth == 0 and self.n_detections == 0


@dataclass(frozen=True)
class ImageLevelMetrics:
    """Image-level TP/FP/FN/TN counts, precision and recall, and flake-level numbers."""

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float  # TP / (TP + FP); NaN if no image has detections
    recall: float  # TP / (TP + FN); NaN if no image has ground truth
    n_images: int
    n_ground_truth: int
    n_detections: int
    n_correct: int
    flake_precision: float
    flake_recall: float
    iou_threshold: float = 0.5
    class_agnostic: bool = False
    outcomes: tuple[ImageOutcome, ...] = ()

    def to_dict(self, *, with_outcomes: bool = False) -> dict[str, Any]:
        """JSON-friendly dict (NaN as None); per-image outcomes only if asked."""
        d = asdict(self)
        d.pop("outcomes")
        d = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
        if with_outcomes:
            d["outcomes"] = [asdict(o) for o in self.outcomes]
        return d

    def to_markdown(self) -> str:
        def f(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.3f}"

        return (
            "| images | TP | FP | FN | TN | precision | recall | flake precision | flake recall |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
            f"| {self.n_images} | {self.tp} | {self.fp} | {self.fn} | {self.tn} | "
            f"{f(self.precision)} | {f(self.recall)} | {f(self.flake_precision)} | "
            f"{f(self.flake_recall)} |\n"
        )


def image_level_metrics(
    ground_truth: Mapping[int, Sequence[Instance]],
    predictions: Mapping[int, Sequence[Instance]],
    *,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    score_threshold: float = 0.0,
) -> ImageLevelMetrics:
    """Image- and flake-level metrics; the image set is the keys of ``ground_truth``.

    ``predictions`` may omit images (no detections there) but must not name images that
    ``ground_truth`` lacks. Predictions with ``score < score_threshold`` are ignored.
    """
    unknown = set(predictions) - set(ground_truth)
    if unknown:
        raise DatasetError(
            f"predictions refer to images not in the ground truth: {sorted(unknown)[:5]}"
        )
    outcomes = []
    for image_id in sorted(ground_truth):
        gts = list(ground_truth[image_id])
        preds = [p for p in predictions.get(image_id, ()) if p.score >= score_threshold]
        pairs = match_instances(
            preds, gts, iou_threshold=iou_threshold, class_agnostic=class_agnostic
        )
        outcomes.append(ImageOutcome(image_id, len(gts), len(preds), len(pairs)))
    return summarize_outcomes(outcomes, iou_threshold=iou_threshold, class_agnostic=class_agnostic)


def summarize_outcomes(
    outcomes: Sequence[ImageOutcome], *, iou_threshold: float = 0.5, class_agnostic: bool = False
) -> ImageLevelMetrics:
    """Aggregate per-image outcomes into :class:`ImageLevelMetrics`."""
    tp = sum(o.tp for o in outcomes)
    fp = sum(o.fp for o in outcomes)
    fn = sum(o.fn for o in outcomes)
    tn = sum(o.tn for o in outcomes)
    n_gt = sum(o.n_ground_truth for o in outcomes)
    n_det = sum(o.n_detections for o in outcomes)
    n_ok = sum(o.n_correct for o in outcomes)
    return ImageLevelMetrics(
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        precision=ratio(tp, tp + fp),
        recall=ratio(tp, tp + fn),
        n_images=len(outcomes),
        n_ground_truth=n_gt,
        n_detections=n_det,
        n_correct=n_ok,
        flake_precision=ratio(n_ok, n_det),
        flake_recall=ratio(n_ok, n_gt),
        iou_threshold=iou_threshold,
        class_agnostic=class_agnostic,
        outcomes=tuple(outcomes),
    )


def image_level_from_coco(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    score_threshold: float = 0.0,
) -> ImageLevelMetrics:
    """:func:`image_level_metrics` of a COCO results list against a validated COCO dict."""
    return image_level_metrics(
        gt_instances(gt),
        result_instances(gt, results, score_threshold=score_threshold),
        iou_threshold=iou_threshold,
        class_agnostic=class_agnostic,
    )
