"""Virtual chips: determinism, geometry, JSON round trip, material validation."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.errors import DatasetError, UnknownMaterialError
from flakefinder.geometry import polygon_area
from flakefinder.synth import (
    BULK_MIN_LAYERS,
    FlakeDistribution,
    VirtualChip,
    load_chip,
    random_chip,
    save_chip,
)
from flakefinder.synth.shapes import clip_halfplane, crystal_polygon


def test_random_chip_is_deterministic_and_seed_dependent():
    a = random_chip(800, 600, ["graphene", "hBN"], seed=3)
    b = random_chip(800, 600, ["graphene", "hBN"], seed=3)
    c = random_chip(800, 600, ["graphene", "hBN"], seed=4)
    assert a == b
    assert a.to_json() == b.to_json()
    assert a != c


def test_flakes_inside_chip_sizes_and_nesting():
    chip = random_chip(2000, 2000, ["MoS2"], flakes_per_mm2=60, seed=1)
    assert len(chip.flakes) > 100
    assert {f.material for f in chip.flakes} == {"MoS2"}
    for f in chip.flakes:
        x0, y0, x1, y1 = f.bbox_um
        assert 0 <= x0 < x1 <= 2000 and 0 <= y0 < y1 <= 2000
        assert max(x1 - x0, y1 - y0) <= 2 * 100 + 1
        layers = [t.n_layers for t in f.terraces]
        assert layers == sorted(layers) and len(set(layers)) == len(layers)  # inner = thicker
        outer = np.asarray(f.terraces[0].polygon_um)
        for t in f.terraces[1:]:  # inner terraces lie inside the outline's bounding box
            p = np.asarray(t.polygon_um)
            assert (p.min(axis=0) >= outer.min(axis=0) - 1e-3).all()
            assert (p.max(axis=0) <= outer.max(axis=0) + 1e-3).all()
    n = np.array([f.n_layers for f in chip.flakes])
    assert (n >= BULK_MIN_LAYERS).sum() > (n == 1).sum()  # many bulk, rare monolayers
    assert any(len(f.terraces) > 1 for f in chip.flakes)
    assert any(d.kind == "residue" for d in chip.debris)
    assert any(d.kind == "particle" for d in chip.debris)


def test_distribution_is_configurable():
    mono_only = FlakeDistribution(
        mono_weight=1, few_weight=0, thick_weight=0, bulk_weight=0, terrace_probability=0.0
    )
    chip = random_chip(1000, 1000, ["graphene"], distribution=mono_only, seed=2)
    assert chip.flakes and all(f.n_layers == 1 and len(f.terraces) == 1 for f in chip.flakes)


def test_crystal_edges_run_at_multiples_of_60_degrees():
    rng = np.random.default_rng(0)
    orientation = 0.3
    for _ in range(20):
        poly = crystal_polygon(rng, (0.0, 0.0), 30.0, orientation, step_deg=60)
        assert polygon_area(poly) > 0
        e = np.diff(np.vstack([poly, poly[:1]]), axis=0)
        e = e[np.linalg.norm(e, axis=1) > 1e-6]
        ang = (np.degrees(np.arctan2(e[:, 1], e[:, 0]) - orientation) - 90.0) % 60.0
        assert np.all(np.minimum(ang, 60.0 - ang) < 1e-6)


def test_clip_halfplane_square():
    sq = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], dtype=float)
    half = clip_halfplane(sq, np.array([1.0, 0.0]), 1.0)
    assert polygon_area(half) == pytest.approx(2.0)
    assert len(clip_halfplane(sq, np.array([1.0, 0.0]), -1.0)) == 0


def test_flakes_in_rect():
    chip = random_chip(1000, 1000, ["graphene"], seed=5)
    assert len(chip.flakes_in_rect(-10, -10, 1010, 1010)) == len(chip.flakes)
    assert chip.flakes_in_rect(2000, 2000, 2100, 2100) == []


def test_chip_json_round_trip(tmp_path):
    chip = random_chip(600, 600, ["graphene", "WTe2"], seed=7)
    path = save_chip(chip, tmp_path / "chip.json")
    again = load_chip(path)
    assert again == chip
    assert VirtualChip.from_json(chip.to_json()) == chip


def test_bad_chip_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"format": "other"}')
    with pytest.raises(DatasetError):
        load_chip(p)
    p.write_text("{not json")
    with pytest.raises(DatasetError):
        load_chip(p)


def test_unknown_material():
    with pytest.raises(UnknownMaterialError, match="unobtainium"):
        random_chip(100, 100, ["graphene", "unobtainium"], seed=0)
