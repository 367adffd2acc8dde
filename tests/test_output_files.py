"""Output files are written atomically, and a full disk is one line that loses nothing.

A full disk is simulated per folder (``fullfs.full_disk``: writes and fsyncs under it fail with
ENOSPC); the good file already at the output path must survive byte for byte, and no temporary
file may be left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flakefinder.artifacts import atomic_open, write_atomic, write_json_atomic
from flakefinder.cli.main import create_app
from flakefinder.db import Database
from flakefinder.errors import OutputError
from fullfs import full_disk
from web_helpers import populate

runner = CliRunner()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_writes_replace_or_keep_never_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "a.json"
    write_json_atomic(target, {"good": 1})
    assert json.loads(target.read_text()) == {"good": 1}
    assert target.stat().st_mode & 0o777 != 0o600  # normal permissions, not mkstemp's
    with full_disk(monkeypatch, out) as refused:
        with pytest.raises(OutputError, match="no space left on device") as info:
            write_json_atomic(target, {"new": list(range(10_000))})
        assert refused
    assert "unchanged" in str(info.value) and str(target) in str(info.value)
    assert json.loads(target.read_text()) == {"good": 1}
    assert _files(out) == ["a.json"]  # the temporary file is gone
    # an error inside the block keeps the old file too
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"good": 1} and _files(out) == ["a.json"]
    write_atomic(out / "b.bin", b"\x00\x01")
    assert (out / "b.bin").read_bytes() == b"\x00\x01"


def test_flakes_export_onto_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    populate(url, tmp_path / "tiles").close()
    out = tmp_path / "exports"
    out.mkdir()
    target = out / "flakes.json"
    r = runner.invoke(create_app(), ["flakes", "export", "--db", url, "-f", "json", "-o", str(target)])
    assert r.exit_code == 0, r.output
    good = target.read_bytes()
    assert len(json.loads(good)) == 4
    Database(url).close()
    for fmt in ("json", "csv"):
        with full_disk(monkeypatch, out):
            r = runner.invoke(
                create_app(), ["flakes", "export", "--db", url, "-f", fmt, "-o", str(target)]
            )
        assert r.exit_code == 2, r.output
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: cannot write"), r.stderr
        assert "no space left on device" in lines[0] and "Traceback" not in r.output
        assert target.read_bytes() == good  # the good export is still there
        assert _files(out) == ["flakes.json"]
