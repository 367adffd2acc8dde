"""Finding 6: a simulated scan resumed in a new process (a fresh simulated microscope) ends
with exactly the flakes of an uninterrupted scan, wherever it was interrupted: a tile's
noise depends only on the chip seed and the tile (its pose), not on how many frames the
process took before."""

from __future__ import annotations

import numpy as np
import pytest

from _scanfakes import MemoryStore, flake_key
from flakefinder.detect.registry import create_detector
from flakefinder.domain import Detection, Detector, ImagingContext
from flakefinder.hardware.protocols import Microscope
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.loop import run_scan
from flakefinder.scan.plan import TilePlan, plan_raster
from flakefinder.synth.chip import VirtualChip, random_chip

SEED = 11
FRAME_PX = 160
UM_PER_PX = 0.5


class StopAt:
    """Wraps a detector; raises KeyboardInterrupt on its ``at``-th call (a Ctrl-C)."""

    def __init__(self, inner: Detector, at: int | None) -> None:
        self.inner, self.at, self.calls = inner, at, 0
        self.name, self.version = inner.name, inner.version

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.detect(image, context)


@pytest.fixture(scope="module")
def chip() -> VirtualChip:
    return random_chip(300.0, 300.0, ("graphene",), flakes_per_mm2=400.0, seed=SEED)


def _scope(chip: VirtualChip) -> Microscope:
    return simulated_microscope(chip, shape_px=(FRAME_PX, FRAME_PX), um_per_px=UM_PER_PX, seed=SEED)


def _plan(chip: VirtualChip) -> list[TilePlan]:
    fov = FRAME_PX * UM_PER_PX
    return plan_raster([(0.0, 0.0), (chip.width_um, chip.height_um)], fov, fov, 0.1)


def _scan(chip: VirtualChip, store: MemoryStore, stop_at: int | None) -> None:
    ctx = ImagingContext(um_per_px=UM_PER_PX, materials=("graphene",))
    det = StopAt(create_detector("contrast"), stop_at)
    run_scan(_scope(chip), det, store, 1, _plan(chip), ctx, progress=False)


@pytest.fixture(scope="module")
def uninterrupted(chip: VirtualChip) -> list[tuple[object, ...]]:
    store = MemoryStore()
    _scan(chip, store, None)
    keys = sorted(map(flake_key, store.flakes[1]))
    assert len(keys) >= 5  # a scan with something to lose
    return keys


def test_same_pose_same_noise_in_a_fresh_camera(chip: VirtualChip) -> None:
    a, b = _scope(chip), _scope(chip)
    a.camera.snap()  # a frame elsewhere first: the counter must not shift the noise
    a.stage.move_xy_um(100.0, 120.0)
    b.stage.move_xy_um(100.0, 120.0)
    first = a.camera.snap()
    assert np.array_equal(first, b.camera.snap())
    assert not np.array_equal(first, a.camera.snap())  # a repeated frame still has new noise


@pytest.mark.parametrize("stops", [(1,), (4,), (2, 3, 5)])
def test_resume_after_interrupts_matches_uninterrupted(
    chip: VirtualChip, uninterrupted: list[tuple[object, ...]], stops: tuple[int, ...]
) -> None:
    store = MemoryStore()
    for at in stops:  # each run is a new process: a fresh microscope, stopped after `at` tiles
        with pytest.raises(KeyboardInterrupt):
            _scan(chip, store, at)
    _scan(chip, store, None)
    assert sorted(map(flake_key, store.flakes[1])) == uninterrupted
