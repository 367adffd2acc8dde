"""Evaluate a detector on a COCO dataset folder (``annotations.json`` + images).

Outputs written by :func:`write_report` into the output folder:

* ``results.json``: COCO results list (RLE masks, bbox, score, layer_count);
* ``metrics.json``: COCO mask/box mAP, mAP@50 per material and class, image-level
  precision/recall (class-aware and class-agnostic) and the confusion matrices;
* ``metrics.md``: the same as markdown tables;
* ``confusion_class.png``, ``confusion_layers.png``: heatmaps (+ ``.csv``).

The imaging context (µm/px, oxide thickness) comes from the dataset's ``info`` (keys
``um_per_px``, ``oxide_thickness_nm``), overridden per image by the same keys on the image entry,
else :class:`~flakefinder.domain.ImagingContext` defaults; materials are those of the categories.
What describes the microscope (``numerical_aperture``, ``gamma`` in ``info``) is a detector
option, not part of the context: :func:`dataset_optics` reads it for the caller that builds the
detector.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flakefinder.artifacts import write_atomic
from flakefinder.domain import Detector, ImagingContext
from flakefinder.errors import DatasetError
from flakefinder.evaluate.coco_metrics import CocoMetrics, coco_metrics
from flakefinder.evaluate.cocodata import (
    detections_to_results,
    gt_instances,
    load_ground_truth,
    result_instances,
    validate_results,
)
from flakefinder.evaluate.confusion import (
    ConfusionMatrix,
    layer_class_confusion,
    layer_count_confusion,
)
from flakefinder.evaluate.image_level import ImageLevelMetrics, image_level_metrics

_CONTEXT_KEYS = ("um_per_px", "oxide_thickness_nm")
_OPTICS_KEYS = ("numerical_aperture", "gamma")


@dataclass(frozen=True)
class EvaluationReport:
    coco: CocoMetrics
    image_level: ImageLevelMetrics  # class-aware matching (the paper's definition)
    image_level_agnostic: ImageLevelMetrics  # any category counts
    class_confusion: ConfusionMatrix
    layer_confusion: ConfusionMatrix
    detector: str = ""
    detector_version: str = ""
    n_dropped: int = 0  # detections whose category the dataset lacks (not in results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "detector_version": self.detector_version,
            "n_dropped_detections": self.n_dropped,
            "coco": self.coco.to_dict(),
            "image_level": self.image_level.to_dict(),
            "image_level_class_agnostic": self.image_level_agnostic.to_dict(),
            "confusion_layer_class": self.class_confusion.to_dict(),
            "confusion_layer_count": self.layer_confusion.to_dict(),
        }

    def to_markdown(self) -> str:
        who = f"{self.detector} {self.detector_version}".strip() or "results"
        parts = [
            f"# Evaluation: {who}\n",
            "## COCO mAP\n",
            self.coco.to_markdown(),
            "## Image-level precision / recall (class-aware, IoU >= "
            f"{self.image_level.iou_threshold:g})\n",
            self.image_level.to_markdown(),
            "## Image-level precision / recall (class-agnostic)\n",
            self.image_level_agnostic.to_markdown(),
            "## Thickness-class confusion (rows: ground truth)\n",
            self.class_confusion.to_markdown(),
            "## Layer-count confusion (rows: ground truth)\n",
            self.layer_confusion.to_markdown(),
        ]
        if self.n_dropped:
            parts.append(f"\n{self.n_dropped} detections had categories absent from the dataset.\n")
        return "\n".join(parts)


def dataset_context(
    gt: Mapping[str, Any], image: Mapping[str, Any] | None = None
) -> ImagingContext:
    """Imaging context of the dataset (see module docstring)."""
    from flakefinder.domain import parse_category_name

    values: dict[str, Any] = {}
    for src in (gt.get("info") or {}, image or {}):
        for k in _CONTEXT_KEYS:
            if isinstance(src, Mapping) and k in src and src[k] is not None:
                values[k] = float(src[k])
    materials = tuple(dict.fromkeys(parse_category_name(c["name"])[0] for c in gt["categories"]))
    return ImagingContext(materials=materials, **values)


def dataset_optics(gt: Mapping[str, Any]) -> dict[str, float]:
    """The microscope values the dataset's ``info`` states (``numerical_aperture``, ``gamma``).

    They are detector options (see :mod:`flakefinder.detect.registry`); keys the dataset does
    not state are absent, so the detector's defaults apply.
    """
    info = gt.get("info") or {}
    if not isinstance(info, Mapping):
        return {}
    return {k: float(info[k]) for k in _OPTICS_KEYS if info.get(k) is not None}


def run_detector(
    detector: Detector,
    gt: Mapping[str, Any],
    image_root: Path,
    *,
    context: ImagingContext | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Detect on every image of ``gt``; returns (COCO results, n_dropped)."""
    from flakefinder.imaging import load_image

    cat_ids = {str(c["name"]): int(c["id"]) for c in gt["categories"]}
    results: list[dict[str, Any]] = []
    dropped = 0
    images = list(gt["images"])
    for k, im in enumerate(images):
        if "file_name" not in im:
            raise DatasetError(f"image {im['id']} has no 'file_name'")
        pixels = load_image(image_root / im["file_name"])
        if pixels.shape[:2] != (im["height"], im["width"]):
            raise DatasetError(
                f"image {im['file_name']} is {pixels.shape[1]}x{pixels.shape[0]} px, "
                f"annotations say {im['width']}x{im['height']}"
            )
        ctx = context or dataset_context(gt, im)
        found = detector.detect(pixels, ctx)
        res, n = detections_to_results(im["id"], found, cat_ids, im["height"], im["width"])
        results += res
        dropped += n
        if progress is not None:
            progress(k + 1, len(images))
    return results, dropped


