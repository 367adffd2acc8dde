"""Store benchmark: cost of ``Database.record_tile`` per scan tile (the scan loop's store step).

Records ``--tiles`` tiles with 0, 3 and 20 flakes each (24-vertex polygons) into a fresh scan and
prints one markdown table of the median wall and CPU time per tile. Each row is measured twice, in
alternating rounds on the same database: ``record_tile`` as it is now, and a copy of the original
implementation (one ORM session per tile: ``get(ScanRow)``, an existence select, flush, ORM flake
objects) kept here as the reference, so a loaded machine affects both alike. The last row is the
cost of re-recording an already stored tile (idempotent no-op).

    .venv/bin/python benchmarks/bench_store.py                   # temporary SQLite file (WAL)
    .venv/bin/python benchmarks/bench_store.py --tiles 500
    .venv/bin/python benchmarks/bench_store.py --url postgresql+psycopg://user:pw@host/db  # migrated
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flakefinder.db import Database
    from flakefinder.domain import FlakeRecord, TileRecord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

FLAKE_COUNTS = (0, 3, 20)
ROUNDS = 4


def legacy_record_tile(
    db: Database, scan_id: int, tile: TileRecord, flakes: Iterable[FlakeRecord]
) -> None:
    """The original ``Database.record_tile`` (before the Core/bulk rewrite), for reference."""
    from sqlalchemy import exc, select

    from flakefinder.db import convert
    from flakefinder.db.models import FlakeRow, ImageRow, ScanRow

    flakes = list(flakes)
    try:
        with db.session() as s:
            scan = s.get(ScanRow, scan_id)
            if scan is None:
                raise KeyError(f"no scan with id {scan_id}")
            done = s.scalar(
                select(ImageRow.id).where(
                    ImageRow.scan_id == scan_id, ImageRow.tile_index == tile.tile_index
                )
            )
            if done is not None:
                return
            image = ImageRow(**convert.image_values(tile, scan_id))
            s.add(image)
            s.flush()
            s.add_all(
                FlakeRow(**convert.flake_values(f, scan_id, image.id, scan.chip_id)) for f in flakes
            )
    except exc.IntegrityError:
        if tile.tile_index not in db.completed_tiles(scan_id):
            raise


def make_flakes(n: int, tile_index: int) -> list[FlakeRecord]:
    import math

    from flakefinder.domain import FlakeRecord, LayerClass

    out = []
    for k in range(n):
        cx, cy, r = 100.0 * tile_index + 7.0 * k, 50.0 + 3.0 * k, 5.0 + k % 4
        poly = tuple(
            (cx + r * math.cos(a * math.pi / 12), cy + r * math.sin(a * math.pi / 12))
            for a in range(24)
        )
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        out.append(
            FlakeRecord(
                material="graphene",
                layer_class=LayerClass.FEW,
                confidence=0.875,
                polygon_um=poly,
                bbox_um=(min(xs), min(ys), max(xs), max(ys)),
                area_um2=math.pi * r * r,
                polygon_px=tuple((x * 4.0, y * 4.0) for x, y in poly),
                bbox_px=(min(xs) * 4, min(ys) * 4, max(xs) * 4, max(ys) * 4),
                detector="contrast",
                detector_version="1",
                layer_count=3,
                contrast_rgb=(0.1, 0.2, 0.3),
                tile_index=tile_index,
            )
        )
    return out


Recorder = Callable[["Database", int, "TileRecord", "list[FlakeRecord]"], None]


def time_tiles(
    db: Database, record: Recorder, scan_id: int, first: int, n_tiles: int, n_flakes: int
) -> tuple[list[float], list[float]]:
    """Per-tile wall and CPU seconds of ``record`` for tiles ``first .. first + n_tiles - 1``."""
    from flakefinder.domain import TileRecord

    walls, cpus = [], []
    for i in range(first, first + n_tiles):
        tile = TileRecord(i, 100.0 * i, 50.0, 0.0, 1024, 1024, 0.23, f"tile_{i:05d}.png")
        flakes = make_flakes(n_flakes, i)
        w0, c0 = time.perf_counter(), time.process_time()
        record(db, scan_id, tile, flakes)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


def run(
    url: str, n_tiles: int
) -> list[tuple[str, list[float], list[float], list[float], list[float]]]:
    from flakefinder.db import Database

    def current(db: Database, scan_id: int, tile: TileRecord, flakes: list[FlakeRecord]) -> None:
        db.record_tile(scan_id, tile, flakes)

    rows = []
    db = Database(url)
    try:
        db.migrate()
        chip = db.add_chip(f"bench-store-{time.time_ns()}", ["graphene"], 90.0)

        def new_scan() -> int:
            return db.start_scan(chip, settings={}, objective="50x", um_per_px=0.23,
                                 detector="contrast", detector_version="1",
                                 n_tiles_planned=n_tiles)  # fmt: skip

        time_tiles(db, current, new_scan(), 0, 20, 3)  # warm up: statement caches, pool
        time_tiles(db, legacy_record_tile, new_scan(), 0, 20, 3)
        for n_flakes in FLAKE_COUNTS:
            per_round = max(n_tiles // ROUNDS, 1)
            scans = {"old": new_scan(), "new": new_scan()}
            got: dict[str, tuple[list[float], list[float]]] = {"old": ([], []), "new": ([], [])}
            for r in range(ROUNDS):
                for key, fn in (("old", legacy_record_tile), ("new", current)):
                    w, c = time_tiles(db, fn, scans[key], r * per_round, per_round, n_flakes)
                    got[key][0].extend(w)
                    got[key][1].extend(c)
            rows.append((f"{n_flakes} flakes/tile", *got["old"], *got["new"]))
        # idempotent re-record of stored tiles (resume never does this; concurrent writers might)
        again = {k: time_tiles(db, fn, scans[k], 0, 30, 3) for k, fn in
                 (("old", legacy_record_tile), ("new", current))}  # fmt: skip
        rows.append(("tile already stored (no-op)", *again["old"], *again["new"]))
    finally:
        db.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=400, help="tiles per row and implementation")
    ap.add_argument("--url", default=None, help="database URL (default: temporary SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="flakefinder-bench-store-") as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'store.db'}"
        rows = run(url, args.tiles)
    from flakefinder.db.settings import mask_url

    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "n/a"
    print(
        f"\nflakefinder store benchmark — {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {load}, "
        f"{mask_url(url) if args.url else 'SQLite file (WAL, synchronous=NORMAL)'}, "
        f"median per tile over {args.tiles} tiles\n"
    )
    print("| record_tile | original: wall | original: CPU | now: wall | now: CPU | CPU speed-up |")
    print("|---|---|---|---|---|---|")
    for name, ow, oc, nw, nc in rows:
        speed = statistics.median(oc) / max(statistics.median(nc), 1e-9)
        print(f"| {name} | {_ms(ow)} | {_ms(oc)} | {_ms(nw)} | {_ms(nc)} | {speed:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
