"""Illumination sweep with fake detectors whose behaviour depends on brightness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flakefinder.domain import Detection, ImagingContext, LayerClass
from flakefinder.evaluate.cocodata import Instance
from flakefinder.evaluate.illumination import SweepView, illumination_sweep

H = W = 32
FLAKE = np.zeros((H, W), dtype=bool)
FLAKE[8:20, 8:20] = True


def det_from_mask(mask: np.ndarray, layer_class: LayerClass = LayerClass.MONO) -> Detection:
    ys, xs = np.nonzero(mask)
    return Detection(
        material="graphene",
        layer_class=layer_class,
        confidence=0.9,
        polygon_px=(),
        bbox_px=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
        area_px=float(mask.sum()),
        mask=mask,
    )


class ThresholdDetector:
    """Finds the flake only while the mean brightness is >= 150 (a fixed rule)."""

    name = "threshold"
    version = "1"

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        if image.mean() >= 150 and image[10, 10, 0] < image[0, 0, 0]:
            return [det_from_mask(FLAKE)]
        return []


class RobustDetector:
    """Finds the flake at any brightness; below 100 it also reports a spurious flake."""

    name = "robust"
    version = "1"

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        out = []
        if image[10, 10, 0] < image[0, 0, 0]:
            out.append(det_from_mask(FLAKE))
        if image.mean() < 100:
            junk = np.zeros((H, W), dtype=bool)
            junk[24:30, 24:30] = True
            out.append(det_from_mask(junk))
        return out


def render(with_flake: bool):
    def f(level: float) -> np.ndarray:
        img = np.full((H, W, 3), round(200 * level), dtype=np.uint8)
        if with_flake:
            img[FLAKE] = round(170 * level)
        return img

    return f


VIEWS = [
    SweepView((Instance(0, "graphene_mono", FLAKE, n_layers=1),), render(True)),
    SweepView((), render(False)),
]
LEVELS = (1.0, 0.8, 0.7, 0.4)


def test_sweep_table() -> None:
    r = illumination_sweep(
        [ThresholdDetector(), RobustDetector()], VIEWS, ImagingContext(), illuminations=LEVELS
    )
    assert r.detectors() == ("threshold", "robust")
    assert len(r.rows) == 8
    # threshold detector: means 1.0 -> ~197, 0.8 -> ~158, 0.7 -> ~138, 0.4 -> ~79
    got = [(x.illumination, x.flake_recall, x.tp, x.fn, x.tn) for x in r.rows[:4]]
    assert got == [
        (1.0, 1.0, 1, 0, 1),
        (0.8, 1.0, 1, 0, 1),
        (0.7, 0.0, 0, 1, 1),
        (0.4, 0.0, 0, 1, 1),
    ]
    assert r.row("threshold", 1.0).image_precision == 1.0
    assert math.isnan(r.row("threshold", 0.4).image_precision)  # nothing detected
    assert math.isnan(r.row("threshold", 0.4).flake_precision)
    # robust: always recall 1; at 0.4 (mean < 100) one spurious flake on each view:
    # view 0 TP (flake + junk), view 1 FP (junk only)
    low = r.row("robust", 0.4)
    assert (low.n_detections, low.n_correct, low.tp, low.fp, low.tn) == (3, 1, 1, 1, 0)
    assert low.flake_precision == pytest.approx(1 / 3)
    assert low.image_precision == 0.5 and low.image_recall == 1.0
    assert all(r.row("robust", v).flake_recall == 1.0 for v in LEVELS)
    assert r.row("robust", 0.7).image_precision == 1.0


def test_outputs(tmp_path) -> None:
    r = illumination_sweep([ThresholdDetector()], VIEWS, ImagingContext(), illuminations=(1.0, 0.4))
    paths = r.write(tmp_path)
    csv = paths["csv"].read_text().splitlines()
    assert csv[0].startswith("detector,illumination,")
    assert csv[1].startswith("threshold,1.0,2,1,1,1,1.0,1.0,")
    assert csv[2].startswith("threshold,0.4,2,1,0,0,,0.0,")  # NaN precision -> empty cell
    md = paths["markdown"].read_text()
    assert "| threshold | 0.400 | 1 | 0 | 0.000 | n/a | 0.000 | n/a |" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_class_agnostic_option() -> None:
    class WrongClass(RobustDetector):
        name = "wrongclass"

        def detect(self, image, context):
            return [det_from_mask(FLAKE, LayerClass.FEW)]

    r = illumination_sweep([WrongClass()], VIEWS[:1], ImagingContext(), illuminations=(1.0,))
    assert r.rows[0].flake_recall == 0.0
    r2 = illumination_sweep(
        [WrongClass()], VIEWS[:1], ImagingContext(), illuminations=(1.0,), class_agnostic=True
    )
    assert r2.rows[0].flake_recall == 1.0


def test_needs_detectors_and_unique_names() -> None:
    with pytest.raises(ValueError, match="at least one detector"):
        illumination_sweep([], VIEWS, ImagingContext())
    with pytest.raises(ValueError, match="unique"):
        illumination_sweep([RobustDetector(), RobustDetector()], VIEWS, ImagingContext())
