"""COCO mask and box mAP with pycocotools' COCOeval.

Values (all in 0..1) follow COCO's ``summarize()`` for area "all" and maxDets=100:

* ``*_ap``   AP averaged over IoU 0.50:0.05:0.95, then over categories;
* ``*_ap50`` AP at IoU 0.5; ``*_ap75`` AP at IoU 0.75.
* ``ap50_per_class[name]``: mask AP@50 of one category.
* ``ap50_per_material[m]``: mean of ``ap50_per_class`` over the categories of material ``m``
  (the paper trains one model per material with mono/few/thick classes, so this is that
  model's mAP@50).

Edge cases (exact, documented):

* A category with no ground-truth instance has no defined AP: it is ``NaN`` in
  ``ap50_per_class`` and left out of every mean. A material whose categories are all absent
  is ``NaN``. If the ground truth holds no instance at all, every value is ``NaN``.
* A category with ground truth but no detection has AP 0.0; with no detections at all,
  every non-NaN value is 0.0.
* Detections of a category absent from the ground truth are false positives for nobody:
  COCO ignores them (they are not part of any category's evaluation).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from flakefinder.domain import parse_category_name
from flakefinder.evaluate.cocodata import validate_results

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

NAN = float("nan")


@dataclass(frozen=True)
class CocoMetrics:
    """COCO mAP of one results list against one ground truth (see module docstring)."""

    mask_ap: float
    mask_ap50: float
    mask_ap75: float
    box_ap: float
    box_ap50: float
    box_ap75: float
    ap50_per_class: dict[str, float] = field(default_factory=dict)  # mask AP@50
    ap50_per_material: dict[str, float] = field(default_factory=dict)  # mean mask AP@50
    box_ap50_per_class: dict[str, float] = field(default_factory=dict)
    n_images: int = 0
    n_ground_truth: int = 0
    n_detections: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN written as None)."""
        return cast("dict[str, Any]", _nan_to_none(asdict(self)))

    def to_markdown(self) -> str:
        """Tables of the overall, per-material and per-class numbers."""
        lines = [
            "| | AP@[.5:.95] | AP@50 | AP@75 |",
            "|---|---|---|---|",
            f"| mask | {_f(self.mask_ap)} | {_f(self.mask_ap50)} | {_f(self.mask_ap75)} |",
            f"| box | {_f(self.box_ap)} | {_f(self.box_ap50)} | {_f(self.box_ap75)} |",
            "",
            "| material | mask mAP@50 |",
            "|---|---|",
        ]
        lines += [f"| {m} | {_f(v)} |" for m, v in self.ap50_per_material.items()]
        lines += ["", "| class | mask AP@50 | box AP@50 |", "|---|---|---|"]
        lines += [
            f"| {c} | {_f(v)} | {_f(self.box_ap50_per_class.get(c, NAN))} |"
            for c, v in self.ap50_per_class.items()
        ]
        return "\n".join(lines) + "\n"


def _f(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    return obj


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else NAN


def _run_cocoeval(
    gt: Mapping[str, Any], results: list[dict[str, Any]], iou_type: str
) -> np.ndarray | None:
    """COCOeval precision array [T, R, K, A, M] (K in gt category order), or None if no results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": list(gt["images"]),
            "annotations": list(gt["annotations"]),
            "categories": list(gt["categories"]),
        }
        coco_gt.createIndex()
        # loadRes mutates the dicts it gets; hand it copies.
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        ev.params.catIds = [int(c["id"]) for c in gt["categories"]]
        ev.evaluate()
        ev.accumulate()
    return np.asarray(ev.eval["precision"])


def _ap(precision: np.ndarray | None, k: int | None, t: int | None, has_gt: bool) -> float:
    """Mean valid precision for category index k (None: all) and IoU index t (None: all)."""
    if not has_gt:
        return NAN
    if precision is None:
        return 0.0
    p = precision[:, :, :, 0, -1]  # area "all", maxDets 100
    if t is not None:
        p = p[t : t + 1]
    if k is not None:
        p = p[:, :, k : k + 1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else NAN


def coco_metrics(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> CocoMetrics:
    """Mask and box mAP of ``results`` (COCO results list) against ``gt`` (validated COCO dict).

    Raises :class:`~flakefinder.errors.DatasetError` if a result names an unknown image or
    category.
    """
    res = validate_results(gt, [dict(r) for r in results])
    cats = list(gt["categories"])
    gt_count: dict[int, int] = {int(c["id"]): 0 for c in cats}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0):
            gt_count[int(a["category_id"])] += 1
    any_gt = sum(gt_count.values()) > 0
    seg = _run_cocoeval(gt, res, "segm")
    box = _run_cocoeval(gt, res, "bbox")
    t50, t75 = 0, 5  # indices of IoU 0.5 and 0.75 in 0.50:0.05:0.95

    per_class: dict[str, float] = {}
    box_per_class: dict[str, float] = {}
    for k, c in enumerate(cats):
        has = gt_count[int(c["id"])] > 0
        per_class[str(c["name"])] = _ap(seg, k, t50, has)
        box_per_class[str(c["name"])] = _ap(box, k, t50, has)
    per_material: dict[str, list[float]] = {}
    for name, v in per_class.items():
        per_material.setdefault(parse_category_name(name)[0], []).append(v)
    return CocoMetrics(
        mask_ap=_ap(seg, None, None, any_gt),
        mask_ap50=_ap(seg, None, t50, any_gt),
        mask_ap75=_ap(seg, None, t75, any_gt),
        box_ap=_ap(box, None, None, any_gt),
        box_ap50=_ap(box, None, t50, any_gt),
        box_ap75=_ap(box, None, t75, any_gt),
        ap50_per_class=per_class,
        ap50_per_material={m: _mean(v) for m, v in per_material.items()},
        box_ap50_per_class=box_per_class,
        n_images=len(gt["images"]),
        n_ground_truth=sum(gt_count.values()),
        n_detections=len(res),
    )
