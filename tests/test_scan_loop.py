from __future__ import annotations

import pytest

from _scanfakes import MemoryStore, RectChip, ThresholdDetector, flake_key, render_rects
from flakefinder.domain import ImagingContext
from flakefinder.errors import StageLimitError
from flakefinder.hardware.protocols import StageLimits
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.focus import FocusMap
from flakefinder.scan.loop import run_scan
from flakefinder.scan.plan import plan_raster

# 64 x 64 px at 1 µm/px: fov 64 µm, overlap 0.25 -> step 48 µm, overlap strip 16 µm wide.
FOV = 64.0
CTX = ImagingContext(um_per_px=1.0)


def setup(flakes, chip_w=160.0, chip_h=100.0, **kw):
    chip = RectChip(chip_w, chip_h, flakes=tuple(flakes))
    m = simulated_microscope(chip, renderer=render_rects, shape_px=(64, 64), um_per_px=1.0, **kw)
    plan = plan_raster([(0, 0), (chip_w, chip_h)], FOV, FOV, overlap=0.25)
    return m, plan


def scan(m, plan, store=None, detector=None, **kw):
    store = store if store is not None else MemoryStore()
    summary = run_scan(
        m, detector or ThresholdDetector(), store, 1, plan, CTX, progress=False, **kw
    )
    return store, summary


def test_every_tile_visited_once_in_plan_order():
    m, plan = setup([(20, 20, 30, 30)])
    store, s = scan(m, plan)
    assert len(plan) == 6  # 3 columns x 2 rows
    assert store.record_order == [t.index for t in plan]
    assert m.camera.frame_counter == len(plan)
    assert s.tiles_done == 6 and s.tiles_skipped == 0 and s.tiles_total == 6
    assert store.finished == {1}
    for t in plan:
        rec = store.tiles[1][t.index]
        assert (rec.x_um, rec.y_um) == (t.x_um, t.y_um)
        assert (rec.width_px, rec.height_px, rec.um_per_px) == (64, 64, 1.0)
    assert s.wall_s >= s.detect_s >= 0 and s.wait_s >= 0 and s.capture_s > 0
    assert 0.0 <= s.outside_detection_share <= 1.0


def test_flake_position_in_chip_um():
    m, plan = setup([(20, 20, 30, 28)])
    store, s = scan(m, plan)
    [f] = store.flakes[1]
    assert f.bbox_um == pytest.approx((20.0, 20.0, 30.0, 28.0))
    assert f.area_um2 == pytest.approx(80.0)
    assert f.centroid_um == pytest.approx((25.0, 24.0))
    assert f.detector == "fake-threshold" and f.detector_version == "1"


def test_flake_inside_overlap_strip_stored_once():
    m, plan = setup([])
    t0, t1 = plan[0], plan[1]
    left_edge_t1 = t1.x_um - FOV / 2
    right_edge_t0 = t0.x_um + FOV / 2
    x0 = left_edge_t1 + 4
    assert x0 + 6 < right_edge_t0 - 2
    m, plan = setup([(x0, 10, x0 + 6, 16)])
    store, s = scan(m, plan)
    assert len(store.flakes[1]) == 1
    assert s.duplicates_merged == 1
    assert store.flakes[1][0].tile_index == 0  # first in plan order is kept


def test_flake_cut_by_border_stored_from_tile_that_sees_it_whole():
    m, plan = setup([])
    t0 = plan[0]
    right_edge_t0 = t0.x_um + FOV / 2
    # flake crosses tile 0's right border but lies inside tile 1
    rect = (right_edge_t0 - 5, 12, right_edge_t0 + 7, 20)
    m, plan = setup([rect])
    store, s = scan(m, plan)
    [f] = store.flakes[1]
    assert f.tile_index == 1
    assert f.bbox_um == pytest.approx(rect)
    assert f.area_um2 == pytest.approx(12 * 8)
    assert s.border_dropped == 1 and s.duplicates_merged == 0


def test_large_flake_across_both_borders_stored_once():
    m, plan = setup([])
    t0, t1 = plan[0], plan[1]
    rect = (t0.x_um - 10, 12, t1.x_um + 10, 20)  # wider than the overlap strip both ways
    m, plan = setup([rect])
    store, s = scan(m, plan)
    assert len(store.flakes[1]) == 1
    assert s.duplicates_merged == 1


def test_focus_map_sets_z_per_tile():
    m, plan = setup([])
    fmap = FocusMap(1.0, 0.01, 0.02)
    store, _ = scan(m, plan, focus_map=fmap)
    for t in plan:
        assert store.tiles[1][t.index].z_um == pytest.approx(fmap.z_at(t.x_um, t.y_um))


def test_images_saved(tmp_path):
    m, plan = setup([(20, 20, 30, 30)])
    store, _ = scan(m, plan, image_dir=tmp_path)
    paths = [store.tiles[1][t.index].image_path for t in plan]
    assert all(p is not None and p.endswith(".png") for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"tile_{i:05d}.png" for i in range(6)]
    store2, _ = scan(m, plan, image_dir=tmp_path / "x", save_images=False)
    assert all(r.image_path is None for r in store2.tiles[1].values())


FLAKES = [
    (5, 5, 12, 14),  # tile 0 only
    (50, 10, 58, 18),  # overlap strip tiles 0/1
    (60, 30, 75, 40),  # crosses tile 0 border
    (100, 50, 140, 60),  # big, over tiles 1/2 and rows
    (30, 45, 38, 70),  # row overlap
    (140, 80, 150, 95),
]


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_interrupted_then_resumed_equals_uninterrupted(k):
    m, plan = setup(FLAKES)
    ref, ref_summary = scan(m, plan)
    want = sorted(flake_key(f) for f in ref.flakes[1])
    assert len(want) == ref_summary.flakes_stored >= 5

    m2, _ = setup(FLAKES)
    store = MemoryStore()
    with pytest.raises(KeyboardInterrupt):
        scan(m2, plan, store=store, detector=ThresholdDetector(interrupt_at=k))
    assert store.interrupted == [1] and store.finished == set()
    assert store.completed_tiles(1) == {t.index for t in plan[:k]}

    m3, _ = setup(FLAKES)
    _, s = scan(m3, plan, store=store)
    assert s.tiles_skipped == k and s.tiles_done == len(plan) - k
    assert m3.camera.frame_counter == len(plan) - k
    assert sorted(flake_key(f) for f in store.flakes[1]) == want
    assert store.finished == {1}


def test_crash_in_store_marks_interrupted():
    class Boom(MemoryStore):
        def record_tile(self, scan_id, tile, flakes):
            if tile.tile_index == 2:
                raise RuntimeError("disk full")
            super().record_tile(scan_id, tile, flakes)

    m, plan = setup(FLAKES)
    store = Boom()
    with pytest.raises(RuntimeError, match="disk full"):
        scan(m, plan, store=store)
    assert store.interrupted == [1]
    _, s = scan(setup(FLAKES)[0], plan, store=MemoryStore())
    assert s.tiles_done == 6


def test_plan_outside_stage_limits_refused_before_moving():
    m, plan = setup([], limits=StageLimits(0, 100, 0, 100))
    with pytest.raises(StageLimitError):
        scan(m, plan)
    assert m.stage.moves == 0


def test_progress_bar_runs():
    m, plan = setup([(20, 20, 30, 30)])
    store = MemoryStore()
    s = run_scan(m, ThresholdDetector(), store, 1, plan, CTX, progress=True)
    assert s.tiles_done == 6
