"""Network outlines classified per terrace, and the terrace-based union (issue 16, item 6).

The network is a fake segmenter that returns given masks; the terrace detector is the real one
on a synthetic chip field (``terrace_helpers.scene``: a 1 L and a 2 L terrace side by side, a
separate 3 L flake, bulk, residue, dust).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from flakefinder.detect.instances import Segment
from flakefinder.detect.net_terrace import NetTerraceDetector
from flakefinder.detect.terrace.detector import TerraceDetector
from flakefinder.detect.union import TerraceUnionDetector, merge_union, same_call
from flakefinder.domain import Detection, ImagingContext, LayerClass
from terrace_helpers import iou, scene

CTX = ImagingContext(um_per_px=0.2, materials=("graphene",))


class _FakeNet:
    name, version = "fake", "0"

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks
        self.calls: list[float | None] = []

    def segment_batch(
        self, images: Sequence[np.ndarray], *, batch_size: int = 4, um_per_px: float | None = None
    ) -> list[tuple[np.ndarray, list[Segment]]]:
        self.calls.append(um_per_px)
        out = []
        for im in images:
            segs = []
            for m in self.masks:
                ys, xs = np.nonzero(m)
                box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                segs.append(Segment(m, box, 0.9))
            out.append((np.asarray(im), segs))
        return out


def _square(y0: int, x0: int, size: int, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def test_network_outlines_get_the_terrace_layer_numbers_without_a_profile() -> None:
    sc = scene()
    (one, _), (two, _), (three, _) = sc.terraces
    substrate_only = _square(300, 40, 60)  # bare substrate: no flake there
    net = _FakeNet([one, two, three, substrate_only])
    det = NetTerraceDetector(net, TerraceDetector())
    assert det.needs_calibration
    found = det.detect(sc.image, CTX)
    assert net.calls == [0.2]  # the network is told the pixel size (tiled models)
    assert [(d.material, d.layer_count, d.layer_class) for d in found] == [
        ("graphene", 1, LayerClass.MONO), ("graphene", 2, LayerClass.FEW),
        ("graphene", 3, LayerClass.FEW),
    ]  # fmt: skip
    assert [d.confidence for d in found] == [0.9, 0.9, 0.9]
    assert all(d.mask is not None and d.area_px == int(d.mask.sum()) for d in found)
    assert any("self-calibrated" in n for n in det.notes) and det.calibrations
    assert det.version == "0+terrace-1.0" and det.name == "maskrcnn"


def test_union_adds_the_flake_the_terrace_detector_missed_and_keeps_the_one_the_network_missed() -> None:
    sc = scene()
    (one, _), (two, _), (three, _) = sc.terraces
    # the terrace detector misses the 2 L terrace (below its area floor); the network misses 3 L
    terrace = TerraceDetector(min_area_um2=400.0)
    alone = terrace.detect(sc.image, CTX)
    assert sorted(d.layer_count for d in alone) == [1, 3]
    union = TerraceUnionDetector(_FakeNet([one, two]), TerraceDetector(min_area_um2=400.0))
    found = union.detect(sc.image, CTX)
    got = sorted((d.layer_count, round(max(iou(d.mask, m) for m, _ in sc.terraces), 2))
                 for d in found)  # fmt: skip
    assert [n for n, _ in got] == [1, 2, 3]  # 1 L from both (once), 2 L from the network, 3 L
    assert all(v >= 0.95 for _, v in got)
    assert union.name == "union" and union.version == "terrace:1.0|fake:0"


def _det(mask: np.ndarray, layers: int | None, contrast: tuple[float, float, float] | None = None
         ) -> Detection:  # fmt: skip
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    poly = ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]))
    cls = LayerClass.from_layers(layers) if layers else LayerClass.FEW
    return Detection("graphene", cls or LayerClass.FEW, 0.8, poly, box, float(mask.sum()),
                     layer_count=layers, contrast_rgb=contrast, mask=mask)  # fmt: skip


def test_union_rules_on_masks() -> None:
    shape = (100, 100)
    a = _square(5, 5, 20, shape)
    left, right = _square(40, 40, 20, shape), _square(40, 60, 20, shape)
    left[40:60, 40:60] = True
    whole = left | right
    # 1. found by both: nothing added; 2. missed: added
    t = [_det(a, 1)]
    n = [_det(_square(6, 6, 20, shape), 1), _det(_square(70, 5, 15, shape), 2)]
    got = merge_union(t, n, shape)
    assert [d.bbox_px[:2] for d in got] == [(5.0, 5.0), (5.0, 70.0)]
    # 3. cut apart: two terrace pieces of one thickness inside one network instance -> replaced
    got = merge_union([_det(left, 2), _det(right, 2)], [_det(whole, 2)], shape)
    assert len(got) == 1 and got[0].area_px == whole.sum()
    # ... but two terraces of different thickness stay two
    got = merge_union([_det(left, 1), _det(right, 2)], [_det(whole, 2)], shape)
    assert sorted(d.layer_count for d in got) == [1, 2] and len(got) == 2
    # 4. joined: one terrace holding two network instances of different thickness -> replaced
    got = merge_union([_det(whole, 2)], [_det(left, 1), _det(right, 2)], shape)
    assert sorted(d.area_px for d in got) == [left.sum(), right.sum()]
    # ... the same thickness: the terrace detection stays
    got = merge_union([_det(whole, 2)], [_det(left, 2), _det(right, 2)], shape)
    assert len(got) == 1 and got[0].area_px == whole.sum()
    # a network instance half covered by a terrace detection adds nothing
    got = merge_union([_det(left, 1)], [_det(_square(40, 50, 20, shape), 1)], shape)
    assert len(got) == 1


def test_same_call() -> None:
    m = _square(0, 0, 4, (10, 10))
    assert same_call(_det(m, 2), _det(m, 2)) and not same_call(_det(m, 2), _det(m, 3))
    assert same_call(_det(m, None, (-0.1, -0.1, -0.05)), _det(m, None, (-0.12, -0.11, -0.05)))
    assert not same_call(_det(m, None, (-0.1, -0.1, -0.05)), _det(m, None, (-0.2, -0.1, -0.05)))
    assert not same_call(_det(m, 2), _det(m, None, (-0.1, -0.1, -0.05)))


@pytest.mark.parametrize("bad", [np.zeros((50, 60, 3), np.uint8), np.full((50, 60, 3), 255, np.uint8)])
def test_union_on_black_and_white_images_finds_nothing(bad: np.ndarray) -> None:
    union = TerraceUnionDetector(_FakeNet([_square(10, 10, 20, (50, 60))]), TerraceDetector())
    assert union.detect_batch([bad], CTX) == [[]]
    assert any("no flakes searched" in n for n in union.notes)
