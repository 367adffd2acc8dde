"""``flakefinder scan --overview ... --stop-after-overview``, ``--resume`` over the (edited)
region, and ``flakefinder revisit`` with its refusals (exit 2, nothing stored)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli
from flakefinder.db import Database
from flakefinder.db.hunt import HuntStore
from flakefinder.scan.region import SearchRegion, plan_region

SCAN = ["scan", "--simulated", "--chip-size-mm", "0.5", "--frame-px", "256", "--seed", "3",
        "--overview", "5x", "--objective", "20x", "--no-progress"]  # fmt: skip
FILTER = "area_um2>=5"


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    return run_cli(monkeypatch, capsys, *args)


@pytest.fixture
def hunted(tmp_path: Path, monkeypatch, capsys) -> tuple[str, Path, int]:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    common = [*SCAN, "--db", url, "--out", str(tmp_path / "img")]
    code, out, err = run(monkeypatch, capsys, *common, "--stop-after-overview")
    assert code == 0, err
    assert "overview (pass 1): chip 500 x 500 µm" in out and "stopped after the overview" in out
    db = Database(url)
    [scan] = db.list_scans()
    hunt = HuntStore(db)
    [overview] = hunt.list_passes(scan_id=scan.id)
    assert scan.status.value == "interrupted" and overview.status.value == "finished"
    proposed = SearchRegion.from_dict(overview.settings["region"])
    assert scan.n_tiles_planned == overview.settings["search_tiles"] == len(
        plan_region(proposed, 128.0, 128.0, 0.1)
    )
    assert proposed.rect_um == pytest.approx((10.0, 10.0, 490.0, 490.0), abs=2.0)  # 1 px of 5x
    assert Path(overview.settings["mosaic_path"]).is_file()
    # the user shrinks the region in the web UI before the search starts
    edited = SearchRegion((10.0, 10.0, 300.0, 490.0))
    n = len(plan_region(edited, 128.0, 128.0, 0.1))
    hunt.set_region(scan.id, edited, n)
    db.close()
    code, out, err = run(monkeypatch, capsys, *common, "--resume")
    assert code == 0, err
    assert f"scan 1: {n} tiles scanned" in out and "| search | 20x | 0.5 |" in out
    return url, tmp_path, n


def test_overview_search_revisit_from_the_command_line(hunted, monkeypatch, capsys) -> None:
    url, tmp, n = hunted
    db = Database(url)
    [scan] = db.list_scans()
    assert scan.status.value == "finished" and scan.tiles_done == scan.n_tiles_planned == n == 15
    images = db.list_images(scan.id)
    assert max(i.x_um + 64 for i in images) <= 300.0  # the edited region, not the proposal
    db.close()
    code, out, err = run(monkeypatch, capsys, "revisit", "--scan", "1", "--objective", "50x",
                         "--filter", FILTER, "--db", url, "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "revisit pass 3:" in out and "| revisit | 50x | 0.2 |" in out and "revisit route:" in out
    db = Database(url)
    [visit] = [p for p in HuntStore(db).list_passes(scan_id=1) if p.kind == "revisit"]
    assert visit.status.value == "finished" and visit.n_done == visit.n_planned > 0
    shots = list((tmp / "img" / "scan_1" / "closeups").glob("flake_*_pass3_0.png"))
    assert len(shots) == sum(
        bool(v.closeups) for v in HuntStore(db).revisits_of_pass(visit.id)
    ) > 0
    db.close()
    code, _, err = run(monkeypatch, capsys, "revisit", "--scan", "1", "--objective", "50x",
                       "--filter", FILTER, "--db", url, "--resume")  # fmt: skip
    assert code == 2 and "has no unfinished revisit pass; nothing to resume" in err


def test_revisit_refusals_store_nothing(hunted, monkeypatch, capsys) -> None:
    url, tmp, _ = hunted
    from flakefinder.synth.chip import random_chip, save_chip

    other = save_chip(random_chip(500.0, 500.0, ("graphene",), seed=99), tmp / "other.json")
    (tmp / "o.toml").write_text("[objectives.50x]\num_per_px = 0.2\n[objectives.100x]\n")
    base = ["revisit", "--scan", "1", "--db", url, "--no-progress"]
    for args, message in (
        (["--objective", "50x", "--filter", "thickness<3"], "unknown filter field 'thickness'"),
        (["--objective", "63x"], "unknown objective '63x'; this microscope has: 5x, 20x, 50x, 100x"),
        (["--objective", "100x", "--objectives", str(tmp / "o.toml")], "'100x' has no pixel size"),
        (["--objective", "50x", "--chip", str(other)], "is not the virtual chip of scan 1"),
        (["--objective", "50x", "--chip-name", "chip-B"], "is of chip 'sim-0.5mm-seed3', but"),
        (["--objective", "50x", "--filter", "area_um2>=1e9"], "no flake of scan 1 matches"),
    ):
        code, _, err = run(monkeypatch, capsys, *base, *args)
        assert code == 2 and message in err, (args, err)
    code, _, err = run(monkeypatch, capsys, "revisit", "--scan", "7", "--objective", "50x", "--db", url)
    assert code == 2 and "no scan with id 7" in err
    db = Database(url)
    assert [p.kind for p in HuntStore(db).list_passes()] == ["overview", "search"]  # nothing new
    db.close()


def test_revisit_of_an_unfinished_scan_is_refused(tmp_path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    code, _, err = run(monkeypatch, capsys, *SCAN, "--db", url, "--stop-after-overview")
    assert code == 0, err
    code, _, err = run(monkeypatch, capsys, "revisit", "--scan", "1", "--objective", "50x", "--db", url)
    assert code == 2 and "scan 1 is interrupted (0 of" in err and "tiles): finish it" in err
    code, _, err = run(monkeypatch, capsys, "scan", "--simulated", "--overview", "5x", "--db", url)
    assert code == 2 and "needs --objective too" in err


def test_overview_onto_a_full_disk_stops_cleanly_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    """The overview mosaic cannot be written: one line, the scan and its overview pass marked
    interrupted (not left running), the lock released, no temporary file left; --resume with
    room again runs the overview again."""
    import fcntl
    import os

    from flakefinder.db.locks import lock_path
    from fullfs import full_disk

    url = f"sqlite:///{tmp_path / 'f.db'}"
    img = tmp_path / "img"
    img.mkdir()
    common = [*SCAN, "--db", url, "--out", str(img), "--stop-after-overview"]
    with full_disk(monkeypatch, img) as refused:
        code, out, err = run(monkeypatch, capsys, *common)
    assert code == 2 and refused, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: scan 1 stopped: cannot write ")
    assert "no space left on device" in errors[0] and "--resume" in errors[0]
    assert "still marked" not in errors[0]
    db = Database(url)
    [scan] = db.list_scans()
    [overview] = HuntStore(db).list_passes(scan_id=scan.id)
    assert scan.status.value == "interrupted" and overview.status.value == "interrupted"
    db.close()
    fd = os.open(lock_path(tmp_path / "f.db", 1), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no BlockingIOError
    finally:
        os.close(fd)
    assert not [p for p in img.rglob("*") if p.name.startswith(".")]
    code, out, err = run(monkeypatch, capsys, *common, "--resume")
    assert code == 0, err
    assert "stopped after the overview" in out
    db = Database(url)
    [scan] = db.list_scans()
    passes = HuntStore(db).list_passes(scan_id=scan.id)
    assert scan.status.value == "interrupted"  # stopped after the overview, as asked
    assert passes[-1].kind == "overview" and passes[-1].status.value == "finished"
    assert Path(passes[-1].settings["mosaic_path"]).is_file()
    db.close()