def evaluate_results(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    detector: str = "",
    detector_version: str = "",
    n_dropped: int = 0,
) -> EvaluationReport:
    """All metrics of a COCO results list (mAP uses every result; image-level metrics and the
    confusion matrices use those with ``score >= score_threshold``)."""
    res = validate_results(gt, [dict(r) for r in results])
    gts = gt_instances(gt)
    preds = result_instances(gt, res, score_threshold=score_threshold)
    return EvaluationReport(
        coco=coco_metrics(gt, res),
        image_level=image_level_metrics(gts, preds, iou_threshold=iou_threshold),
        image_level_agnostic=image_level_metrics(
            gts, preds, iou_threshold=iou_threshold, class_agnostic=True
        ),
        class_confusion=layer_class_confusion(gts, preds, iou_threshold=iou_threshold),
        layer_confusion=layer_count_confusion(gts, preds, iou_threshold=iou_threshold),
        detector=detector,
        detector_version=detector_version,
        n_dropped=n_dropped,
    )


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def write_report(
    report: EvaluationReport, results: Sequence[Mapping[str, Any]] | None, out_dir: str | Path
) -> dict[str, Path]:
    """Write the files listed in the module docstring; returns them by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if results is not None:
        paths["results"] = out / "results.json"
        write_atomic(paths["results"], json.dumps(list(results)))
    paths["metrics"] = out / "metrics.json"
    write_atomic(paths["metrics"], json.dumps(_json_safe(report.to_dict()), indent=2))
    paths["markdown"] = out / "metrics.md"
    write_atomic(paths["markdown"], report.to_markdown())
    for key, cm in (
        ("confusion_class", report.class_confusion),
        ("confusion_layers", report.layer_confusion),
    ):
        write_atomic(out / f"{key}.csv", cm.to_csv())
        paths[key] = cm.save_png(out / f"{key}.png")
    return paths


def evaluate_dataset(
    detector: Detector,
    dataset: str | Path,
    out_dir: str | Path | None = None,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    context: ImagingContext | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Detect over a COCO dataset folder, compute every metric and (if ``out_dir``) write them."""
    gt, root = load_ground_truth(dataset)
    results, dropped = run_detector(detector, gt, root, context=context, progress=progress)
    report = evaluate_results(
        gt,
        results,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        detector=str(detector.name),
        detector_version=str(detector.version),
        n_dropped=dropped,
    )
    if out_dir is not None:
        write_report(report, results, out_dir)
    return report
