"""Segment-then-classify (Mask R-CNN masks + setup profile), the union detector, bad input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.detect.segment_classify import (
    SegmentClassifyDetector,
    UnionDetector,
    check_model_materials,
    classify_masks,
)
from flakefinder.domain import Detection, ImagingContext, LayerClass
from flakefinder.errors import ProfileError

BG = np.array([120.0, 110.0, 170.0])
CONTRAST = {1: (-0.14, -0.14, -0.07), 2: (-0.25, -0.26, -0.14), 3: (-0.35, -0.37, -0.2)}
COV = ((4e-4, 0.0, 0.0), (0.0, 4e-4, 0.0), (0.0, 0.0, 4e-4))
CTX = ImagingContext(um_per_px=0.75, materials=("graphene",))


def _profile(material: str = "graphene") -> SetupProfile:
    layers = tuple(LayerColour(n, c, COV) for n, c in CONTRAST.items())
    return SetupProfile(
        name="test", um_per_px=0.75, oxide_nm=90.0, materials=(MaterialTable(material, layers),)
    )


def _scene() -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    img = np.tile(BG, (400, 500, 1))
    masks = []
    for (y0, x0), value in (
        ((10, 10), BG * (1 + np.array(CONTRAST[1]))),
        ((10, 100), BG * (1 + np.array(CONTRAST[3]))),
        ((90, 10), np.array([250.0, 250.0, 250.0])),  # bulk: no layer explains it
    ):
        m = np.zeros((400, 500), dtype=bool)
        m[y0 : y0 + 40, x0 : x0 + 50] = True
        img[m] = value
        masks.append(m)
    img = img + rng.normal(0, 1.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def test_classify_masks_gives_exact_layers_and_rejects_bulk() -> None:
    img, masks = _scene()
    got = classify_masks(img, masks, _profile(), ["graphene"], um_per_px=0.75)
    assert [(c.material, c.n_layers) for c in got] == [
        ("graphene", 1),
        ("graphene", 3),
        (None, None),
    ]
    assert got[0].sigma < 5 and got[1].sigma < 1 and got[2].sigma > 5
    assert got[0].confidence > 0.8


def test_classify_masks_bad_input() -> None:
    img, masks = _scene()
    with pytest.raises(ValueError, match="mask shape"):
        classify_masks(img, [masks[0][:10]], _profile(), ["graphene"])
    with pytest.raises(ProfileError, match="no colour table for 'WSe2'"):
        classify_masks(img, masks, _profile(), ["WSe2"])
    assert classify_masks(img, [], _profile(), ["graphene"]) == []


@dataclass
class _Seg:
    mask: np.ndarray
    bbox_px: tuple[float, float, float, float]
    score: float


class _FakeSegmenter:
    version = "fake"

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks

    def segment_batch(
        self, images: Sequence[np.ndarray], *, batch_size: int = 4, um_per_px: float | None = None
    ) -> list[tuple[np.ndarray, list[Any]]]:
        segs = [_Seg(m, _bbox(m), 0.9) for m in self.masks]
        return [(np.asarray(im), segs) for im in images]


def _bbox(m: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(m)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_segment_classify_detector() -> None:
    img, masks = _scene()
    det = SegmentClassifyDetector(_FakeSegmenter(masks), _profile())
    found = det.detect(img, CTX)
    assert [(d.material, d.layer_count, d.layer_class) for d in found] == [
        ("graphene", 1, LayerClass.MONO),
        ("graphene", 3, LayerClass.FEW),
    ]
    assert all(0.45 <= d.confidence <= 0.9 for d in found)
    assert found[0].area_px == 40 * 50
    assert "fake+" in det.version
    with pytest.raises(ProfileError):
        det.detect(img, ImagingContext(um_per_px=0.75, materials=("WSe2",)))


class _Fixed:
    def __init__(self, name: str, dets: list[Detection]) -> None:
        self.name, self.version, self.dets = name, "1", dets

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        return self.dets


def _det(x0: int, y0: int, size: int) -> Detection:
    m = np.zeros((100, 100), dtype=bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    poly = ((x0, y0), (x0 + size - 1, y0), (x0 + size - 1, y0 + size - 1), (x0, y0 + size - 1))
    return Detection(
        "graphene", LayerClass.MONO, 0.9, tuple((float(x), float(y)) for x, y in poly),
        (float(x0), float(y0), float(x0 + size), float(y0 + size)), float(size * size), mask=m,
    )  # fmt: skip


def test_union_adds_only_new_flakes() -> None:
    a = [_det(10, 10, 20)]
    b = [_det(11, 11, 20), _det(60, 60, 10)]  # the first overlaps a's (IoU ~0.82)
    u = UnionDetector(_Fixed("a", a), _Fixed("b", b))
    got = u.detect(np.zeros((100, 100, 3), np.uint8), CTX)
    assert [d.bbox_px[0] for d in got] == [10.0, 60.0]
    assert u.version == "a:1|b:1"


def test_model_material_check() -> None:
    check_model_materials(("graphene",), _profile(), ["graphene"])
    check_model_materials((), _profile("WSe2"), ["WSe2"])  # class-agnostic: any material
    with pytest.raises(ProfileError, match="trained on graphene, not on WSe2"):
        check_model_materials(("graphene",), _profile("WSe2"), ["WSe2"])
    with pytest.raises(ProfileError, match="no colour table"):
        check_model_materials(("graphene",), _profile("WSe2"), ["graphene"])
