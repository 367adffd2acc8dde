"""ContrastDetector on hand-built and synth-rendered images: exact layer counts and classes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detect_helpers import chip, context, instances, render
from flakefinder.detect.colours import colour_table
from flakefinder.detect.contrast import ContrastDetector
from flakefinder.domain import Detector, ImagingContext, LayerClass
from flakefinder.errors import ImageError
from flakefinder.evaluate.matching import match_masks


def _summary(dets):
    return sorted((d.material, d.layer_count, d.layer_class) for d in dets)


EXPECTED = [
    ("graphene", 1, LayerClass.MONO),
    ("graphene", 3, LayerClass.FEW),
    ("graphene", 20, LayerClass.THICK),
]


def test_is_a_detector():
    det = ContrastDetector()
    assert isinstance(det, Detector)
    assert det.name == "contrast" and det.version


def test_hand_built_rectangles():
    """Rectangles of model colours on a flat substrate plus 8-bit noise."""
    table = colour_table(90.0, 0.55, ("graphene",))
    sub = np.array([0.5, 0.45, 0.6])
    lin = np.ones((200, 200, 3)) * sub
    for (x0, y0, x1, y1), n in (
        ((20, 20, 80, 70), 1),
        ((120, 30, 180, 90), 3),
        ((40, 120, 160, 180), 20),
    ):
        lin[y0:y1, x0:x1] = sub * table.relative_rgb[n]
    img = np.clip(np.rint(255 * lin + np.random.default_rng(0).normal(0, 1.5, lin.shape)), 0, 255)
    dets = ContrastDetector().detect(img.astype(np.uint8), ImagingContext(um_per_px=0.2))
    assert _summary(dets) == EXPECTED
    one = next(d for d in dets if d.layer_count == 1)
    assert one.bbox_px == (20.0, 20.0, 80.0, 70.0)
    assert abs(one.area_px - 60 * 50) < 30
    assert one.mask is not None and one.mask.shape == (200, 200) and one.mask.sum() == one.area_px
    assert len(one.polygon_px) >= 4 and 0.9 < one.confidence <= 1.0
    assert one.contrast_rgb is not None and one.contrast_rgb[1] == pytest.approx(
        table.relative_rgb[1][1] - 1, abs=0.01  # C = I/I_substrate - 1 (issue 17)
    )


def test_synth_chip_three_flakes_no_debris_reported():
    c = chip()
    dets = ContrastDetector().detect(render(c), context())
    assert _summary(dets) == EXPECTED
    gt = instances(c)
    m = match_masks([d.mask for d in dets], [g.mask for g in gt], iou_threshold=0.9)
    assert m.true_positives == 3 and m.false_positives == 0
    for p, g, _ in m.matches:
        assert dets[p].layer_count == gt[g].n_layers


@pytest.mark.parametrize(
    "settings",
    [
        {"illumination": 0.6},
        {"inhomogeneity": 0.25, "gradient_xy": (0.15, -0.1)},
        {"white_balance_rgb": (0.8, 1.0, 1.25), "illumination": 0.8},
    ],
)
def test_illumination_changes_do_not_change_the_result(settings):
    dets = ContrastDetector().detect(render(chip(), **settings), context())
    assert _summary(dets) == EXPECTED


def test_gamma_encoded_images():
    dets = ContrastDetector(gamma=2.2).detect(render(chip(), gamma=2.2), context())
    assert _summary(dets) == EXPECTED


def test_two_terrace_flake_gives_two_regions():
    c = chip(terraces=True)
    dets = ContrastDetector().detect(render(c), context())
    assert sorted(d.layer_count for d in dets) == [1, 2, 3, 6, 20]
    gt = instances(c)
    m = match_masks([d.mask for d in dets], [g.mask for g in gt], iou_threshold=0.8)
    assert m.true_positives == 5 and m.false_positives == 0


def _blurred(lin: np.ndarray, blur: float) -> np.ndarray:
    lin = cv2.GaussianBlur(lin, (0, 0), blur)
    noise = np.random.default_rng(0).normal(0, 1.5, lin.shape)
    return np.clip(np.rint(255 * lin + noise), 0, 255).astype(np.uint8)


def test_nested_small_terrace_found_as_its_own_region():
    """A ~20 µm² 8L hBN terrace inside a 6L hBN flake: its own region, layer count 8."""
    table = colour_table(90.0, 0.55, ("hBN",))
    sub = np.array([0.5, 0.45, 0.6])
    lin = np.ones((200, 200, 3)) * sub
    lin[40:160, 40:160] = sub * table.relative_rgb[6]
    lin[90:112, 90:112] = sub * table.relative_rgb[8]  # 22 x 22 px at 0.2 µm/px = 19.4 µm²
    dets = ContrastDetector().detect(
        _blurred(lin, 1.5), ImagingContext(um_per_px=0.2, materials=("hBN",))
    )
    assert sorted((d.material, d.layer_count) for d in dets) == [("hBN", 6), ("hBN", 8)]
    terrace = next(d for d in dets if d.layer_count == 8)
    assert 0.8 * 22 * 22 < terrace.area_px < 1.2 * 22 * 22
    assert terrace.bbox_px[0] >= 88 and terrace.bbox_px[2] <= 114


def test_small_isolated_flake_without_flat_pixels():
    """A 5.8 µm² monolayer blurred into edge pixels (no flat pixel) is labelled from its core."""
    mats = ("graphene", "hBN", "MoS2")
    table = colour_table(90.0, 0.55, mats)
    sub = np.array([0.5, 0.45, 0.6])
    lin = np.ones((120, 120, 3)) * sub
    lin[50:62, 50:62] = sub * table.relative_rgb[table.rows_for("MoS2")[0]]
    dets = ContrastDetector().detect(
        _blurred(lin, 2.0), ImagingContext(um_per_px=0.2, materials=mats)
    )
    assert [(d.material, d.layer_count) for d in dets] == [("MoS2", 1)]
    assert 0.6 * 144 < dets[0].area_px < 1.4 * 144
    # an explicit min_support_px keeps the strict flat-pixel rule (no core fallback)
    strict = ContrastDetector(min_support_px=12)
    assert strict.detect(_blurred(lin, 2.0), ImagingContext(um_per_px=0.2, materials=mats)) == []


def test_empty_substrate_and_debris_only():
    det = ContrastDetector()
    assert det.detect(render(chip(flakes=False, debris=False), inhomogeneity=0.2), context()) == []
    assert det.detect(render(chip(flakes=False)), context()) == []


def test_min_area_drops_small_flakes():
    dets = ContrastDetector(min_area_um2=220.0).detect(render(chip()), context())
    assert [d.layer_count for d in dets] == [20]  # the 20L hexagon (r = 10 µm) is the largest


def test_several_candidate_materials():
    dets = ContrastDetector().detect(render(chip()), context(materials=("graphene", "hBN")))
    assert _summary(dets) == EXPECTED


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((4, 4, 3), np.uint8),
    ],
)
def test_bad_input_raises_image_error(bad):
    with pytest.raises(ImageError):
        ContrastDetector().detect(bad, context())


def _saturated_image() -> np.ndarray:
    """Graphene 1L rectangle plus a MoS2 20L rectangle whose three channels clip at 255."""
    table = colour_table(90.0, 0.55, ("graphene", "MoS2"))
    sub = np.array([0.5, 0.45, 0.6])
    lin = np.ones((200, 200, 3)) * sub
    lin[20:70, 20:80] = sub * table.relative_rgb[1]  # graphene 1L
    lin[110:180, 60:170] = sub * table.relative_rgb[table.rows_for("MoS2")[19]]  # MoS2 20L
    noise = np.random.default_rng(1).normal(0, 1.5, lin.shape)
    return np.clip(np.rint(255 * lin + noise), 0, 255).astype(np.uint8)


def test_saturated_region_dropped_by_default():
    img = _saturated_image()
    assert (img[115:175, 65:165] == 255).all()
    ctx = ImagingContext(um_per_px=0.2, materials=("graphene", "MoS2"))
    dets = ContrastDetector().detect(img, ctx)
    assert _summary(dets) == [("graphene", 1, LayerClass.MONO)]


def test_saturated_region_reported_as_thick_when_asked():
    ctx = ImagingContext(um_per_px=0.2, materials=("graphene", "MoS2"))
    dets = ContrastDetector(report_saturated=True, saturated_confidence=0.3).detect(
        _saturated_image(), ctx
    )
    assert len(dets) == 2
    mono = next(d for d in dets if d.layer_count == 1)
    assert mono.material == "graphene" and mono.confidence > 0.9
    sat = next(d for d in dets if d.layer_count is None)
    # only MoS2 reaches the clip level in all channels within 1..40 layers
    assert (sat.material, sat.layer_class, sat.confidence) == ("MoS2", LayerClass.THICK, 0.3)
    assert sat.bbox_px == (60.0, 110.0, 170.0, 180.0)
    assert sat.mask is not None and abs(int(sat.mask.sum()) - 110 * 70) <= 4


def test_saturated_region_no_material_bright_enough_is_dropped():
    """Only graphene (never this bright below 41 layers): the clipped region is not reported."""
    dets = ContrastDetector(report_saturated=True).detect(_saturated_image(), context())
    assert _summary(dets) == [("graphene", 1, LayerClass.MONO)]
