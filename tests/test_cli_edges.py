"""Findings 5, 8 and 10 on the command line: a bad image in a folder is named and skipped,
bad numbers and unusable output folders are usage errors (exit 2) before any work, a failed
scan is never left marked running, and a second run of one scan refuses while the first runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from flakefinder.db import Database, ScanStatus
from flakefinder.db.locks import lock_path, scan_lock
from flakefinder.errors import ScanLockedError

TINY_SCAN = ["--chip-size-mm", "0.2", "--frame-px", "128", "--um-per-px", "0.5", "--no-progress"]
CHIP = "sim-0.2mm-seed0"


@dataclass
class Result:
    code: int
    text: str  # stdout + stderr, box drawing and line wrapping removed


Cli = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> Result:
        monkeypatch.setenv("COLUMNS", "200")
        code, out, err = run_cli(monkeypatch, capsys, *args)
        return Result(code, " ".join((out + err).replace("│", " ").split()))

    return run


def test_detect_names_and_skips_a_1x1_image(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "a_tiny.png")
    Image.fromarray(np.full((64, 64, 3), 180, np.uint8)).save(folder / "b_good.png")
    out = tmp_path / "out"
    res = cli("detect", str(folder), "--out", str(out), "--detector", "contrast")
    assert res.code == 0, res.text
    assert "a_tiny.png is too small (1x1 px)" in res.text and "1 image could not be read" in res.text
    images = (out / "images.json").read_text()
    assert "b_good.png" in images and "a_tiny.png" not in images
    assert (out / "flakes.csv").is_file() and not (out / "flakes.csv.part").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--um-per-px", "0"], "--um-per-px"),
        (["--um-per-px", "nan"], "--um-per-px"),
        (["--um-per-px", "1e-300"], "--um-per-px"),
        (["--oxide-nm", "inf"], "--oxide-nm"),
    ],
)
def test_detect_bad_numbers(cli: Cli, tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    res = cli("detect", str(tmp_path), "--out", str(out), "--detector", "contrast", *args)
    assert res.code == 2 and needle in res.text and "finite number in" in res.text, res.text
    assert not out.exists()


def test_detect_out_pointing_at_a_file(cli: Cli, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = cli("detect", str(tmp_path), "--out", str(afile), "--detector", "contrast")
    assert res.code == 2 and "is a file, not a folder" in res.text, res.text
    res = cli("detect", str(tmp_path), "--out", str(afile / "x"), "--detector", "contrast")
    assert res.code == 2 and "is a file, so" in res.text, res.text


def test_scan_bad_chip_size_and_out(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    url = f"sqlite:///{db}"
    res = cli("scan", "--simulated", "--chip-size-mm", "0", "--db", url, "--no-progress")
    assert res.code == 2 and "--chip-size-mm" in res.text, res.text
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = cli("scan", "--simulated", *TINY_SCAN, "--db", url, "--out", str(afile / "x"))
    assert res.code == 2 and "is a file" in res.text, res.text
    assert not db.exists()  # refused before a scan was started


def test_run_scan_marks_the_scan_interrupted_when_the_image_folder_fails(tmp_path: Path) -> None:
    from flakefinder.domain import ImagingContext
    from flakefinder.errors import FlakefinderError
    from flakefinder.hardware.sim import simulated_microscope
    from flakefinder.scan.loop import run_scan
    from flakefinder.scan.plan import plan_raster
    from flakefinder.synth.chip import random_chip

    db = Database(f"sqlite:///{tmp_path / 'f.db'}")
    db.migrate()
    chip = random_chip(100.0, 100.0, ("graphene",), seed=0)
    scope = simulated_microscope(chip, shape_px=(64, 64), um_per_px=0.5)
    plan = plan_raster([(0.0, 0.0), (100.0, 100.0)], 32.0, 32.0, 0.1)
    chip_id = db.add_chip("c", ["graphene"], 90.0)
    scan_id = db.start_scan(
        chip_id, settings={}, objective="", um_per_px=0.5, detector="x", detector_version="1",
        n_tiles_planned=len(plan),
    )  # fmt: skip
    afile = tmp_path / "afile"
    afile.write_text("x")
    from flakefinder.detect.registry import create_detector

    with pytest.raises(FlakefinderError, match="cannot create the image folder"):
        run_scan(
            scope, create_detector("contrast"), db, scan_id, plan, ImagingContext(0.5),
            image_dir=afile / "x", progress=False,
        )  # fmt: skip
    info = db.get_scan(scan_id)
    assert info is not None and info.status is ScanStatus.INTERRUPTED
    db.close()


def test_second_resume_of_a_running_scan_refuses(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    db = Database(url)
    db.migrate()
    chip_id = db.add_chip(CHIP, ["graphene"], 90.0)
    scan_id = db.start_scan(
        chip_id, settings={}, objective="sim", um_per_px=0.5, detector="contrast",
        detector_version="", n_tiles_planned=1,
    )  # fmt: skip
    db.mark_interrupted(scan_id)
    with scan_lock(db, scan_id):  # the first run, still going
        res = cli("scan", "--simulated", *TINY_SCAN, "--db", url, "--resume")
        assert res.code == 2 and f"scan {scan_id} is being run by another process" in res.text
        assert "pid" in res.text
        info = db.get_scan(scan_id)
        assert info is not None and info.tiles_done == 0  # the refused run stored nothing
    res = cli("scan", "--simulated", *TINY_SCAN, "--db", url, "--resume")
    assert res.code == 0 and f"resuming scan {scan_id}" in res.text, res.text
    info = db.get_scan(scan_id)
    assert info is not None and info.status is ScanStatus.FINISHED
    db.close()


def test_file_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'f.db'}")
    with scan_lock(db, 3):
        with pytest.raises(ScanLockedError, match="scan 3 is being run"):
            with scan_lock(db, 3):
                pass
        with scan_lock(db, 4):  # another scan is free
            pass
    with scan_lock(db, 3):  # released on exit (and by the OS if the holder dies)
        assert lock_path(tmp_path / "f.db", 3).is_file()
    assert not lock_path(tmp_path / "f.db", 3).exists()  # and its file removed (issue 17)
    db.close()


@pytest.mark.postgres
def test_advisory_lock_on_postgresql(postgres_url: str) -> None:
    a, b = Database(postgres_url), Database(postgres_url)
    try:
        with scan_lock(a, 5):
            with pytest.raises(ScanLockedError, match="scan 5"):
                with scan_lock(b, 5):
                    pass
        with scan_lock(b, 5):
            pass
    finally:
        a.close()
        b.close()
