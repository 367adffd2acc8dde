"""`flakefinder demo`: the README's main job, end to end on a small virtual chip."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flakefinder.cli.main import create_app
from flakefinder.db import Database, FlakeQuery


@pytest.mark.parametrize("detector", ["contrast", pytest.param("maskrcnn", marks=pytest.mark.slow)])
def test_demo_runs_three_passes_stores_and_compares(tmp_path: Path, detector: str) -> None:
    from flakefinder.db.hunt import HuntStore

    out = tmp_path / "demo"
    r = CliRunner().invoke(
        create_app(),
        ["demo", "--out", str(out), "--chip-size-mm", "0.4", "--detector", detector,
         "--revisit-filter", "area_um2>=5", "--no-progress"],  # fmt: skip
    )
    assert r.exit_code == 0, r.output
    assert "1 tile of 512 x 512 µm" in r.output and "Known flakes of the virtual chip" in r.output
    assert "overview at 5x: chip 400 x 400 µm found" in r.output
    db = Database(f"sqlite:///{out / 'flakefinder.db'}")
    stored = db.query_flakes(FlakeQuery())
    [scan] = db.list_scans()
    passes = HuntStore(db).list_passes(scan_id=scan.id)
    db.close()
    assert scan.status.value == "finished" and scan.tiles_done == 1 and scan.detector == detector
    assert [(p.kind, p.objective, p.status.value) for p in passes] == [
        ("overview", "5x", "finished"), ("search", "20x", "finished"), ("revisit", "50x", "finished")
    ]  # fmt: skip
    for kind in ("overview", "search", "revisit"):  # the per-pass table
        assert f"| {kind} | " in r.output
    assert "revisit route:" in r.output
    assert f"{len(stored)} flakes stored" in r.output
    with (out / "flakes.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(stored)
    assert len(json.loads((out / "flakes.json").read_text())) == len(stored)
    assert len(list((out / f"scan_{scan.id}").glob("tile_*.png"))) == 1
    assert (out / f"scan_{scan.id}" / "overview_pass1.png").is_file()
    assert len(list((out / f"scan_{scan.id}" / "closeups").glob("flake_*.png"))) >= passes[2].n_done
    assert (out / "chip.json").is_file()


def test_demo_single_search_pass_as_before(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        create_app(),
        ["demo", "--out", str(out), "--chip-size-mm", "0.4", "--passes", "search",
         "--search-objective", "50x", "--no-progress"],  # fmt: skip
    )
    assert r.exit_code == 0, r.output
    assert "9 tiles of 205 x 205 µm" in r.output and "Known flakes of the virtual chip" in r.output
    assert "| search | 50x | 0.2 |" in r.output and "| revisit |" not in r.output
    bad = CliRunner().invoke(create_app(), ["demo", "--out", str(out), "--passes", "revisit"])
    assert bad.exit_code != 0 and "the demo always searches" in bad.output


def test_demo_defaults_to_the_best_detector_and_reruns_fresh(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--chip-mm", "0.4", "--no-progress"]  # old name still works
    first = CliRunner().invoke(create_app(), args)
    assert first.exit_code == 0, first.output
    assert "detector: contrast 1.0 (best by the benchmarks: mask mAP@50 0.51" in first.output
    assert "--chip-mm is deprecated; use --chip-size-mm" in first.output
    again = CliRunner().invoke(create_app(), args)
    assert again.exit_code == 0, again.output
    assert "holds an earlier demo run; starting fresh" in again.output
    db = Database(f"sqlite:///{out / 'flakefinder.db'}")
    [scan] = db.list_scans()  # one scan, not two: flakes.csv and the database agree
    stored = db.query_flakes(FlakeQuery())
    db.close()
    with (out / "flakes.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(stored)
    assert sorted(p.name for p in out.glob("scan_*")) == [f"scan_{scan.id}"]


def test_demo_refuses_a_folder_with_other_scans(tmp_path: Path) -> None:
    from flakefinder.errors import FlakefinderError

    out = tmp_path / "demo"
    out.mkdir()
    db = Database(f"sqlite:///{out / 'flakefinder.db'}")
    db.migrate()
    chip = db.add_chip("mine", ["graphene"], 90.0)
    db.start_scan(chip, settings={}, objective="50x", um_per_px=0.2, detector="contrast",
                  detector_version="1", n_tiles_planned=1)  # fmt: skip
    db.close()
    r = CliRunner().invoke(create_app(), ["demo", "--out", str(out), "--chip-size-mm", "0.2"])
    assert isinstance(r.exception, FlakefinderError)
    assert "did not make; choose another --out" in str(r.exception)
    assert (out / "flakefinder.db").is_file()
