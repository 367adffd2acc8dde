"""flakefinder.db.Database: chips, scans, tiles, flakes, queries, status, designs (SQLite + PostgreSQL)."""

from __future__ import annotations

from datetime import timezone
from typing import Any

import pytest

from flakefinder.db import Database, DesignLayer, FlakeQuery, FlakeStatus, ScanStatus
from flakefinder.domain import FlakeRecord, LayerClass, TileRecord
from flakefinder.errors import DatabaseError
from flakefinder.scan.store import ScanStore


def flake(material: str, lc: LayerClass, conf: float, x: float, y: float, w: float, h: float,
          layers: int | None, tile: int) -> FlakeRecord:  # fmt: skip
    poly = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    return FlakeRecord(
        material=material,
        layer_class=lc,
        confidence=conf,
        polygon_um=poly,
        bbox_um=(x, y, x + w, y + h),
        area_um2=w * h,
        polygon_px=((0.0, 0.0), (w * 5, 0.0), (w * 5, h * 5), (0.0, h * 5)),
        bbox_px=(0.0, 0.0, w * 5, h * 5),
        detector="contrast",
        detector_version="1.0",
        layer_count=layers,
        contrast_rgb=(0.25, 0.5, 0.125),
        tile_index=tile,
    )


MONO, FEW, THICK = LayerClass.MONO, LayerClass.FEW, LayerClass.THICK
TILE0 = [
    flake("graphene", MONO, 0.95, 0, 0, 10, 10, 1, 0),  # area 100
    flake("graphene", FEW, 0.8, 100, 0, 20, 20, 3, 0),  # area 400
    flake("hBN", THICK, 0.625, 200, 200, 50, 50, 15, 0),  # area 2500
]
TILE1 = [
    flake("graphene", MONO, 0.5, 500, 500, 5, 5, 1, 1),  # area 25
    flake("MoS2", MONO, 0.99, 600, 0, 30, 30, None, 1),  # area 900
]


def tile(i: int) -> TileRecord:
    return TileRecord(i, 100.0 * i, 50.0, 1.5, 640, 480, 0.2, f"tiles/{i:04d}.png")


def start(db: Database, chip: int, planned: int = 4) -> int:
    return db.start_scan(chip, settings={"overlap": 0.1, "area_um": [0, 0, 1000, 1000]},
                         objective="20x", um_per_px=0.2, detector="contrast",
                         detector_version="1.0", n_tiles_planned=planned)  # fmt: skip


@pytest.fixture
def filled(db: Database) -> tuple[Database, int, int]:
    chip = db.add_chip("chip-A", ["graphene", "hBN", "MoS2"], 90.0, notes="first")
    scan = start(db, chip)
    db.record_tile(scan, tile(0), TILE0)
    db.record_tile(scan, tile(1), TILE1)
    db.record_tile(scan, tile(2), [])
    return db, chip, scan


def test_database_is_a_scan_store(db: Database) -> None:
    store: ScanStore = db  # static check; and the methods exist at runtime
    assert callable(store.record_tile) and callable(db.mark_interrupted)


def test_chips(db: Database) -> None:
    a = db.add_chip("chip-A", ["graphene", "hBN"], 90.0, notes="n")
    assert db.add_chip("chip-A", ["graphene"], 285.0, get_or_create=True) == a
    with pytest.raises(DatabaseError, match="already exists"):
        db.add_chip("chip-A", "graphene", 90.0)
    b = db.add_chip("chip-B", "WSe2", 285.0)
    chip = db.get_chip(a)
    assert chip is not None and chip == db.get_chip("chip-A")
    assert chip.materials == ("graphene", "hBN")
    assert chip.oxide_thickness_nm == 90.0 and chip.notes == "n"
    assert chip.created_at.tzinfo is not None
    assert [c.id for c in db.list_chips()] == [a, b]
    assert db.get_chip(999) is None


def test_round_trip_and_progress(filled: tuple[Database, int, int]) -> None:
    db, chip, scan = filled
    assert db.completed_tiles(scan) == {0, 1, 2}
    assert db.scan_flakes(scan) == TILE0 + TILE1  # domain records, tile_index included
    (info,) = db.list_scans(chip)
    assert (info.id, info.chip_name, info.tiles_done, info.n_tiles_planned) == (
        scan,
        "chip-A",
        3,
        4,
    )
    assert info.n_flakes == 5 and info.progress == 0.75
    assert info.status is ScanStatus.RUNNING and info.finished_at is None
    assert info.settings == {"overlap": 0.1, "area_um": [0, 0, 1000, 1000]}
    assert info.started_at.tzinfo is not None
    images = db.list_images(scan)
    assert [i.tile_index for i in images] == [0, 1, 2]
    assert images[1].x_um == 100.0 and images[1].file_path == "tiles/0001.png"
    assert db.get_image(images[0].id) == images[0]

    stored = db.query_flakes()
    assert [f.id for f in stored] == sorted(f.id for f in stored)
    first = stored[0]
    assert first.chip_id == chip and first.scan_id == scan and first.image_id == images[0].id
    assert first.bbox_um == (0.0, 0.0, 10.0, 10.0) and first.centroid_um == (5.0, 5.0)
    assert first.polygon_um == TILE0[0].polygon_um and first.bbox_px == TILE0[0].bbox_px
    assert first.contrast_rgb == (0.25, 0.5, 0.125) and first.layer_count == 1
    assert first.status is FlakeStatus.NEW and first.notes == ""
    assert first.created_at.tzinfo == timezone.utc or first.created_at.utcoffset() is not None
    assert db.get_flake(first.id) == first
    assert db.get_flake(10_000) is None


