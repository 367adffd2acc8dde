"""``flakefinder scan --simulated`` end to end on a tiny virtual chip, with --resume."""

from __future__ import annotations

from typer.testing import CliRunner

from flakefinder.cli.main import create_app
from flakefinder.db import Database
from flakefinder.scan.resume import NothingToResumeError


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
    # issue 11 #4: --resume with nothing unfinished refuses (it used to store every flake twice)
    r = runner.invoke(create_app(), [*args, "--resume"])
    assert isinstance(r.exception, NothingToResumeError), r.output
    assert "has no unfinished scan; nothing to resume" in str(r.exception)
    db = Database(url)
    assert [s.id for s in db.list_scans()] == [1]
    db.close()


def test_scan_needs_a_microscope(tmp_path):
    r = CliRunner().invoke(create_app(), ["scan", "--db", f"sqlite:///{tmp_path / 'f.db'}"])
    assert r.exit_code != 0
    assert "--simulated" in r.output


def test_scan_through_inference_server_matches_local_detection(tmp_path):
    from flakefinder.server.app import create_app as create_server
    from flakefinder.server.settings import ServerSettings
    from server_helpers import running_server

    base = [
        "scan", "--simulated", "--chip-size-mm", "0.6", "--frame-px", "512", "--um-per-px", "0.4",
        "--detector", "contrast", "--no-progress", "--seed", "7",
    ]  # fmt: skip
    runner = CliRunner()
    local = runner.invoke(create_app(), [*base, "--db", f"sqlite:///{tmp_path / 'local.db'}"])
    assert local.exit_code == 0, local.output
    server_app = create_server(ServerSettings(detector="contrast", materials=("graphene",)))
    with running_server(server_app) as url:
        remote = runner.invoke(
            create_app(), [*base, "--db", f"sqlite:///{tmp_path / 'remote.db'}", "--server", url]
        )
    assert remote.exit_code == 0, remote.output
    stored = [
        line.split(" flakes stored")[0].rsplit(", ", 1)[-1]
        for line in (local.output, remote.output)
    ]
    assert stored[0] == stored[1] and int(stored[0]) > 0
