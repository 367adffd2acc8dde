"""The revisit pass on a virtual chip with known flakes (issue 15's acceptance test): search at
20x, revisit the selected flakes at 50x; every one is found again and its close-up outline
matches the truth better than the 20x one; resumable exactly; bad cases reported, not fatal."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from flakefinder.db import Database, FlakeQuery
from flakefinder.db.hunt import HuntStore
from flakefinder.domain import Detection, Detector, ImagingContext
from flakefinder.evaluate.chip_truth import best_truth_outline
from flakefinder.hardware.objectives import DEFAULT_OBJECTIVES, find_objective, switch_objective
from flakefinder.hardware.protocols import Microscope
from flakefinder.hardware.sim import chip_stage_limits, simulated_microscope
from flakefinder.hunt.detectors import detector_for_objective
from flakefinder.hunt.revisit_pass import RevisitRequest, open_revisit, run_revisit_pass
from flakefinder.hunt.search_pass import region_plan, run_search_pass
from flakefinder.scan.region import SearchRegion
from flakefinder.scan.revisit import RevisitOptions, RevisitStatus, RevisitTarget, run_revisit
from flakefinder.synth.chip import VirtualChip, random_chip

SIDE = 1000.0
SEED = 7
FILTER = "layers<=10,area_um2>=30"
OPTIONS = RevisitOptions()


def scope(chip: VirtualChip, **kw: object) -> Microscope:
    return simulated_microscope(
        chip,
        objectives=DEFAULT_OBJECTIVES,
        objective="20x",
        chip_edge=True,
        seed=SEED,
        focus_plane_um=(0.0, 0.0005, -0.0003),
        parfocal_error_um={"50x": 1.5},
        **kw,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Searched:
    chip: VirtualChip
    db_file: Path
    scan_id: int


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Searched:
    """A finished 20x search of the chip, stored in a SQLite file (copied per test)."""
    folder = tmp_path_factory.mktemp("searched")
    chip = random_chip(SIDE, SIDE, ("graphene",), seed=SEED)
    db = Database(f"sqlite:///{folder / 'f.db'}")
    db.migrate()
    chip_id = db.add_chip("virtual", ["graphene"], 90.0)
    scan_id = db.start_scan(chip_id, settings={}, objective="20x", um_per_px=0.5,
                            detector="contrast", detector_version="1.0", n_tiles_planned=0)  # fmt: skip
    m = scope(chip)
    plan = region_plan(m, SearchRegion((10.0, 10.0, SIDE - 10, SIDE - 10)), 0.1)
    det = detector_for_objective("contrast", find_objective(DEFAULT_OBJECTIVES, "20x"))
    run_search_pass(m, det, db, HuntStore(db), scan_id=scan_id, chip_id=chip_id, plan=plan,
                    context=ImagingContext(um_per_px=0.5), progress=False)  # fmt: skip
    db.close()
    return Searched(chip, folder / "f.db", scan_id)


def copy_db(s: Searched, tmp_path: Path) -> Database:
    shutil.copy(s.db_file, tmp_path / "f.db")
    return Database(f"sqlite:///{tmp_path / 'f.db'}")


def revisit(s: Searched, db: Database, tmp_path: Path, det: Detector | None = None, *,
            resume: bool = False) -> int:  # fmt: skip
    m = scope(s.chip)
    obj = switch_objective(m, "50x")
    det = det or detector_for_objective("contrast", obj)
    hunt = HuntStore(db)
    opened = open_revisit(db, hunt, RevisitRequest(s.scan_id, "50x", FILTER, resume, OPTIONS), m)
    run_revisit_pass(m, det, hunt, opened, ImagingContext(um_per_px=0.2), options=OPTIONS,
                     image_dir=tmp_path / "closeups", progress=False)  # fmt: skip
    return opened.pass_id


@pytest.fixture(scope="module")
def uninterrupted(searched: Searched, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("revisit")
    db = copy_db(searched, tmp)
    pass_id = revisit(searched, db, tmp)
    visits = HuntStore(db).revisits_of_pass(pass_id)
    info = HuntStore(db).get_pass(pass_id)
    flakes = {f.id: f for f in db.query_flakes(FlakeQuery(scan_id=searched.scan_id))}
    db.close()
    return visits, info, flakes


def test_revisit_finds_every_selected_flake_and_sharpens_its_outline(searched, uninterrupted) -> None:
    visits, info, flakes = uninterrupted
    selected = [f for f in flakes.values() if f.layer_count is not None and f.layer_count <= 10
                and f.area_um2 >= 30]  # fmt: skip
    assert len(selected) >= 3
    assert sorted(v.flake_id for v in visits) == sorted(f.id for f in selected)
    assert [v.status for v in visits] == ["ok"] * len(visits)  # every one found again
    for v in visits:
        flake = flakes[v.flake_id]
        at20 = best_truth_outline(searched.chip, flake.material, flake.polygon_um)
        at50 = best_truth_outline(searched.chip, v.material, v.polygon_um)
        assert at20 is not None and at50 is not None and at50.flake_id == at20.flake_id
        assert at50.iou > at20.iou, (v.flake_id, at20.iou, at50.iou)  # closer to the truth
        assert at50.iou >= 0.9
        assert v.layer_count == at50.n_layers  # the exact layer number
        assert v.focus_z_um is not None and abs(v.focus_z_um - 1.5) < 0.6  # the 50x focal plane
        [c] = v.closeups
        assert c.um_per_px == 0.2 and Path(c.file_path).is_file()
        assert Path(c.file_path).parent.name == "closeups"
    report = info.report
    assert info.status.value == "finished" and report.frames == len(visits)
    assert report.route_um <= report.naive_route_um
    assert report.focus_s > 0 and report.detect_s > 0 and report.hours_per_cm2 > 0


class StopAt:
    """A detector that raises KeyboardInterrupt on its ``at``-th call (Ctrl-C mid-visit)."""

    def __init__(self, inner: Detector, at: int) -> None:
        self.inner, self.at, self.calls = inner, at, 0
        self.name, self.version = inner.name, inner.version

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.detect(image, context)


def test_resume_after_ctrl_c_gives_the_uninterrupted_result(searched, uninterrupted, tmp_path) -> None:
    visits, _, _ = uninterrupted
    db = copy_db(searched, tmp_path)
    hunt = HuntStore(db)
    det = StopAt(detector_for_objective("contrast", find_objective(DEFAULT_OBJECTIVES, "50x")), 2)
    with pytest.raises(KeyboardInterrupt):
        revisit(searched, db, tmp_path, det)
    [stopped] = [p for p in hunt.list_passes(scan_id=searched.scan_id) if p.kind == "revisit"]
    assert stopped.status.value == "interrupted" and stopped.n_done == 2  # nothing half-stored
    assert len(list((tmp_path / "closeups").glob("*.png"))) == 2
    # no temporary files left: neither the old ``.part.png`` nor atomic_open's ``.NAME.*.tmp``
    assert not list((tmp_path / "closeups").glob("*.part.png"))
    assert not list((tmp_path / "closeups").glob(".*"))
    assert revisit(searched, db, tmp_path, resume=True) == stopped.id
    resumed = hunt.revisits_of_pass(stopped.id)
    key = lambda v: (v.flake_id, v.status, v.layer_count, v.polygon_um, v.focus_z_um)  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, visits))
    db.close()


def test_bad_flakes_are_reported_and_the_rest_goes_on(searched, uninterrupted, tmp_path) -> None:
    visits, _, flakes = uninterrupted
    cx = lambda f: (f.bbox_um[0] + f.bbox_um[2]) / 2  # noqa: E731
    ok = sorted((flakes[v.flake_id] for v in visits), key=cx)
    a, b, c = ok[-1], ok[0], ok[1]
    # the stage cannot reach flake a, the right-most one
    limits = replace(chip_stage_limits(searched.chip), x_max_um=(cx(a) + cx(ok[-2])) / 2)
    m = scope(searched.chip, limits=limits)
    obj = switch_objective(m, "50x")
    target = lambda f, dz=0.0: RevisitTarget(f.id, f.material, f.layer_class, f.layer_count,  # noqa: E731
                                             f.polygon_um, f.bbox_um, 1.5 + dz)  # fmt: skip
    db = copy_db(searched, tmp_path)
    hunt = HuntStore(db)
    pass_id = hunt.start_pass(1, scan_id=searched.scan_id, kind="revisit", objective="50x",
                              um_per_px=0.2, n_planned=3, settings={})  # fmt: skip
    summary = run_revisit(m, detector_for_objective("contrast", obj), hunt, pass_id,
                          [target(a), target(b, dz=15.0), target(c)], ImagingContext(um_per_px=0.2),
                          options=OPTIONS, progress=False)  # fmt: skip
    got = {v.flake_id: v for v in hunt.revisits_of_pass(pass_id)}
    assert got[a.id].status == RevisitStatus.OUTSIDE_LIMITS.value
    assert "outside the stage limits" in got[a.id].message and not got[a.id].closeups
    assert got[b.id].status == RevisitStatus.FOCUS_FAILED.value  # focus searched 15 µm off
    assert "autofocus failed (no sharpness peak between z = 13.5 and 19.5 µm)" in got[b.id].message
    assert got[b.id].layer_count is None and not got[b.id].closeups  # flake left as it was
    assert got[c.id].status == "ok"  # the rest goes on
    assert summary.by_status[RevisitStatus.OK] == 1 and hunt.get_pass(pass_id).status.value == "finished"
    db.close()


def test_z_stack_and_second_exposure(searched, uninterrupted, tmp_path) -> None:
    from flakefinder.domain import LayerClass

    visits, _, flakes = uninterrupted
    mono = next(flakes[v.flake_id] for v in visits if flakes[v.flake_id].layer_class is LayerClass.MONO)
    m = scope(searched.chip)
    obj = switch_objective(m, "50x")
    db = copy_db(searched, tmp_path)
    hunt = HuntStore(db)
    pass_id = hunt.start_pass(1, scan_id=searched.scan_id, kind="revisit", objective="50x",
                              um_per_px=0.2, n_planned=1, settings={})  # fmt: skip
    options = RevisitOptions(z_stack=3, z_step_um=0.5, bracket=True)
    target = RevisitTarget(mono.id, mono.material, mono.layer_class, mono.layer_count,
                           mono.polygon_um, mono.bbox_um, 1.5)  # fmt: skip
    run_revisit(m, detector_for_objective("contrast", obj), hunt, pass_id, [target],
                ImagingContext(um_per_px=0.2), options=options, image_dir=tmp_path / "c",
                progress=False)  # fmt: skip
    [visit] = hunt.revisits_of_pass(pass_id)
    frames = [(c.z_offset_um, c.exposure_ms) for c in visit.closeups]
    assert frames == [(0.0, 10.0), (-0.5, 10.0), (0.5, 10.0), (0.0, 15.0)]  # monolayer: 1.5x
    sharp = {c.z_offset_um: c.sharpness for c in visit.closeups if c.exposure_ms == 10.0}
    assert sharp[0.0] > sharp[-0.5] and sharp[0.0] > sharp[0.5]  # the stack brackets focus
    assert visit.closeups[1].z_um == pytest.approx(visit.focus_z_um - 0.5)
    assert visit.status == "ok" and m.camera.exposure_ms == 10.0  # exposure restored
    assert m.focus.get_z_um() == pytest.approx(visit.focus_z_um)
    assert len(list((tmp_path / "c").glob("*.png"))) == 4
    db.close()