@pytest.mark.parametrize(
    ("query", "areas"),
    [
        (FlakeQuery(), [100, 400, 2500, 25, 900]),
        (FlakeQuery(materials="graphene"), [100, 400, 25]),
        (FlakeQuery(materials=("graphene", "MoS2"), layer_classes="mono"), [100, 25, 900]),
        (FlakeQuery(min_area_um2=100), [100, 400, 2500, 900]),
        (FlakeQuery(max_area_um2=400), [100, 400, 25]),
        (FlakeQuery(min_area_um2=100, max_area_um2=900), [100, 400, 900]),
        (FlakeQuery(min_confidence=0.8), [100, 400, 900]),
        (FlakeQuery(min_layer_count=2, max_layer_count=20), [400, 2500]),
        (FlakeQuery(max_layer_count=1), [100, 25]),  # unknown layer count (None) never matches
        (FlakeQuery(region_um=(0, 0, 150, 50)), [100, 400]),
        (FlakeQuery(region_um=(240, 240, 700, 700)), [2500, 25]),
        (FlakeQuery(order_by="-area_um2", limit=2), [2500, 900]),
        (FlakeQuery(order_by="area_um2", limit=2, offset=1), [100, 400]),
        (FlakeQuery(order_by="-confidence"), [900, 100, 400, 2500, 25]),
        (FlakeQuery(statuses="new", layer_classes=["few", "thick"]), [400, 2500]),
    ],
)
def test_queries(filled: tuple[Database, int, int], query: FlakeQuery, areas: list[float]) -> None:
    db, _, _ = filled
    assert [f.area_um2 for f in db.query_flakes(query)] == areas
    unpaged = FlakeQuery(**{**query.__dict__, "limit": None, "offset": 0})
    assert db.count_flakes(query) == len(db.query_flakes(unpaged))


def test_chip_and_scan_filters(filled: tuple[Database, int, int]) -> None:
    db, chip, scan = filled
    other = db.add_chip("chip-B", ["graphene"], 285.0)
    scan2 = start(db, other, planned=1)
    db.record_tile(scan2, tile(0), [flake("graphene", MONO, 0.7, 1, 1, 2, 2, 1, 0)])
    assert db.count_flakes() == 6
    assert db.count_flakes(FlakeQuery(chip_id=chip)) == 5
    assert db.count_flakes(FlakeQuery(chip_id=other)) == 1
    assert db.count_flakes(FlakeQuery(scan_id=scan2, materials="graphene")) == 1
    assert db.count_flakes(FlakeQuery(scan_id=scan, chip_id=other)) == 0
    assert [s.id for s in db.list_scans()] == [scan2, scan]


def test_bad_query_values() -> None:
    with pytest.raises(ValueError, match="layer class"):
        FlakeQuery(layer_classes="bilayer")
    with pytest.raises(ValueError, match="order flakes by"):
        FlakeQuery(order_by="password")
    with pytest.raises(ValueError, match="status"):
        FlakeQuery(statuses="lost")


def test_record_tile_is_idempotent(filled: tuple[Database, int, int]) -> None:
    db, _, scan = filled
    db.record_tile(scan, tile(0), TILE0)
    db.record_tile(scan, tile(1), TILE1[:1])  # different flakes: still ignored, tile is stored
    assert db.count_flakes() == 5
    assert db.table_counts()["images"] == 3
    with pytest.raises(KeyError, match="no scan"):
        db.record_tile(12345, tile(0), [])


