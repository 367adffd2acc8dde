"""create_detector / available_detectors, and mask-IoU matching used by the benchmarks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detect_helpers import setup_profile
from flakefinder.detect.contrast import ContrastDetector
from flakefinder.detect.registry import (
    DEFAULT_DETECTOR,
    DETECTORS,
    DetectorOptionError,
    available_detectors,
    check_detector,
    create_detector,
    detector_help,
    detector_spec,
    options_help,
    parse_option_pairs,
)
from flakefinder.detect.rulebased import RuleBasedDetector
from flakefinder.errors import UnknownDetectorError
from flakefinder.evaluate.matching import mask_iou_matrix, match_masks


def test_create_by_name():
    assert set(available_detectors()) == {"terrace", "contrast", "rulebased", "maskrcnn", "union"}
    det = create_detector("contrast", options={"min_area_um2": "2.0"})
    assert isinstance(det, ContrastDetector) and det.min_area_um2 == 2.0
    assert isinstance(create_detector("rulebased"), RuleBasedDetector)
    assert isinstance(create_detector("Rule-Based"), RuleBasedDetector)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="contrast, rulebased, maskrcnn"):
        create_detector("yolo")


def test_options_are_typed_and_validated_against_the_schema():
    det = create_detector(
        "contrast",
        options={"gamma": "2.2", "report_saturated": "yes", "numerical_aperture": 0.3},
    )
    assert isinstance(det, ContrastDetector)
    assert det.gamma == 2.2 and det.report_saturated is True and det.numerical_aperture == 0.3
    with pytest.raises(DetectorOptionError, match="no option 'k_sigmaa'.*min_area_um2, k_sigma"):
        create_detector("contrast", options={"k_sigmaa": "3"})
    with pytest.raises(DetectorOptionError, match="must be a number, got 'abc'"):
        create_detector("contrast", options={"k_sigma": "abc"})
    with pytest.raises(DetectorOptionError, match="finite"):
        create_detector("rulebased", options={"min_area_um2": "nan"})
    with pytest.raises(DetectorOptionError, match=r"must lie in \[0.2, 5\]"):
        create_detector("contrast", options={"gamma": "0"})
    with pytest.raises(DetectorOptionError, match="true or false"):
        create_detector("contrast", options={"report_saturated": "maybe"})


def test_model_and_setup_only_where_the_detector_takes_them(tmp_path: Path):
    with pytest.raises(UnknownDetectorError, match="takes no model folder.*only maskrcnn"):
        create_detector("contrast", model=tmp_path)
    profile = setup_profile()
    with pytest.raises(UnknownDetectorError, match="cannot use a setup profile.*only terrace, contrast"):
        create_detector("rulebased", setup=profile)
    # the contrast entry accepts a setup and routes it to the calibrated constructor
    assert detector_spec("contrast").accepts_setup


def test_score_and_device_reach_only_detectors_that_have_them():
    spec, parsed = check_detector("maskrcnn", min_score=0.2, device="cpu")
    assert parsed == {"score_threshold": 0.2, "device": "cpu"}
    spec, parsed = check_detector("contrast", min_score=0.2, device="cpu")
    assert parsed == {}
    _, parsed = check_detector("maskrcnn", min_score=0.2, options={"score_threshold": "0.7"})
    assert parsed["score_threshold"] == 0.7  # an explicit option wins


def test_help_text_is_built_from_the_registry():
    text = detector_help()
    for name in available_detectors():
        assert name in text
    assert "terrace (default)" in text and DEFAULT_DETECTOR == "terrace"
    listing = options_help()
    for spec in DETECTORS:
        assert f"{spec.name}: " in listing
        for opt in spec.options:
            assert opt.name in listing
    assert parse_option_pairs(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(DetectorOptionError, match="key=value"):
        parse_option_pairs(["novalue"])


def test_no_module_outside_detect_constructs_a_detector_class():
    src = Path(__file__).resolve().parents[1] / "src" / "flakefinder"
    classes = re.compile(r"\b\w*(Contrast|RuleBased|MaskRCNN)\w*Detector\b[.(]")
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.parent.name != "detect" and classes.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


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
