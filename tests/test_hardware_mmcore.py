from __future__ import annotations

import numpy as np
import pytest

from _scanfakes import RectChip, render_rects

pytest.importorskip("pymmcore_plus.experimental.unicore")

from flakefinder.errors import FlakefinderError, StageLimitError
from flakefinder.hardware.mmcore import (
    MicroscopeConfigError,
    MMCoreMicroscope,
    mm_image_to_rgb8,
    mmcore_microscope,
)
from flakefinder.hardware.protocols import StageLimits
from flakefinder.hardware.unicore_devices import rgb8_to_format, simulated_unicore

CHIP = RectChip(200.0, 100.0, flakes=((10.0, 10.0, 20.0, 20.0),))


def core_for(pixel_format="rgb8", **kw):
    return simulated_unicore(
        CHIP,
        pixel_format=pixel_format,
        renderer=render_rects,
        shape_px=(24, 40),
        um_per_px=0.5,
        **kw,
    )


def test_moves_focus_and_pixel_size_through_unicore():
    m = mmcore_microscope(core=core_for(focus_plane_um=(2.0, 0.0, 0.0)))
    assert isinstance(m, MMCoreMicroscope)
    m.stage.move_xy_um(15.0, 12.5)
    m.stage.wait_for_xy()
    assert m.stage.get_xy_um() == (15.0, 12.5)
    assert m.focus.get_z_um() == pytest.approx(2.0)
    m.focus.move_z_um(3.25)
    assert m.focus.get_z_um() == 3.25
    assert m.camera.um_per_px == 0.5
    assert m.camera.shape_px == (24, 40)
    m.camera.set_exposure_ms(20.0)
    assert m.camera.exposure_ms == 20.0


@pytest.mark.parametrize("fmt", ["rgb8", "gray8", "gray16", "rgb32"])
def test_snap_gives_rgb8_for_every_pixel_format(fmt):
    m = mmcore_microscope(core=core_for(fmt))
    m.stage.move_xy_um(15.0, 15.0)
    img = m.camera.snap()
    assert img.shape == (24, 40, 3) and img.dtype == np.uint8
    assert img[12, 20].tolist() == [120, 120, 120]  # flake at the centre
    assert img[0, 0].tolist() == [200, 200, 200]


def test_stage_limits_enforced_before_core():
    m = mmcore_microscope(core=core_for(), limits=StageLimits(0, 100, 0, 100))
    with pytest.raises(StageLimitError, match=r"\(150, 0\)"):
        m.stage.move_xy_um(150, 0)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(MicroscopeConfigError, match="not found"):
        mmcore_microscope(tmp_path / "nope.cfg")
    with pytest.raises(FlakefinderError, match="configuration"):
        mmcore_microscope()


def test_rgb32_and_grey_conversion():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]] * 8, np.uint8).repeat(4, axis=1)
    packed = rgb8_to_format(rgb, "rgb32")
    assert packed.dtype == np.uint32 and packed.ndim == 2
    assert np.array_equal(mm_image_to_rgb8(packed, 4), rgb)
    grey16 = np.full((8, 8), 4095, np.uint16)  # 12-bit camera full scale
    assert mm_image_to_rgb8(grey16, 1)[0, 0].tolist() == [255, 255, 255]
    assert mm_image_to_rgb8(rgb8_to_format(rgb, "gray16"), 1)[0, 0].tolist() == [20, 20, 20]


def turret_core(**kw):
    from flakefinder.hardware.objectives import Objective

    objs = (Objective("5x", 2.0, 0.14), Objective("20x", 0.5, 0.42), Objective("100x", None, 0.7))
    return core_for(objectives=objs, objective="5x", **kw)


def test_turret_reads_pixel_size_configurations_and_the_objective_device():
    from flakefinder.hardware.mmcore import MMCoreTurret, objective_device
    from flakefinder.hardware.objectives import Objective, ObjectiveError, switch_objective

    core = turret_core()
    assert objective_device(core) == "Objective"
    assert sorted(core.getAvailablePixelSizeConfigs()) == ["Res20x", "Res5x"]  # 100x has none
    overrides = [Objective("20x", None, 0.40, focus_offset_um=2.0, setup_profile="s20.json")]
    m = mmcore_microscope(core=core, objectives=overrides)
    assert isinstance(m.turret, MMCoreTurret)
    assert [(o.name, o.um_per_px) for o in m.turret.objectives] == [
        ("5x", 2.0), ("20x", 0.5), ("100x", None)
    ]  # fmt: skip
    assert m.objective == "5x" and m.camera.um_per_px == 2.0
    obj = switch_objective(m, "20x")
    assert (obj.numerical_aperture, obj.setup_profile) == (0.40, "s20.json")
    assert core.getStateLabel("Objective") == "20x"
    assert m.camera.um_per_px == 0.5 and m.focus.get_z_um() == pytest.approx(2.0)
    m.stage.move_xy_um(15.0, 15.0)
    assert m.camera.snap().shape == (24, 40, 3)  # the simulated camera now renders at 20x
    with pytest.raises(ObjectiveError, match="'100x' has no pixel size"):
        switch_objective(m, "100x")
    assert core.getStateLabel("Objective") == "20x"


def test_turret_selected_by_state_index_and_unknown_device():
    from flakefinder.hardware.mmcore import MMCoreTurret

    core = turret_core()
    core.definePixelSizeConfig("ByState", "Objective", "State", "2")
    core.setPixelSizeUm("ByState", 0.1)
    turret = MMCoreTurret(core, "Objective")
    assert [o.um_per_px for o in turret.objectives] == [2.0, 0.5, 0.1]
    plain = core_for()
    with pytest.raises(MicroscopeConfigError, match="cannot tell which state device"):
        mmcore_microscope(core=plain, objectives=())
