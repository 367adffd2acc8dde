"""Integration: run_scan against the real flakefinder.db.Database (SQLite), with resume."""

from __future__ import annotations

import pytest

import flakefinder.db as db_mod
from _scanfakes import MemoryStore, RectChip, ThresholdDetector, flake_key, render_rects
from flakefinder.domain import ImagingContext
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.loop import run_scan
from flakefinder.scan.plan import plan_raster

FLAKES = ((5, 5, 12, 14), (50, 10, 58, 18), (60, 30, 75, 40), (100, 50, 140, 60), (30, 45, 38, 70))
CTX = ImagingContext(um_per_px=1.0)


def scope():
    chip = RectChip(160.0, 100.0, flakes=FLAKES)
    return simulated_microscope(chip, renderer=render_rects, shape_px=(64, 64), um_per_px=1.0)


def test_resume_with_database(tmp_path):
    plan = plan_raster([(0, 0), (160, 100)], 64, 64, overlap=0.25)
    ref = MemoryStore()
    run_scan(scope(), ThresholdDetector(), ref, 1, plan, CTX, progress=False)

    db = db_mod.Database(f"sqlite:///{tmp_path / 'f.db'}")
    db.migrate()
    chip_id = db.add_chip("c1", ["graphene"], 90.0)
    scan_id = db.start_scan(
        chip_id,
        settings={},
        objective="sim",
        um_per_px=1.0,
        detector="fake-threshold",
        detector_version="1",
        n_tiles_planned=len(plan),
    )
    with pytest.raises(KeyboardInterrupt):
        run_scan(scope(), ThresholdDetector(interrupt_at=3), db, scan_id, plan, CTX, progress=False)
    found = db.find_resumable_scan(chip_id)
    assert found is not None and found.id == scan_id
    assert db.completed_tiles(scan_id) == {0, 1, 2}
    s = run_scan(scope(), ThresholdDetector(), db, scan_id, plan, CTX, progress=False)
    assert s.tiles_skipped == 3
    got = sorted(flake_key(f) for f in db.scan_flakes(scan_id))
    assert got == sorted(flake_key(f) for f in ref.flakes[1])
    assert db.find_resumable_scan(chip_id) is None
    db.close()


def test_scan_into_in_memory_database():
    plan = plan_raster([(0, 0), (160, 100)], 64, 64, overlap=0.25)
    ref = MemoryStore()
    run_scan(scope(), ThresholdDetector(), ref, 1, plan, CTX, progress=False)
    with db_mod.Database("sqlite://") as db:
        db.migrate()
        chip_id = db.add_chip("c1", ["graphene"], 90.0)
        scan_id = db.start_scan(chip_id, settings={}, objective="sim", um_per_px=1.0,
                                detector="fake-threshold", detector_version="1",
                                n_tiles_planned=len(plan))  # fmt: skip
        run_scan(scope(), ThresholdDetector(), db, scan_id, plan, CTX, progress=False)
        got = sorted(flake_key(f) for f in db.scan_flakes(scan_id))
        assert got == sorted(flake_key(f) for f in ref.flakes[1])
        info = db.get_scan(scan_id)
        assert info is not None and info.status.value == "finished"
