"""`flakefinder db upgrade|info` and `flakefinder flakes list|export|set-status` on a temp SQLite file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flakefinder.cli.main import create_app
from flakefinder.db import Database
from flakefinder.domain import FlakeRecord, LayerClass, TileRecord

runner = CliRunner()


def _rect(material: str, lc: LayerClass, conf: float, x: float, w: float, n: int) -> FlakeRecord:
    poly = ((x, 0.0), (x + w, 0.0), (x + w, w), (x, w))
    return FlakeRecord(material, lc, conf, poly, (x, 0.0, x + w, w), w * w, poly, (x, 0.0, x + w, w),
                       "contrast", "1", n, None, 0)  # fmt: skip


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("FLAKEFINDER_DATABASE_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(create_app(), ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert "schema upgraded from empty to" in result.output
    db = Database(url)
    a = db.add_chip("chip-A", ["graphene", "hBN"], 90.0)
    b = db.add_chip("chip-B", ["graphene"], 285.0)
    for chip, flakes in (
        (a, [_rect("graphene", LayerClass.MONO, 0.9, 0, 10, 1),
             _rect("graphene", LayerClass.FEW, 0.7, 20, 20, 4),
             _rect("hBN", LayerClass.THICK, 0.8, 50, 30, 20)]),
        (b, [_rect("graphene", LayerClass.MONO, 0.6, 0, 5, 1)]),
    ):  # fmt: skip
        scan = db.start_scan(chip, settings={}, objective="20x", um_per_px=0.2,
                             detector="contrast", detector_version="1", n_tiles_planned=1)  # fmt: skip
        db.record_tile(scan, TileRecord(0, 0.0, 0.0, 0.0, 64, 64, 0.2), flakes)
    db.close()
    return url


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(create_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_texts() -> None:
    for cmd in (
        ["flakes"],
        ["flakes", "list"],
        ["flakes", "export"],
        ["db", "upgrade"],
        ["db", "info"],
    ):
        code, out, _ = invoke(*cmd, "--help")
        assert code == 0 and "Usage" in out
    assert "--min-area" in invoke("flakes", "list", "--help")[1]


def test_db_info_and_second_upgrade(url: str) -> None:
    code, out, _ = invoke("db", "info", "--db", url)
    assert code == 0
    assert "up to date" in out and "flakes:   4" in out and "chips:    2" in out
    code, out, _ = invoke("db", "upgrade", "--db", url)
    assert code == 0 and "already at revision" in out


def test_list_csv_with_filters(url: str) -> None:
    code, out, _ = invoke("flakes", "list", "--db", url, "--format", "csv", "--material", "graphene",
                          "--min-area", "50", "--order-by", "-area_um2")  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["material"], r["area_um2"]) for r in rows] == [
        ("graphene", "400.0"),
        ("graphene", "100.0"),
    ]


@pytest.mark.parametrize(
    ("args", "n"),
    [
        ([], 4),
        (["--chip", "chip-B"], 1),
        (["--chip", "1", "--layer-class", "mono,few"], 2),
        (["--min-confidence", "0.75"], 2),
        (["--max-area", "100", "-m", "graphene"], 2),
        (["--min-layers", "2", "--max-layers", "10"], 1),
        (["--scan", "2"], 1),
        (["--status", "new", "--limit", "3"], 3),
        (["--status", "used"], 0),
    ],
)
def test_list_json_counts(url: str, args: list[str], n: int) -> None:
    code, out, err = invoke("flakes", "list", "--db", url, "--format", "json", *args)
    assert code == 0, err
    assert len(json.loads(out)) == n


def test_table_set_status_and_export_file(url: str, tmp_path: Path) -> None:
    code, out, _ = invoke("flakes", "list", "--db", url)
    assert code == 0 and "4 of 4 matching flakes" in out and "hBN" in out
    code, out, _ = invoke("flakes", "set-status", "2", "used", "--notes", "stack 1", "--db", url)
    assert code == 0 and "flake 2: status used" in out
    target = tmp_path / "used.json"
    code, _, err = invoke(
        "flakes", "export", "--db", url, "--status", "used", "-f", "json", "-o", str(target)
    )
    assert code == 0 and "wrote 1 flakes" in err
    (flake,) = json.loads(target.read_text())
    assert (flake["id"], flake["status"], flake["notes"]) == (2, "used", "stack 1")
    code, out, _ = invoke("flakes", "export", "--db", url)
    assert code == 0 and out.startswith("id,chip_id,scan_id") and out.count("\n") == 5


def test_env_var_default(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAKEFINDER_DATABASE_URL", url)
    code, out, _ = invoke("flakes", "list", "-f", "json")
    assert code == 0 and len(json.loads(out)) == 4


def test_errors_are_one_line(url: str, tmp_path: Path) -> None:
    code, _, err = invoke("flakes", "set-status", "1", "lost", "--db", url)
    assert code == 2 and "error: unknown flake status 'lost'" in err
    code, _, err = invoke("flakes", "list", "--db", url, "--layer-class", "bilayer")
    assert code == 2 and "unknown layer class" in err
    code, _, err = invoke("flakes", "list", "--db", url, "--chip", "nope")
    assert code == 2 and "no chip 'nope'" in err
    code, _, err = invoke("flakes", "list", "--db", "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    assert code == 2 and "connection refused" in err and "secret" not in err
    code, _, err = invoke("flakes", "list", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert code == 2 and "flakefinder db upgrade" in err
