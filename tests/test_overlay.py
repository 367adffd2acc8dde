"""Readable overlays: layer colours, labels beside their flakes that never overlap, a legend."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from flakefinder.detect.overlay import (
    OverlayStyle,
    draw_detections,
    is_thick,
    label_texts,
    layer_colour,
    layer_key,
    layout_labels,
)
from flakefinder.detect.overlay_layout import rects_overlap
from flakefinder.domain import Detection, LayerClass


def _flake(mask: np.ndarray, n: int | None, *, material: str = "graphene") -> Detection:
    ys, xs = np.nonzero(mask)
    cls = LayerClass.from_layers(n) if n is not None else LayerClass.FEW
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    poly = tuple((float(x), float(y)) for x, y in contours[0].reshape(-1, 2))
    return Detection(
        material=material,
        layer_class=cls or LayerClass.THICK,
        confidence=0.87,
        polygon_px=poly,
        bbox_px=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
        area_px=float(mask.sum()),
        layer_count=n,
        mask=mask,
    )


def _crowd(h: int, w: int, n: int, seed: int) -> list[Detection]:
    """``n`` small flakes packed in one spot (a quarter of the image's width), as in a real
    picture where ten labels used to stack on top of each other."""
    rng = np.random.default_rng(seed)
    s = max(h, w) / 1920
    taken = np.zeros((h, w), bool)
    dets: list[Detection] = []
    layers = [1, 2, 3, None, 1, 2, 4, 5, 6, 7, 9, 1, 2, 25]
    while len(dets) < n:
        cx = int(rng.uniform(0.4, 0.6) * w)
        cy = int(rng.uniform(0.4, 0.6) * h)
        r = int(rng.uniform(6, 22) * s)
        mask = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            cv2.circle(mask, (cx, cy), r, 1, -1)
        else:
            cv2.rectangle(mask, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
        m = mask.astype(bool)
        if (m & taken).any():
            continue
        taken |= cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool)
        dets.append(_flake(m, layers[len(dets) % len(layers)]))
    return dets


@pytest.mark.parametrize(("h", "w"), [(1200, 1920), (2048, 2880)])
def test_crowded_labels_never_overlap_and_never_cover_flakes(h: int, w: int) -> None:
    dets = _crowd(h, w, 30, seed=1)
    img = np.full((h, w, 3), (120, 110, 160), np.uint8)
    img[h // 3 : h // 2, w // 4 : w // 3] = 240  # an undetected bulk flake nearby
    labels = layout_labels(dets, (h, w), image=img)
    wanted = [i for i, d in enumerate(dets) if not is_thick(d)]
    assert sorted(lab.index for lab in labels) == wanted  # every thin flake has its label
    for a, b in itertools.combinations(labels, 2):
        assert not rects_overlap(a.rect, b.rect), (a, b)
    for lab in labels:
        x0, y0, x1, y1 = lab.rect
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        for d in dets:
            assert d.mask is not None
            covered = d.mask[y0:y1, x0:x1].sum() / d.mask.sum()
            assert covered <= 0.03, (lab, d.layer_count)
        # the leader line ends on the labelled flake's outline
        mask = dets[lab.index].mask
        assert mask is not None
        ax, ay = lab.anchor
        assert mask[max(ay - 1, 0) : ay + 2, max(ax - 1, 0) : ax + 2].any()


def test_crowded_real_scene_is_drawn_without_error() -> None:
    h, w = 1200, 1920
    img = np.full((h, w, 3), (120, 110, 160), np.uint8)
    out = draw_detections(img, _crowd(h, w, 30, seed=2))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[5:60, 5:120], img[5:60, 5:120])  # legend in a free corner


def test_labels_scale_with_the_image() -> None:
    small = OverlayStyle.for_image(1200, 1920).label_size("2L 0.91")
    large = OverlayStyle.for_image(2048, 2880).label_size("2L 0.91")
    assert 18 <= small[1] <= 40 and large[1] >= 1.3 * small[1]


def test_layer_keys_colours_and_texts() -> None:
    m = np.zeros((20, 20), bool)
    m[5:10, 5:10] = True
    keys = [layer_key(_flake(m, n)) for n in (1, 2, 3, 4, 5, 6, 7, 8, 10, None, 11, 40)]
    assert keys == ["1", "2", "3", "4", "5", "6", "7", "8-10", "8-10", "?", "thick", "thick"]
    colours = [layer_colour(k) for k in ["1", "2", "3", "4", "5", "6", "7", "8-10", "?"]]
    assert len(set(colours)) == len(colours)
    assert label_texts(_flake(m, 2), with_material=False) == ("2L 0.87", "2L", "2")
    assert label_texts(_flake(m, None), with_material=True) == ("? graphene 0.87", "?")
    mono = _flake(m, 1)
    unnumbered = Detection(
        mono.material, LayerClass.MONO, 0.5, mono.polygon_px, mono.bbox_px, mono.area_px
    )
    assert layer_key(unnumbered) == "1"  # a monolayer class is one layer even without a count


def test_thick_flakes_are_faint_and_unlabelled() -> None:
    h, w = 300, 400
    img = np.full((h, w, 3), 100, np.uint8)
    thick = np.zeros((h, w), bool)
    thick[100:200, 150:250] = True
    dets = [_flake(thick, 30)]
    assert layout_labels(dets, (h, w)) == []
    out = draw_detections(img, dets, show_legend=False)
    changed = np.abs(out.astype(int) - img).max(axis=2)
    assert changed.max() > 0  # outlined ...
    assert changed.max() <= 0.4 * (255 - 100) + 1  # ... only half-transparent
    assert changed[150, 200] == 0  # and not tinted inside


def test_no_detections_leaves_the_image_alone() -> None:
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    assert np.array_equal(draw_detections(img, []), img)
