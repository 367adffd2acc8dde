"""Masks from clicks (region growing) and outlines for the Setup page."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.calibration.regions import grow_region, mask_outline, polygon_mask
from flakefinder.errors import CalibrationError
from setup_helpers import centre, rendered


def test_click_recovers_every_rendered_flake() -> None:
    images, truth = rendered()
    assert sorted({n for _, _, n in truth}) == [1, 2, 3]
    for k, mask, n in truth:
        x, y = centre(mask)
        grown = grow_region(images[k], x, y)
        iou = (grown & mask).sum() / (grown | mask).sum()
        assert iou > 0.97, (k, n, iou)  # measured: 0.975 (faintest monolayer) to 1.0


def test_click_on_substrate_or_outside_is_refused() -> None:
    images, truth = rendered()
    with pytest.raises(CalibrationError, match="substrate"):
        grow_region(images[0], 70, 90)  # bare substrate between four flakes
    with pytest.raises(CalibrationError, match="outside"):
        grow_region(images[0], 240, 10)
    with pytest.raises(CalibrationError, match="uint8"):
        grow_region(images[0].astype(np.float32), 5, 5)
    x, y = centre(truth[0][1])
    with pytest.raises(CalibrationError, match="spreads over"):
        grow_region(images[0], x, y, tolerance=255)  # everything is "close": not one flake


def test_polygon_mask_and_outline() -> None:
    mask = polygon_mask((20, 30), [(5, 4), (14, 4), (14, 9), (5, 9)])
    assert mask.sum() == 10 * 6 and mask[4, 5] and mask[9, 14] and not mask[10, 14]
    outline = mask_outline(mask)
    assert sorted(outline) == [(5, 4), (5, 9), (14, 4), (14, 9)]
    with pytest.raises(CalibrationError, match="three"):
        polygon_mask((20, 30), [(1, 1), (5, 5)])
    with pytest.raises(CalibrationError, match="finite"):
        polygon_mask((20, 30), [(1, 1), (5, float("nan")), (1, 5)])
    with pytest.raises(CalibrationError, match="no pixel"):
        polygon_mask((20, 30), [(100, 100), (120, 100), (120, 120)])
