"""Stack geometry: exact overlaps, twist angles and a GDSII file that reads back."""

from __future__ import annotations

import math

import gdstk
import numpy as np
import pytest

from flakefinder.design.geometry import (
    StackLayer,
    edge_orientation_deg,
    overlap_area_um2,
    place,
    summarize,
    to_gds,
    twist_deg,
)
from flakefinder.geometry import polygon_area

SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))


def hexagon(
    r: float, angle_deg: float, cx: float = 0.0, cy: float = 0.0
) -> tuple[tuple[float, float], ...]:
    return tuple(
        (
            cx + r * math.cos(math.radians(angle_deg + 60 * k)),
            cy + r * math.sin(math.radians(angle_deg + 60 * k)),
        )
        for k in range(6)
    )


def test_place_moves_centroid_and_rotates() -> None:
    p = place(SQUARE, 100.0, 50.0, 90.0)
    np.testing.assert_allclose(p.mean(axis=0), [100.0, 50.0], atol=1e-12)
    np.testing.assert_allclose(p[0], [105.0, 45.0], atol=1e-12)  # (-5,-5) rotated by 90°
    assert polygon_area(p) == pytest.approx(100.0)


def test_overlap_of_shifted_squares_is_exact() -> None:
    a = place(SQUARE, 0.0, 0.0, 0.0)
    b = place(SQUARE, 4.0, 3.0, 0.0)
    assert overlap_area_um2([a, b]) == pytest.approx(6.0 * 7.0, abs=1e-6)
    assert overlap_area_um2([a, place(SQUARE, 20.0, 0.0, 0.0)]) == 0.0


def test_edge_orientation_and_twist() -> None:
    for angle in (0.0, 7.0, 45.0):
        got = edge_orientation_deg(hexagon(5, angle))
        assert min(abs(got - angle % 60), 60 - abs(got - angle % 60)) < 1e-9
    # a hexagon with vertices at 0°, 60°... has edges at 120°, 180°, ... -> orientation 0 (mod 60)
    a = StackLayer(1, "graphene", 1, hexagon(5, 10.0))
    b = StackLayer(2, "graphene", 1, hexagon(5, 10.0), rotation_deg=1.1)
    assert twist_deg(a, b) == pytest.approx(1.1, abs=1e-9)
    c = StackLayer(3, "hBN", 20, hexagon(5, 10.0), rotation_deg=-1.1 + 60.0)
    assert twist_deg(a, c) == pytest.approx(-1.1, abs=1e-9)


def test_summary_of_a_three_layer_stack() -> None:
    layers = [
        StackLayer(1, "hBN", 30, SQUARE, 0.0, 0.0),
        StackLayer(2, "graphene", 1, SQUARE, 5.0, 0.0),
        StackLayer(3, "hBN", 30, SQUARE, 5.0, 5.0),
    ]
    s = summarize(layers)
    assert s.areas_um2 == pytest.approx((100.0, 100.0, 100.0))
    assert [p.overlap_um2 for p in s.pairs] == pytest.approx([50.0, 50.0], abs=1e-6)
    assert s.stack_overlap_um2 == pytest.approx(25.0, abs=1e-6)


def test_gds_export_reads_back(tmp_path) -> None:
    layers = [
        StackLayer(7, "hBN", 30, SQUARE, 0, 0),
        StackLayer(9, "graphene", 1, SQUARE, 5, 0, 30.0),
    ]
    data = to_gds(layers, "my design!")
    path = tmp_path / "d.gds"
    path.write_bytes(data)
    lib = gdstk.read_gds(str(path))
    [cell] = lib.top_level()
    assert cell.name == "my_design_"
    by_layer = {}
    for poly in cell.polygons:
        by_layer.setdefault(poly.layer, []).append(poly)
    assert sorted(by_layer) == [1, 2, 100]
    assert by_layer[1][0].area() == pytest.approx(100.0, abs=1e-3)
    assert sum(p.area() for p in by_layer[100]) == pytest.approx(
        overlap_area_um2([lay.placed() for lay in layers]), abs=1e-3
    )
    assert sorted(lbl.text for lbl in cell.labels) == ["#7 hBN 30L", "#9 graphene 1L"]


def test_place_rejects_degenerate_outline() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        place(((0, 0), (1, 1)), 0, 0, 0)
