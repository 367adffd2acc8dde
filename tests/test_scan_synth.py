"""Integration: simulated microscope + real flakefinder.synth renderer + scan loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import flakefinder.synth.chip as synth_chip
import flakefinder.synth.render as synth_render
from _scanfakes import MemoryStore, flake_key
from flakefinder.domain import Detection, ImagingContext, LayerClass
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.focus import autofocus
from flakefinder.scan.loop import run_scan
from flakefinder.scan.plan import plan_raster

NOISELESS = synth_render.RenderSettings(noise_sigma=0.0, full_well_e=0.0, inhomogeneity=0.0)


def square(x0, y0, x1, y1):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def chip():
    VirtualChip, SynthFlake, Terrace = (
        synth_chip.VirtualChip,
        synth_chip.SynthFlake,
        synth_chip.Terrace,
    )
    flakes = [
        SynthFlake(1, "graphene", (Terrace(square(10, 10, 20, 18), 30),)),
        SynthFlake(2, "graphene", (Terrace(square(28, 20, 40, 30), 30),)),  # across tiles
        SynthFlake(3, "graphene", (Terrace(square(45, 40, 55, 52), 30),)),
    ]
    return VirtualChip(64.0, 64.0, 90.0, ("graphene",), tuple(flakes), (), 0)


class DeviationDetector:
    """Test detector: pixels deviating from the frame median -> one detection per blob."""

    name = "deviation"
    version = "1"

    def __init__(self, interrupt_at=None):
        self.calls = 0
        self.interrupt_at = interrupt_at

    def detect(self, image, context):
        if self.calls == self.interrupt_at:
            self.calls += 1
            raise KeyboardInterrupt
        self.calls += 1
        a = image.astype(float)
        dev = np.abs(a - np.median(a.reshape(-1, 3), axis=0)).sum(axis=2)
        labels, _ = ndimage.label(dev > 25)
        out = []
        for sl in ndimage.find_objects(labels):
            y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            if (x1 - x0) * (y1 - y0) < 20:
                continue
            poly = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
            out.append(
                Detection(
                    "graphene",
                    LayerClass.THICK,
                    0.9,
                    tuple((float(x), float(y)) for x, y in poly),
                    (float(x0), float(y0), float(x1), float(y1)),
                    float((x1 - x0) * (y1 - y0)),
                )
            )
        return out


def scope(**kw):
    kw.setdefault("settings", NOISELESS)
    return simulated_microscope(chip(), shape_px=(80, 80), um_per_px=0.5, **kw)


def test_sim_camera_renders_synth_chip():
    m = scope(settings=None)
    m.stage.move_xy_um(15, 14)
    img = m.camera.snap()
    assert img.shape == (80, 80, 3) and img.dtype == np.uint8
    assert np.abs(img[40, 40].astype(int) - img[2, 2].astype(int)).sum() > 30  # flake vs substrate
    bright = img.mean()
    m.camera.set_exposure_ms(5.0)
    assert m.camera.snap().mean() == pytest.approx(bright / 2, rel=0.1)


def test_autofocus_on_synth_chip_with_tilt():
    m = scope(focus_plane_um=(1.7, 0.01, 0.0))
    m.stage.move_xy_um(34, 25)
    m.focus.move_z_um(-2.0)
    r = autofocus(m, coarse_range_um=10.0, coarse_step_um=1.0, fine_step_um=0.25, downsample=1)
    assert abs(r.z_um - (1.7 + 0.34)) <= 0.25


def test_scan_resume_on_synth_chip_matches_uninterrupted():
    plan = plan_raster([(0, 0), (64, 64)], 40.0, 40.0, overlap=0.25)
    ctx = ImagingContext(um_per_px=0.5)
    ref = MemoryStore()
    s = run_scan(scope(), DeviationDetector(), ref, 7, plan, ctx, progress=False)
    assert s.tiles_done == len(plan) == 4
    assert s.flakes_stored == 3
    store = MemoryStore()
    with pytest.raises(KeyboardInterrupt):
        run_scan(scope(), DeviationDetector(interrupt_at=2), store, 7, plan, ctx, progress=False)
    run_scan(scope(), DeviationDetector(), store, 7, plan, ctx, progress=False)
    assert sorted(map(flake_key, store.flakes[7])) == sorted(map(flake_key, ref.flakes[7]))
