from __future__ import annotations

import numpy as np
import pytest

from _scanfakes import RectChip, render_rects
from flakefinder.errors import StageLimitError
from flakefinder.hardware.protocols import Camera, FocusDrive, StageLimits, XYStage
from flakefinder.hardware.sim import SimStage, frame_seed, simulated_microscope

CHIP = RectChip(200.0, 100.0, flakes=((10.0, 10.0, 20.0, 20.0),))


def make(**kw):
    kw.setdefault("shape_px", (32, 48))
    kw.setdefault("um_per_px", 1.0)
    return simulated_microscope(CHIP, renderer=render_rects, **kw)


def test_devices_implement_protocols():
    m = make()
    assert isinstance(m.stage, XYStage)
    assert isinstance(m.focus, FocusDrive)
    assert isinstance(m.camera, Camera)
    assert m.camera.shape_px == (32, 48)
    assert m.camera.um_per_px == 1.0
    assert m.stage.get_xy_um() == (100.0, 50.0)  # starts at the chip centre


def test_stage_limits_error_names_position_and_limits():
    stage = SimStage(StageLimits(0, 100, 0, 50))
    stage.move_xy_um(100, 50)
    assert stage.get_xy_um() == (100.0, 50.0)
    with pytest.raises(StageLimitError) as err:
        stage.move_xy_um(101.5, 3)
    msg = str(err.value)
    assert "(101.5, 3)" in msg and "x 0..100" in msg and "y 0..50" in msg
    assert stage.get_xy_um() == (100.0, 50.0)  # did not move


def test_default_limits_cover_chip_with_margin():
    m = make()
    assert m.stage.limits == StageLimits(-5000, 5200, -5000, 5100)
    with pytest.raises(StageLimitError):
        m.stage.move_xy_um(6000, 0)


def test_wait_for_xy_honours_move_time_without_sleeping():
    now = [0.0]
    slept: list[float] = []
    stage = SimStage(
        StageLimits(0, 10, 0, 10), move_time_s=0.5, clock=lambda: now[0], sleep=slept.append
    )
    stage.move_xy_um(1, 1)
    now[0] = 0.2
    stage.wait_for_xy()
    assert slept == [pytest.approx(0.3)]
    now[0] = 1.0
    stage.wait_for_xy()
    assert len(slept) == 1  # move already over


def test_snap_renders_chip_at_stage_position():
    m = make()
    m.stage.move_xy_um(15.0, 15.0)
    img = m.camera.snap()
    assert img.shape == (32, 48, 3) and img.dtype == np.uint8
    # the flake (10..20 µm) sits at the image centre: pixel columns 24-5..24+5
    assert img[16, 24, 0] < 150 and img[16, 19, 0] < 150 and img[16, 18, 0] == 200
    assert img[2, 2, 0] == 200


def test_focus_error_is_z_minus_tilted_plane():
    seen = []

    def renderer(chip, x, y, w, h, upp, *, focus_error_um, seed, **kw):
        seen.append(focus_error_um)
        return np.zeros((h, w, 3), np.uint8)

    m = simulated_microscope(
        CHIP, renderer=renderer, shape_px=(16, 16), focus_plane_um=(5.0, 0.01, -0.02)
    )
    assert m.focus.get_z_um() == pytest.approx(5.0 + 0.01 * 100 - 0.02 * 50)  # in focus at start
    m.camera.snap()
    m.stage.move_xy_um(40.0, 10.0)
    m.focus.move_z_um(7.0)
    m.camera.snap()
    assert seen[0] == pytest.approx(0.0)
    assert seen[1] == pytest.approx(7.0 - (5.0 + 0.4 - 0.2))


def test_exposure_scales_brightness():
    m = make()
    m.stage.move_xy_um(150.0, 80.0)  # bare substrate
    assert m.camera.snap()[0, 0, 0] == 200
    m.camera.set_exposure_ms(5.0)
    assert m.camera.snap()[0, 0, 0] == 100
    with pytest.raises(ValueError):
        m.camera.set_exposure_ms(0.0)


def test_frames_deterministic_per_position_seed_and_counter():
    a = make(settings={"noise": 5.0}, seed=3)
    b = make(settings={"noise": 5.0}, seed=3)
    fa = [a.camera.snap() for _ in range(2)]
    fb = [b.camera.snap() for _ in range(2)]
    assert np.array_equal(fa[0], fb[0]) and np.array_equal(fa[1], fb[1])
    assert not np.array_equal(fa[0], fa[1])  # new frame, new noise
    c = make(settings={"noise": 5.0}, seed=4)
    assert not np.array_equal(c.camera.snap(), fa[0])
    assert frame_seed(1, 2.0, 3.0, 0.0, 0) == frame_seed(1, 2.0, 3.0, 0.0, 0)
    assert frame_seed(1, 2.0, 3.0, 0.0, 0) != frame_seed(1, 2.0, 3.0, 0.0, 1)


def test_stage_speed_adds_travel_time_without_sleeping():
    now = [0.0]
    slept: list[float] = []
    stage = SimStage(StageLimits(0, 10_000, 0, 10_000), move_time_s=0.05, speed_um_per_s=10_000,
                     clock=lambda: now[0], sleep=slept.append)  # fmt: skip
    stage.move_xy_um(3000, 4000)  # 5 mm at 10 mm/s, plus the settle time
    stage.wait_for_xy()
    assert slept == [pytest.approx(0.55)]
    with pytest.raises(ValueError, match="speed_um_per_s"):
        SimStage(StageLimits(0, 1, 0, 1), speed_um_per_s=0)
