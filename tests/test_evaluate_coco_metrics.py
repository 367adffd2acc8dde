"""Exact COCO mAP numbers on hand-made ground truth and predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flakefinder.errors import DatasetError
from flakefinder.evaluate.coco_metrics import coco_metrics
from flakefinder.evaluate.cocodata import encode_mask, mask_bbox_xywh, validate_coco

H = W = 64
CATS = [
    {"id": 1, "name": "graphene_mono"},
    {"id": 2, "name": "graphene_few"},
    {"id": 3, "name": "graphene_thick"},
    {"id": 4, "name": "hBN_mono"},
]


def square(x: int, y: int, size: int = 20) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y : y + size, x : x + size] = True
    return m


def gt_dict(anns: list[tuple[int, int, np.ndarray]], n_images: int = 2) -> dict:
    """anns: (image_id, category_id, mask)."""
    images = [
        {"id": i, "width": W, "height": H, "file_name": f"{i}.png"} for i in range(1, n_images + 1)
    ]
    annotations = [
        {"id": k + 1, "image_id": i, "category_id": c, "segmentation": encode_mask(m)}
        for k, (i, c, m) in enumerate(anns)
    ]
    return validate_coco({"images": images, "annotations": annotations, "categories": CATS})


def res(image_id: int, cat: int, mask: np.ndarray, score: float = 0.9) -> dict:
    return {
        "image_id": image_id,
        "category_id": cat,
        "segmentation": encode_mask(mask),
        "bbox": mask_bbox_xywh(mask),
        "score": score,
    }


GT_ANNS = [(1, 1, square(5, 5)), (2, 2, square(30, 30))]


def test_perfect_predictions_give_ap_one() -> None:
    gt = gt_dict(GT_ANNS)
    m = coco_metrics(gt, [res(i, c, mk) for i, c, mk in GT_ANNS])
    for v in (m.mask_ap, m.mask_ap50, m.mask_ap75, m.box_ap, m.box_ap50, m.box_ap75):
        assert v == pytest.approx(1.0)
    assert m.ap50_per_class["graphene_mono"] == pytest.approx(1.0)
    assert m.ap50_per_class["graphene_few"] == pytest.approx(1.0)
    # categories without ground truth: NaN, excluded from means
    assert math.isnan(m.ap50_per_class["graphene_thick"])
    assert math.isnan(m.ap50_per_class["hBN_mono"])
    assert m.ap50_per_material["graphene"] == pytest.approx(1.0)
    assert math.isnan(m.ap50_per_material["hBN"])
    assert (m.n_images, m.n_ground_truth, m.n_detections) == (2, 2, 2)


def test_no_detections_give_zero() -> None:
    m = coco_metrics(gt_dict(GT_ANNS), [])
    assert (m.mask_ap, m.mask_ap50, m.mask_ap75, m.box_ap, m.box_ap50, m.box_ap75) == (0.0,) * 6
    assert m.ap50_per_class["graphene_mono"] == 0.0
    assert math.isnan(m.ap50_per_class["graphene_thick"])
    assert m.ap50_per_material["graphene"] == 0.0


def test_shifted_masks_give_known_values() -> None:
    # 20x20 squares shifted by 4 px: IoU = 320 / 480 = 2/3 -> matched at IoU 0.50..0.65 only
    gt = gt_dict(GT_ANNS)
    m = coco_metrics(gt, [res(1, 1, square(9, 5)), res(2, 2, square(34, 30))])
    assert m.mask_ap50 == pytest.approx(1.0)
    assert m.mask_ap75 == pytest.approx(0.0)
    assert m.mask_ap == pytest.approx(0.4)  # 4 of 10 IoU thresholds
    assert m.box_ap == pytest.approx(0.4)


def test_shift_below_half_is_a_miss() -> None:
    gt = gt_dict(GT_ANNS)
    m = coco_metrics(gt, [res(1, 1, square(15, 5)), res(2, 2, square(40, 30))])  # IoU 1/3
    assert m.mask_ap50 == 0.0 and m.box_ap50 == 0.0


def test_half_recall_and_ranked_false_positive() -> None:
    anns = [(1, 1, square(5, 5)), (2, 1, square(30, 30))]
    gt = gt_dict(anns)
    # one of two found, precision 1 up to recall 0.5: 51 of 101 recall points
    m = coco_metrics(gt, [res(1, 1, square(5, 5))])
    assert m.mask_ap50 == pytest.approx(51 / 101)
    # a false positive ranked above the two true positives: precision 0.5, 2/3 ... -> AP
    m2 = coco_metrics(
        gt,
        [
            res(1, 1, square(40, 40), 0.95),
            res(1, 1, square(5, 5), 0.9),
            res(2, 1, square(30, 30), 0.8),
        ],
    )
    # precision after each: 0, 1/2, 2/3; interpolated: 2/3 for every recall point
    assert m2.mask_ap50 == pytest.approx(2 / 3)


def test_wrong_class_scores_zero_for_both_classes() -> None:
    gt = gt_dict(GT_ANNS)
    m = coco_metrics(gt, [res(1, 2, square(5, 5), 0.9), res(2, 2, square(30, 30), 0.8)])
    assert m.ap50_per_class["graphene_mono"] == 0.0
    # graphene_few: a FP ranked above the TP -> precision 0.5 at recall 1
    assert m.ap50_per_class["graphene_few"] == pytest.approx(0.5)
    assert m.ap50_per_material["graphene"] == pytest.approx(0.25)
    assert m.mask_ap50 == pytest.approx(0.25)


def test_no_ground_truth_is_nan() -> None:
    m = coco_metrics(gt_dict([]), [res(1, 1, square(5, 5))])
    assert math.isnan(m.mask_ap) and math.isnan(m.box_ap50)
    assert all(math.isnan(v) for v in m.ap50_per_class.values())


def test_unknown_image_or_category_raises() -> None:
    gt = gt_dict(GT_ANNS)
    with pytest.raises(DatasetError, match="image id 99"):
        coco_metrics(gt, [res(99, 1, square(5, 5))])
    with pytest.raises(DatasetError, match="category id 42"):
        coco_metrics(gt, [res(1, 42, square(5, 5))])
    with pytest.raises(DatasetError, match="lacks"):
        coco_metrics(gt, [{"image_id": 1}])


def test_markdown_and_dict() -> None:
    m = coco_metrics(gt_dict(GT_ANNS), [])
    assert "| graphene | 0.000 |" in m.to_markdown()
    assert "| hBN | n/a |" in m.to_markdown()
    assert m.to_dict()["ap50_per_class"]["hBN_mono"] is None
