"""create_detector / available_detectors, and mask-IoU matching used by the benchmarks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from flakefinder.detect.contrast import ContrastDetector
from flakefinder.detect.registry import available_detectors, create_detector
from flakefinder.detect.rulebased import RuleBasedDetector
from flakefinder.evaluate.matching import mask_iou_matrix, match_masks


def test_create_by_name():
    assert set(available_detectors()) == {"contrast", "rulebased", "maskrcnn"}
    det = create_detector("contrast", min_area_um2=2.0)
    assert isinstance(det, ContrastDetector) and det.min_area_um2 == 2.0
    assert isinstance(create_detector("rulebased"), RuleBasedDetector)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="contrast, rulebased, maskrcnn"):
        create_detector("yolo")


def test_detect_modules_do_not_import_torch():
    code = (
        "import sys, flakefinder.detect.registry, flakefinder.detect.contrast, "
        "flakefinder.detect.rulebased, flakefinder.detect.refine, flakefinder.evaluate.matching; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _box(y0, y1, x0, x1, shape=(20, 20)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_iou_matching():
    gt = [_box(0, 10, 0, 10), _box(10, 20, 10, 20)]
    pred = [_box(10, 20, 10, 18), _box(0, 10, 0, 10), _box(0, 4, 15, 19), np.zeros((20, 20), bool)]
    iou = mask_iou_matrix(pred, gt)
    assert iou.shape == (4, 2) and iou[1, 0] == 1.0 and iou[0, 1] == pytest.approx(0.8)
    m = match_masks(pred, gt, scores=[0.5, 0.9, 0.99, 0.1])
    assert m.matches == ((1, 0, 1.0), (0, 1, pytest.approx(0.8)))
    assert m.unmatched_predictions == (2, 3) and m.unmatched_ground_truth == ()
    assert m.true_positives == 2 and m.false_positives == 2 and m.false_negatives == 0
    strict = match_masks(pred, gt, iou_threshold=0.9)
    assert strict.unmatched_ground_truth == (1,)
    with pytest.raises(ValueError):
        mask_iou_matrix([np.zeros((3, 3), bool)], [np.zeros((4, 4), bool)])
