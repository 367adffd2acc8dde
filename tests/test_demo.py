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
def test_demo_scans_stores_and_compares(tmp_path: Path, detector: str) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        create_app(),
        ["demo", "--out", str(out), "--chip-mm", "0.4", "--detector", detector, "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    assert "9 tiles" in r.output and "Known flakes of the virtual chip" in r.output
    db = Database(f"sqlite:///{out / 'flakefinder.db'}")
    stored = db.query_flakes(FlakeQuery())
    [scan] = db.list_scans()
    db.close()
    assert scan.status.value == "finished" and scan.tiles_done == 9 and scan.detector == detector
    assert f"{len(stored)} flakes stored" in r.output
    with (out / "flakes.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(stored)
    assert len(json.loads((out / "flakes.json").read_text())) == len(stored)
    assert len(list((out / f"scan_{scan.id}").glob("tile_*.png"))) == 9
    assert (out / "chip.json").is_file()
