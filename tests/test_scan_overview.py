"""The overview pass's analysis on virtual chips with known edges, residue and empty areas."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from flakefinder.hardware.objectives import DEFAULT_OBJECTIVES
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.overview import OverviewError, OverviewFrame, analyse_overview, stitch
from flakefinder.scan.plan import plan_raster
from flakefinder.synth.chip import VirtualChip, random_chip

SIDE = 1200.0


def overview(chip: VirtualChip, area=(-200.0, -200.0, SIDE + 200, SIDE + 200), seed=0):
    m = simulated_microscope(
        chip, objectives=DEFAULT_OBJECTIVES, objective="5x", chip_edge=True, seed=seed
    )
    frames = []
    x0, y0, x1, y1 = area
    for t in plan_raster([(x0, y0), (x1, y1)], 2048.0, 2048.0, 0.1):
        m.stage.move_xy_um(t.x_um, t.y_um)
        frames.append(OverviewFrame(m.camera.snap(), t.x_um, t.y_um))
    return stitch(frames, 2.0, (0.0, 0.0, chip.width_um, chip.height_um))


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("seed", [2, 3])
def test_chip_outline_and_tape_residue(seed: int) -> None:
    chip = random_chip(SIDE, SIDE, ("graphene", "hBN"), flakes_per_mm2=30, seed=seed)
    mosaic = overview(chip, seed=seed)
    a = analyse_overview(mosaic, search_fov_um=(512.0, 512.0))
    assert a.chip_rect_um == (0.0, 0.0, SIDE, SIDE)  # to the pixel (2 µm)
    corners = np.array(sorted(a.chip_corners_um))
    assert corners == pytest.approx(np.array([(1, 1), (1, SIDE - 1), (SIDE - 1, 1), (SIDE - 1, SIDE - 1)]))
    truth = [d.bbox_um for d in chip.debris if d.kind == "residue"]
    assert truth and a.residue_um
    assert all(any(overlaps(t, r) for r in a.residue_um) for t in truth)  # every patch found
    assert all(any(overlaps(r, t) for t in truth) for r in a.residue_um)  # nothing else
    assert a.region.rect_um == (10.0, 10.0, SIDE - 10, SIDE - 10)
    assert [e.kind for e in a.region.exclusions] == ["residue"] * len(a.residue_um)
    assert mosaic.picture.shape == (1024, 1024, 3)


def test_empty_areas_are_left_out() -> None:
    full = random_chip(SIDE, SIDE, ("graphene",), flakes_per_mm2=60, seed=5)
    # keep the flakes and particles of the left half only: the right half is bare substrate
    chip = replace(
        full,
        flakes=tuple(f for f in full.flakes if f.bbox_um[2] < 500),
        debris=tuple(d for d in full.debris if d.kind == "particle" and d.bbox_um[2] < 500),
    )
    a = analyse_overview(overview(chip), search_fov_um=(300.0, 300.0))
    assert a.residue_um == ()
    assert len(a.empty_um) >= 10, "the bare half has empty search tiles"
    for r in a.empty_um:  # no known flake in an area called empty
        assert not any(overlaps(f.bbox_um, r) for f in chip.flakes), r
    assert sum(r[0] >= 500 for r in a.empty_um) >= 10
    from flakefinder.scan.region import plan_region

    tiles = plan_region(a.region, 300.0, 300.0)
    assert len(tiles) == len(plan_region(replace(a.region, exclusions=()), 300, 300)) - len(a.empty_um)


def test_no_chip_in_view_is_a_clear_error() -> None:
    chip = random_chip(SIDE, SIDE, ("graphene",), seed=1)
    def far():
        return overview(chip, area=(5000.0, 5000.0, 6000.0, 6000.0))

    with pytest.raises(OverviewError, match="do not cover where the chip should be"):
        analyse_overview(far(), search_fov_um=(512.0, 512.0))
    blank = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(OverviewError, match="frames are dark"):
        stitch([OverviewFrame(blank, 0.0, 0.0)], 2.0)
    with pytest.raises(OverviewError, match="same size"):
        stitch([OverviewFrame(blank + 100, 0.0, 0.0), OverviewFrame(blank[:32], 0.0, 0.0)], 2.0)
