"""``flakefinder scan --simulated`` end to end on a tiny virtual chip, with --resume."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("flakefinder.synth.chip")
pytest.importorskip("flakefinder.detect.registry")
pytest.importorskip("flakefinder.db")

from flakefinder.cli.main import create_app  # noqa: E402


def test_scan_simulated_and_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    args = [
        "scan", "--simulated", "--chip-size-mm", "0.12", "--frame-px", "128", "--um-per-px", "0.5",
        "--db", url, "--detector", "contrast", "--no-progress", "--out", str(tmp_path / "img"),
    ]  # fmt: skip
    runner = CliRunner()
    r = runner.invoke(create_app(), args)
    assert r.exit_code == 0, r.output
    assert "scan 1: 4 tiles scanned" in r.output
    assert len(list((tmp_path / "img" / "scan_1").glob("tile_*.png"))) == 4
    r = runner.invoke(create_app(), [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert "no unfinished scan" in r.output and "scan 2:" in r.output


def test_scan_needs_a_microscope(tmp_path):
    r = CliRunner().invoke(create_app(), ["scan", "--db", f"sqlite:///{tmp_path / 'f.db'}"])
    assert r.exit_code != 0
    assert "--simulated" in r.output
