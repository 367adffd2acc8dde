"""Chip frames: stage µm <-> chip µm, `flakefinder flakes locate`, the flake page, scan settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flakefinder.cli.main import create_app
from flakefinder.cli.scan import chip_frame_settings
from flakefinder.db import Database, FlakeQuery
from flakefinder.domain import ChipFrame, FlakeRecord, LayerClass, TileRecord
from web_helpers import populate

runner = CliRunner()
CHIP_W = 5000.0  # chip side (µm) used to place corner B


def _turn(x: float, y: float, deg: float) -> tuple[float, float]:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return (c * x - s * y, s * x + c * y)


def _mount(ox: float, oy: float, deg: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Stage positions of chip corners A (0, 0) and B (CHIP_W, 0) for a chip at this pose."""
    bx, by = _turn(CHIP_W, 0.0, deg)
    return (ox, oy), (ox + bx, oy + by)


def _on_stage(p: tuple[float, float], ox: float, oy: float, deg: float) -> tuple[float, float]:
    """Where chip point ``p`` sits on the stage for a chip at this pose (independent of ChipFrame)."""
    x, y = _turn(p[0], p[1], deg)
    return (ox + x, oy + y)


@pytest.mark.parametrize(
    "frame",
    [ChipFrame.identity(), ChipFrame(1234.5, -987.25, 2.0), ChipFrame(-3.0, 7.0, -179.5),
     ChipFrame.from_corners((10.0, 20.0), (10.0, 5000.0))],
)  # fmt: skip
def test_round_trips(frame: ChipFrame) -> None:
    for p in [(0.0, 0.0), (1.0, 0.0), (4321.125, 77.5), (-250.0, 9000.0), (1e4, -1e4)]:
        for q in (frame.to_stage(*frame.to_chip(*p)), frame.to_chip(*frame.to_stage(*p))):
            assert q == pytest.approx(p, abs=1e-9)
    assert ChipFrame.from_dict(frame.to_dict()) == frame
    assert ChipFrame.from_dict(json.loads(json.dumps(frame.to_dict()))) == frame


def test_identity_is_exact() -> None:
    frame = ChipFrame.identity()
    assert frame.is_identity and not ChipFrame(0.0, 0.0, 2.0).is_identity
    assert frame.to_chip(123.456, -7.25) == (123.456, -7.25)
    assert frame.to_stage(123.456, -7.25) == (123.456, -7.25)


def test_from_corners_rotated_2_degrees() -> None:
    ox, oy = 1500.0, -2300.0
    a, b = _mount(ox, oy, 2.0)
    frame = ChipFrame.from_corners(a, b)
    assert frame.angle_deg == pytest.approx(2.0, abs=1e-12)
    assert (frame.origin_x_um, frame.origin_y_um) == (ox, oy)
    flake_chip = (1200.0, 800.0)
    stage = _on_stage(flake_chip, ox, oy, 2.0)
    assert stage[0] == pytest.approx(
        ox + 1200.0 * math.cos(math.radians(2)) - 800.0 * math.sin(math.radians(2))
    )
    assert frame.to_chip(*stage) == pytest.approx(flake_chip, abs=1e-9)
    assert frame.to_chip(*b) == pytest.approx((CHIP_W, 0.0), abs=1e-9)  # B lies on the x edge
    assert frame.to_stage(*flake_chip) == pytest.approx(stage, abs=1e-9)


def test_remount_predicts_the_new_stage_position() -> None:
    flake_chip = (3210.5, 1777.25)
    first = (1500.0, -2300.0, 2.0)
    second = (-640.0, 415.5, -3.5)  # chip taken off, put back elsewhere and turned
    scanned = _on_stage(flake_chip, *first)  # what the database stores
    chip = ChipFrame.from_corners(*_mount(*first)).to_chip(*scanned)
    predicted = ChipFrame.from_corners(*_mount(*second)).to_stage(*chip)
    assert predicted == pytest.approx(_on_stage(flake_chip, *second), abs=1e-6)


def test_from_corners_and_from_dict_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ChipFrame.from_corners((1.0, 2.0), (1.0, 2.0))
    for bad in ({}, {"origin_x_um": 0, "origin_y_um": 0}, {"origin_x_um": "0", "origin_y_um": 0,
                "angle_deg": 0}, {"origin_x_um": True, "origin_y_um": 0, "angle_deg": 0}, [1, 2, 3]):  # fmt: skip
        with pytest.raises(ValueError, match="chip frame"):
            ChipFrame.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        ChipFrame(math.nan, 0.0, 0.0)


def test_scan_settings_frame() -> None:
    frame, warning = chip_frame_settings(True, [(0.0, 0.0), (2000.0, 2000.0)])
    assert frame == ChipFrame.identity().to_dict() and warning is None
    a, b = _mount(100.0, 200.0, 2.0)
    frame, warning = chip_frame_settings(False, [a, b, (0.0, 0.0)])
    assert ChipFrame.from_dict(frame) == ChipFrame.from_corners(a, b) and warning is None
    frame, warning = chip_frame_settings(False, [(0.0, 0.0), (10000.0, 10000.0)])
    assert frame["angle_deg"] == pytest.approx(45.0) and warning and "opposite" in warning


