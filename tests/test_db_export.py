"""CSV / JSON export of stored flakes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from flakefinder.db import FLAKE_CSV_COLUMNS, Database, FlakeQuery, flakes_to_csv, flakes_to_json
from flakefinder.domain import FlakeRecord, LayerClass, TileRecord


def _fill(db: Database) -> None:
    chip = db.add_chip("chip-X", ["graphene", "hBN"], 90.0)
    scan = db.start_scan(chip, settings={}, objective="50x", um_per_px=0.1, detector="rulebased",
                         detector_version="2", n_tiles_planned=1)  # fmt: skip
    flakes = [
        FlakeRecord("graphene", LayerClass.MONO, 0.875, ((0, 0), (4, 0), (4, 2), (0, 2)),
                    (0, 0, 4, 2), 8.0, ((10, 10), (50, 10), (50, 30)), (10, 10, 50, 30),
                    "rulebased", "2", 1, (0.0625, 0.125, 0.25), 0),
        FlakeRecord("hBN", LayerClass.FEW, 0.5, ((10, 10), (12, 10), (12, 12)),
                    (10, 10, 12, 12), 2.0, ((1, 1), (2, 1), (2, 2)), (1, 1, 2, 2),
                    "rulebased", "2", None, None, 0),
    ]  # fmt: skip
    db.record_tile(scan, TileRecord(0, 0.0, 0.0, 0.0, 64, 64, 0.1), flakes)


def test_csv(db: Database, tmp_path: Path) -> None:
    _fill(db)
    rows = db.query_flakes(FlakeQuery(order_by="-confidence"))
    out = tmp_path / "flakes.csv"
    text = flakes_to_csv(rows, out)
    assert out.read_text() == text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(FLAKE_CSV_COLUMNS)
    assert [r["material"] for r in parsed] == ["graphene", "hBN"]
    g, h = parsed
    assert (g["layer_class"], g["layer_count"], g["confidence"], g["area_um2"]) == (
        "mono", "1", "0.875", "8.0"
    )  # fmt: skip
    assert (g["centroid_x_um"], g["centroid_y_um"]) == ("2.0", "1.0")
    assert (g["bbox_x_max_um"], g["bbox_y_max_um"]) == ("4.0", "2.0")
    assert (g["contrast_r"], g["contrast_g"], g["contrast_b"]) == ("0.0625", "0.125", "0.25")
    assert json.loads(g["polygon_um"]) == [[0, 0], [4, 0], [4, 2], [0, 2]]
    assert g["status"] == "new" and g["detector"] == "rulebased"
    assert h["layer_count"] == "" and h["contrast_r"] == ""
    buf = io.StringIO()
    flakes_to_csv(rows[:1], buf)
    assert buf.getvalue().count("\n") == 2


def test_json(db: Database, tmp_path: Path) -> None:
    _fill(db)
    rows = db.query_flakes()
    out = tmp_path / "flakes.json"
    text = flakes_to_json(rows, out)
    data = json.loads(out.read_text())
    assert data == json.loads(text) == [f.to_dict() for f in rows]
    first = data[0]
    assert first["material"] == "graphene" and first["layer_class"] == "mono"
    assert first["polygon_um"] == [[0, 0], [4, 0], [4, 2], [0, 2]]
    assert first["bbox_um"] == [0, 0, 4, 2] and first["centroid_um"] == [2, 1]
    assert first["contrast_rgb"] == [0.0625, 0.125, 0.25]
    assert data[1]["contrast_rgb"] is None and data[1]["layer_count"] is None
    assert flakes_to_json([]) == "[]\n"
