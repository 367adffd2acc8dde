"""Letterbox geometry: exact round trips for points, boxes and masks (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.detect.letterbox import (
    letterbox,
    letterbox_boxes,
    letterbox_geometry,
    letterbox_points,
    unletterbox_boxes,
    unletterbox_mask,
    unletterbox_points,
)


@pytest.mark.parametrize(
    ("h", "w", "size", "expected"),
    [
        (100, 200, 128, (128, 64, 0.64, (0, 32))),
        (200, 100, 128, (64, 128, 0.64, (32, 0))),
        (128, 128, 128, (128, 128, 1.0, (0, 0))),
        (64, 32, 128, (64, 128, 2.0, (32, 0))),
    ],
)
def test_geometry(h: int, w: int, size: int, expected: tuple) -> None:
    assert letterbox_geometry(h, w, size) == expected


def test_letterbox_pads_with_zeros_and_keeps_dtype() -> None:
    img = np.full((100, 200, 3), 7, dtype=np.uint16)
    padded, scale, pad = letterbox(img, 128)
    assert padded.shape == (128, 128, 3) and padded.dtype == np.uint16
    assert scale == 0.64 and pad == (0, 32)
    assert (padded[:32] == 0).all() and (padded[96:] == 0).all()
    assert (padded[32:96] == 7).all()


def test_letterbox_grey_and_bool() -> None:
    grey, _, _ = letterbox(np.ones((50, 25), dtype=np.uint8), 64)
    assert grey.shape == (64, 64) and grey[:, 16:48].all() and not grey[:, :16].any()
    m, _, _ = letterbox(np.ones((50, 25), dtype=bool), 64)
    assert m.dtype == np.bool_ and int(m.sum()) == 64 * 32


def test_points_and_boxes_round_trip() -> None:
    rng = np.random.default_rng(1)
    for h, w in [(100, 200), (333, 77), (1024, 1024), (20, 3000)]:
        _, _, scale, pad = letterbox_geometry(h, w, 1024)
        pts = rng.uniform(0, [w, h], size=(50, 2))
        np.testing.assert_allclose(
            unletterbox_points(letterbox_points(pts, scale, pad), scale, pad), pts, atol=1e-9
        )
        boxes = np.sort(rng.uniform(0, min(h, w), size=(20, 4)), axis=1)[:, [0, 1, 2, 3]]
        back = unletterbox_boxes(letterbox_boxes(boxes, scale, pad), scale, pad, (h, w))
        np.testing.assert_allclose(back, boxes, atol=1e-9)


def test_letterboxed_pixels_land_where_points_map() -> None:
    img = np.zeros((100, 200), dtype=np.uint8)
    img[40:60, 100:140] = 255  # a 40 x 20 px rectangle
    padded, scale, pad = letterbox(img, 100, nearest=True)  # scale 0.5
    ys, xs = np.nonzero(padded)
    box = letterbox_boxes(np.array([[100, 40, 140, 60]]), scale, pad)[0]
    assert (xs.min(), ys.min()) == (round(box[0]), round(box[1]))
    assert (xs.max() + 1, ys.max() + 1) == (round(box[2]), round(box[3]))


def test_unletterbox_mask_exact_for_integer_scale() -> None:
    mask = np.zeros((64, 32), dtype=bool)
    mask[10:30, 5:20] = True
    padded, _, _ = letterbox(mask, 128)
    back = unletterbox_mask(padded, (64, 32))
    assert back.dtype == np.bool_ and np.array_equal(back, mask)
    prob = padded.astype(np.float32) * 0.9
    assert np.array_equal(unletterbox_mask(prob, (64, 32), threshold=0.5), mask)


def test_clipping_and_errors() -> None:
    out = unletterbox_boxes(np.array([[-10.0, -10.0, 500.0, 500.0]]), 1.0, (0, 0), (100, 200))
    assert out.tolist() == [[0.0, 0.0, 200.0, 100.0]]
    with pytest.raises(ValueError):
        letterbox_geometry(0, 10, 128)
    with pytest.raises(ValueError):
        unletterbox_mask(np.zeros((4, 5)), (4, 5))
