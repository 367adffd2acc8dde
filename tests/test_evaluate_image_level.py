"""The paper's image-level precision/recall: exact counts on hand-made predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flakefinder.errors import DatasetError
from flakefinder.evaluate.cocodata import Instance, encode_mask, validate_coco
from flakefinder.evaluate.image_level import image_level_from_coco, image_level_metrics

H = W = 48


def square(x: int, y: int, size: int = 16) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y : y + size, x : x + size] = True
    return m


def inst(image_id: int, cat: str, mask: np.ndarray, score: float = 1.0) -> Instance:
    return Instance(image_id=image_id, category=cat, mask=mask, score=score)


GT = {
    1: [inst(1, "graphene_mono", square(2, 2))],
    2: [inst(2, "graphene_few", square(20, 20)), inst(2, "graphene_mono", square(2, 30, 10))],
    3: [inst(3, "graphene_thick", square(10, 10))],
}


def test_perfect() -> None:
    m = image_level_metrics(GT, GT)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 0, 0, 0)
    assert m.precision == 1.0 and m.recall == 1.0
    assert m.flake_precision == 1.0 and m.flake_recall == 1.0
    assert (m.n_ground_truth, m.n_detections, m.n_correct) == (4, 4, 4)


def test_empty_predictions() -> None:
    m = image_level_metrics(GT, {})
    assert (m.tp, m.fp, m.fn, m.tn) == (0, 0, 3, 0)
    assert m.recall == 0.0
    assert math.isnan(m.precision)  # no detections anywhere: undefined
    assert math.isnan(m.flake_precision) and m.flake_recall == 0.0
    assert m.to_dict()["precision"] is None


def test_shifted_masks_are_fp_and_fn() -> None:
    # 16x16 squares shifted by 8 px: IoU = 128 / 384 = 1/3 < 0.5
    preds = {
        i: [inst(i, g.category, np.roll(g.mask, 8, axis=1)) for g in gts] for i, gts in GT.items()
    }
    m = image_level_metrics(GT, preds)
    assert (m.tp, m.fp, m.fn, m.tn) == (0, 3, 3, 0)
    assert m.precision == 0.0 and m.recall == 0.0
    # 4 px shift: IoU = 192 / 320 = 0.6 >= 0.5 -> correct; 10x10 square shifted 4: 60/140 < 0.5
    preds4 = {
        i: [inst(i, g.category, np.roll(g.mask, 4, axis=1)) for g in gts] for i, gts in GT.items()
    }
    m4 = image_level_metrics(GT, preds4)
    assert (m4.tp, m4.fp, m4.fn, m4.n_correct) == (3, 0, 0, 3)
    assert m4.flake_recall == pytest.approx(3 / 4)
    m4b = image_level_metrics(GT, preds4, iou_threshold=0.7)
    assert (m4b.tp, m4b.fp, m4b.fn) == (0, 3, 3)


def test_mixed_cases_exact_counts() -> None:
    gt = {
        1: [inst(1, "graphene_mono", square(2, 2))],  # found + extra wrong detection -> TP
        2: [inst(2, "graphene_few", square(2, 2))],  # nothing detected -> FN
        3: [],  # detection on an empty image -> FP
        4: [],  # nothing at all -> TN
        5: [inst(5, "graphene_mono", square(2, 2))],  # right mask, wrong class
    }
    preds = {
        1: [
            inst(1, "graphene_mono", square(2, 2), 0.9),
            inst(1, "graphene_mono", square(30, 30), 0.8),
        ],
        3: [inst(3, "graphene_few", square(5, 5))],
        5: [inst(5, "graphene_thick", square(2, 2))],
    }
    m = image_level_metrics(gt, preds)
    assert (m.tp, m.fp, m.fn, m.tn) == (1, 2, 2, 1)
    assert m.precision == pytest.approx(1 / 3) and m.recall == pytest.approx(1 / 3)
    assert (m.n_detections, m.n_ground_truth, m.n_correct) == (4, 3, 1)
    assert m.flake_precision == pytest.approx(1 / 4) and m.flake_recall == pytest.approx(1 / 3)
    assert [(o.image_id, o.tp, o.fp, o.fn, o.tn) for o in m.outcomes] == [
        (1, True, False, False, False),
        (2, False, False, True, False),
        (3, False, True, False, False),
        (4, False, False, False, True),
        (5, False, True, True, False),
    ]
    a = image_level_metrics(gt, preds, class_agnostic=True)
    assert (a.tp, a.fp, a.fn, a.tn) == (2, 1, 1, 1)
    assert a.precision == pytest.approx(2 / 3) and a.recall == pytest.approx(2 / 3)
    # score threshold removes the 0.8 spurious detection of image 1 only
    t = image_level_metrics(gt, preds, score_threshold=0.85)
    assert (t.tp, t.fp, t.fn, t.tn, t.n_detections) == (1, 2, 2, 1, 3)
    assert t.flake_precision == pytest.approx(1 / 3)


def test_one_to_one_matching() -> None:
    gt = {1: [inst(1, "graphene_mono", square(2, 2))]}
    dup = {
        1: [
            inst(1, "graphene_mono", square(2, 2), 0.9),
            inst(1, "graphene_mono", square(2, 2), 0.8),
        ]
    }
    m = image_level_metrics(gt, dup)
    assert (m.tp, m.fp, m.n_correct, m.n_detections) == (1, 0, 1, 2)
    assert m.flake_precision == 0.5


def test_no_ground_truth_recall_nan() -> None:
    m = image_level_metrics({1: []}, {1: [inst(1, "graphene_mono", square(2, 2))]})
    assert (m.tp, m.fp, m.fn, m.tn) == (0, 1, 0, 0)
    assert m.precision == 0.0 and math.isnan(m.recall)


def test_predictions_for_unknown_image() -> None:
    with pytest.raises(DatasetError, match="not in the ground truth"):
        image_level_metrics(GT, {7: []})


def test_from_coco_results() -> None:
    cats = [{"id": 1, "name": "graphene_mono"}, {"id": 2, "name": "graphene_few"}]
    gt = validate_coco(
        {
            "images": [{"id": i, "width": W, "height": H} for i in (1, 2, 3)],
            "annotations": [
                {"image_id": 1, "category_id": 1, "segmentation": encode_mask(square(2, 2))},
                {"image_id": 2, "category_id": 2, "segmentation": encode_mask(square(2, 2))},
            ],
            "categories": cats,
        }
    )
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": encode_mask(square(2, 2)), "score": 0.9},
        {"image_id": 3, "category_id": 1, "segmentation": encode_mask(square(2, 2)), "score": 0.3},
    ]
    m = image_level_from_coco(gt, results)
    assert (m.tp, m.fp, m.fn, m.tn) == (1, 1, 1, 0)
    m2 = image_level_from_coco(gt, results, score_threshold=0.5)
    assert (m2.tp, m2.fp, m2.fn, m2.tn) == (1, 0, 1, 1)
    assert m2.precision == 1.0 and m2.recall == 0.5
    bad = [dict(results[0], image_id=9)]
    with pytest.raises(DatasetError, match="image id 9"):
        image_level_from_coco(gt, bad)
