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