def test_record_tile_is_one_transaction(db: Database) -> None:
    chip = db.add_chip("c", "graphene", 90.0)
    scan = start(db, chip)
    bad = flake("graphene", MONO, 0.9, 0, 0, 1, 1, 1, 0)
    bad = FlakeRecord(**{**bad.__dict__, "layer_class": "bilayer"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        db.record_tile(scan, tile(0), [TILE0[0], bad])
    assert db.completed_tiles(scan) == set()  # image row rolled back with the flakes
    assert db.count_flakes() == 0


def test_resume_finish_interrupt(db: Database) -> None:
    chip = db.add_chip("c", "graphene", 90.0)
    assert db.find_resumable_scan(chip) is None
    s1 = start(db, chip)
    db.record_tile(s1, tile(0), TILE0)
    db.mark_interrupted(s1)
    resumable = db.find_resumable_scan(chip)
    assert resumable is not None and resumable.id == s1
    assert resumable.status is ScanStatus.INTERRUPTED
    assert db.completed_tiles(s1) == {0} and len(db.scan_flakes(s1)) == 3
    db.record_tile(s1, tile(1), TILE1)
    db.finish_scan(s1)
    info = db.get_scan(s1)
    assert info is not None and info.status is ScanStatus.FINISHED
    assert info.finished_at is not None and info.finished_at >= info.started_at
    assert db.find_resumable_scan(chip) is None
    s2 = start(db, chip)
    found = db.find_resumable_scan(chip)
    assert found is not None and found.id == s2
    assert db.get_scan(999) is None
    with pytest.raises(KeyError):
        db.finish_scan(999)


def test_flake_status(filled: tuple[Database, int, int]) -> None:
    db, _, _ = filled
    ids = [f.id for f in db.query_flakes()]
    updated = db.set_flake_status(ids[0], "used", notes="in device D12")
    assert updated.status is FlakeStatus.USED and updated.notes == "in device D12"
    db.set_flake_status(ids[1], FlakeStatus.REJECTED)
    db.set_flake_status(ids[2], "Candidate")
    again = db.set_flake_status(ids[0], "used")  # notes=None keeps the notes
    assert again.notes == "in device D12"
    assert db.count_flakes(FlakeQuery(statuses="new")) == 2
    assert [f.id for f in db.query_flakes(FlakeQuery(statuses=["used", "candidate"]))] == [
        ids[0],
        ids[2],
    ]
    with pytest.raises(ValueError, match="unknown flake status 'lost'.*new"):
        db.set_flake_status(ids[0], "lost")
    with pytest.raises(KeyError, match="no flake"):
        db.set_flake_status(99_999, "used")


def test_designs(filled: tuple[Database, int, int]) -> None:
    db, _, _ = filled
    ids = [f.id for f in db.query_flakes()]
    layers: list[DesignLayer | dict[str, Any]] = [
        DesignLayer(ids[1], x_um=1.0, y_um=2.0, rotation_deg=30.0, order=1),
        {"flake_id": ids[0], "x_um": 0.0, "y_um": 0.0, "rotation_deg": 0.0, "order": 0},
    ]
    d = db.save_design("hBN/graphene", layers, notes="twisted")
    design = db.get_design(d)
    assert design is not None
    assert design.name == "hBN/graphene" and design.notes == "twisted"
    assert [lay.flake_id for lay in design.layers] == [ids[0], ids[1]]  # sorted by order
    assert design.layers[1] == DesignLayer(ids[1], 1.0, 2.0, 30.0, 1)
    db.save_design("renamed", design.layers[:1], design_id=d)
    changed = db.get_design(d)
    assert changed is not None and changed.name == "renamed" and len(changed.layers) == 1
    assert changed.updated_at >= changed.created_at and changed.notes == ""
    d2 = db.save_design("empty", [])
    assert [x.id for x in db.list_designs()] == [d, d2]
    assert db.delete_design(d) is True and db.delete_design(d) is False
    assert db.get_design(d) is None
    with pytest.raises(KeyError):
        db.save_design("x", [], design_id=d)


def test_record_tile_rolls_back_when_the_database_refuses_a_flake(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import exc

    from flakefinder.db import convert

    chip = db.add_chip("c", "graphene", 90.0)
    scan = start(db, chip)
    db.record_tile(scan, tile(0), TILE0[:1])  # chip id now cached for the scan
    good = convert.flake_values

    def bad_status(f: FlakeRecord, *a: Any) -> dict[str, Any]:
        return {**good(f, *a), "status": "lost"}  # violates the status CHECK constraint

    monkeypatch.setattr(convert, "flake_values", bad_status)
    with pytest.raises(exc.IntegrityError):
        db.record_tile(scan, tile(1), TILE1)
    assert db.completed_tiles(scan) == {0}  # tile 1's image row rolled back with its flakes
    assert db.count_flakes() == 1
    monkeypatch.setattr(convert, "flake_values", good)
    db.record_tile(scan, tile(1), TILE1)
    assert db.scan_flakes(scan) == TILE0[:1] + TILE1


def test_in_memory_sqlite_is_one_database_for_all_threads() -> None:
    import threading

    with Database("sqlite://") as db:
        db.migrate()
        scan = start(db, db.add_chip("c", "graphene", 90.0))
        t = threading.Thread(target=db.record_tile, args=(scan, tile(0), TILE0))
        t.start()
        t.join()
        assert db.completed_tiles(scan) == {0} and db.scan_flakes(scan) == TILE0