def test_simulated_scan_stores_identity_frame(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    r = runner.invoke(create_app(), [
        "scan", "--simulated", "--chip-size-mm", "0.06", "--frame-px", "128", "--um-per-px", "0.5",
        "--db", url, "--detector", "contrast", "--no-progress",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    with Database(url) as db:
        scan = db.get_scan(1)
        assert scan is not None and scan.settings["chip_frame"] == ChipFrame.identity().to_dict()


# A chip scanned at pose FIRST; one square flake at chip (FLAKE_X..+SIDE, FLAKE_Y..+SIDE).
FIRST = (1500.0, -2300.0, 2.0)
FLAKE_X, FLAKE_Y, SIDE = 400.0, 250.0, 20.0


def add_rotated_scan(db: Database) -> int:
    """A second scan of chip-A, rotated by 2°, with one flake; returns the flake's id."""
    chip = db.get_chip("chip-A")
    assert chip is not None
    frame = ChipFrame.from_corners(*_mount(*FIRST))
    scan = db.start_scan(chip.id, settings={"chip_frame": frame.to_dict()}, objective="50x",
                         um_per_px=0.5, detector="test", detector_version="1", n_tiles_planned=1)  # fmt: skip
    corners = [(FLAKE_X, FLAKE_Y), (FLAKE_X + SIDE, FLAKE_Y), (FLAKE_X + SIDE, FLAKE_Y + SIDE),
               (FLAKE_X, FLAKE_Y + SIDE)]  # fmt: skip
    poly = tuple(_on_stage(p, *FIRST) for p in corners)
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    record = FlakeRecord("graphene", LayerClass.MONO, 0.9, poly, (min(xs), min(ys), max(xs), max(ys)),
                         SIDE * SIDE, ((0.0, 0.0),) * 4, (0.0, 0.0, 1.0, 1.0), "test", "1", 1, None, 0)  # fmt: skip
    cx, cy = _on_stage((FLAKE_X + SIDE / 2, FLAKE_Y + SIDE / 2), *FIRST)
    db.record_tile(scan, TileRecord(0, cx, cy, 0.0, 128, 128, 0.5), [record])
    db.finish_scan(scan)
    (flake,) = db.query_flakes(FlakeQuery(scan_id=scan))
    return flake.id


@pytest.fixture
def located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    monkeypatch.delenv("FLAKEFINDER_DATABASE_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'locate.db'}"
    db = populate(url, tmp_path / "tiles")
    flake_id = add_rotated_scan(db)
    db.close()
    return url, flake_id


def _locate(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(create_app(), ["flakes", "locate", *args])
    return r.exit_code, r.stdout, r.stderr


def test_locate_in_chip_coordinates(located: tuple[str, int]) -> None:
    url, flake_id = located
    code, out, err = _locate(str(flake_id), "--db", url)
    assert code == 0, err
    assert "centroid, chip µm from corner A: x = 410.000, y = 260.000" in out
    assert "bounding box, chip µm: x 400.000 to 420.000, y 250.000 to 270.000" in out
    assert "2.0000°" in out and "identity" not in out and "drive" not in out
    code, out, err = _locate(str(flake_id), "--db", url, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["chip_frame_stored"] and got["stage_um"] is None
    assert got["centroid_chip_um"] == pytest.approx([410.0, 260.0], abs=1e-9)
    assert got["bbox_chip_um"] == pytest.approx([400.0, 250.0, 420.0, 270.0], abs=1e-9)


def test_locate_after_remount(located: tuple[str, int]) -> None:
    url, flake_id = located
    second = (-640.0, 415.5, -3.5)
    (ax, ay), (bx, by) = _mount(*second)
    corners = f"{ax!r},{ay!r};{bx!r},{by!r}"
    truth = _on_stage((FLAKE_X + SIDE / 2, FLAKE_Y + SIDE / 2), *second)
    code, out, err = _locate(str(flake_id), "--db", url, "--corners", corners, "--json")
    assert code == 0, err
    assert json.loads(out)["stage_um"] == pytest.approx(truth, abs=1e-6)
    code, out, err = _locate(str(flake_id), "--db", url, "--corners", corners)
    assert code == 0, err
    assert f"drive the stage to x = {truth[0]:.3f}, y = {truth[1]:.3f} µm" in out
    assert "-3.5000°" in out


def test_locate_without_frame_and_errors(located: tuple[str, int]) -> None:
    url, _ = located
    code, out, err = _locate("1", "--db", url)  # populate's scan stored no chip frame
    assert code == 0, err
    assert "identity" in out
    assert "centroid, chip µm from corner A: x = 78.000, y = 78.000" in out  # = stage position
    code, out, err = _locate("999", "--db", url)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: no flake with id 999 in {url}"]
    code, out, err = _locate("1", "--db", url, "--corners", "0,0;0,0")
    assert code == 2 and "distinct" in err
    code, out, err = _locate("1", "--db", url, "--corners", "0,0;1,0;1,1")
    assert code == 2 and "corners A and B" in err


def test_flake_page_shows_chip_position(located: tuple[str, int]) -> None:
    from flakefinder.server.app import create_app as create_server
    from flakefinder.server.settings import ServerSettings

    url, flake_id = located
    with TestClient(create_server(ServerSettings(detector="none", database_url=url))) as web:
        page = web.get(f"/flakes/{flake_id}")
        assert page.status_code == 200
        assert "Chip position (from corner A)" in page.text
        assert 'id="flake-chip-position">x = 410.0 µm, y = 260.0 µm' in page.text
        plain = web.get("/flakes/1")
        assert plain.status_code == 200 and "Chip position" not in plain.text
