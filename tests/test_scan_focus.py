from __future__ import annotations

import numpy as np
import pytest

from _scanfakes import RectChip, render_rects
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.focus import FocusMap, autofocus, focus_points, measure_focus_map, sharpness

TEXTURED = RectChip(400.0, 400.0, texture=True)


def scope(plane=(3.3, 0.0, 0.0)):
    return simulated_microscope(
        TEXTURED, renderer=render_rects, shape_px=(64, 64), um_per_px=0.5, focus_plane_um=plane
    )


def test_sharpness_falls_with_defocus():
    m = scope()
    values = []
    for dz in (0.0, 1.0, 2.0, 4.0):
        m.focus.move_z_um(3.3 + dz)
        values.append(sharpness(m.camera.snap(), downsample=1))
    assert values == sorted(values, reverse=True)
    flat = np.full((32, 32, 3), 100, np.uint8)
    assert sharpness(flat) == 0.0


def test_autofocus_finds_focal_plane_within_fine_step():
    m = scope()
    m.focus.move_z_um(0.0)
    result = autofocus(m, coarse_range_um=20.0, coarse_step_um=2.0, fine_step_um=0.25, downsample=1)
    assert abs(result.z_um - 3.3) <= 0.25
    assert m.focus.get_z_um() == result.z_um
    assert result.n_frames == 11 + 17


def test_focus_map_recovers_tilt_exactly():
    truth = FocusMap(12.5, 0.003, -0.0015)
    pts = [(x, y, truth.z_at(x, y)) for x, y in focus_points((0, 0, 5000, 3000), grid=3)]
    fit = FocusMap.fit(pts)
    assert fit.z0_um == pytest.approx(12.5, abs=1e-9)
    assert fit.dz_dx == pytest.approx(0.003, abs=1e-12)
    assert fit.dz_dy == pytest.approx(-0.0015, abs=1e-12)
    assert np.allclose(fit.residuals_um(pts), 0.0, atol=1e-9)
    corners_center = [(0, 0), (5000, 0), (0, 3000), (5000, 3000), (2500, 1500)]
    fit2 = FocusMap.fit([(x, y, truth.z_at(x, y)) for x, y in corners_center])
    assert fit2.z_at(1234, 567) == pytest.approx(truth.z_at(1234, 567), abs=1e-9)


def test_focus_map_degenerate_points_give_flat_map():
    assert FocusMap.fit([(0, 0, 2.0), (10, 0, 4.0)]) == FocusMap(3.0)
    assert FocusMap.fit([(0, 0, 1.0), (1, 1, 2.0), (2, 2, 3.0)]).dz_dx == 0.0
    with pytest.raises(ValueError):
        FocusMap.fit([])


def test_measure_focus_map_on_tilted_sim_chip():
    m = scope(plane=(2.0, 0.004, -0.002))
    pts = focus_points((50, 50, 350, 350), grid=2)
    fmap, measured = measure_focus_map(
        m, pts, coarse_range_um=8.0, coarse_step_um=1.0, fine_step_um=0.25, downsample=1
    )
    assert len(measured) == 4
    for x, y, z in measured:
        assert abs(z - (2.0 + 0.004 * x - 0.002 * y)) <= 0.25
    assert abs(fmap.dz_dx - 0.004) < 0.002 and abs(fmap.dz_dy + 0.002) < 0.002
