"""A small, exactly known flake database for the web UI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flakefinder.db import Database
from flakefinder.domain import FlakeRecord, LayerClass, TileRecord

UM_PER_PX = 0.5
TILE_PX = 128


def _square(x0: float, y0: float, size: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size))


# (tile, material, layer_count, layer_class, x0_px, y0_px, size_px, confidence)
FLAKES = [
    (0, "graphene", 1, LayerClass.MONO, 10, 10, 20, 0.95),
    (0, "graphene", 3, LayerClass.FEW, 60, 60, 30, 0.80),
    (1, "graphene", 20, LayerClass.THICK, 20, 30, 40, 0.70),
    (1, "hBN", 8, LayerClass.FEW, 80, 80, 24, 0.60),
]


def populate(url: str, image_dir: Path) -> Database:
    """Chip "chip-A" (graphene, hBN), one finished scan of two tiles, the four FLAKES."""
    db = Database(url)
    db.migrate()
    chip = db.add_chip("chip-A", ["graphene", "hBN"], 90.0, "test chip")
    scan = db.start_scan(
        chip,
        settings={"test": True},
        objective="50x",
        um_per_px=UM_PER_PX,
        detector="test",
        detector_version="1",
        n_tiles_planned=2,
    )
    image_dir.mkdir(parents=True, exist_ok=True)
    for tile in (0, 1):
        x_um, y_um = 100.0 + tile * TILE_PX * UM_PER_PX, 100.0
        pixels = np.full((TILE_PX, TILE_PX, 3), (150, 120, 170), np.uint8)
        records = []
        for t, mat, n, cls, x0, y0, size, conf in FLAKES:
            if t != tile:
                continue
            pixels[y0 : y0 + size, x0 : x0 + size] = (120, 100, 160)
            poly_px = _square(x0, y0, size)
            poly_um = tuple(
                (x_um + (x - TILE_PX / 2) * UM_PER_PX, y_um + (y - TILE_PX / 2) * UM_PER_PX)
                for x, y in poly_px
            )
            xs, ys = [p[0] for p in poly_um], [p[1] for p in poly_um]
            records.append(
                FlakeRecord(
                    material=mat,
                    layer_class=cls,
                    confidence=conf,
                    polygon_um=poly_um,
                    bbox_um=(min(xs), min(ys), max(xs), max(ys)),
                    area_um2=(size * UM_PER_PX) ** 2,
                    polygon_px=poly_px,
                    bbox_px=(x0, y0, x0 + size, y0 + size),
                    detector="test",
                    detector_version="1",
                    layer_count=n,
                    tile_index=tile,
                )
            )
        path = image_dir / f"tile_{tile}.png"
        Image.fromarray(pixels).save(path)
        db.record_tile(
            scan,
            TileRecord(tile, x_um, y_um, 0.0, TILE_PX, TILE_PX, UM_PER_PX, str(path)),
            records,
        )
    db.finish_scan(scan)
    return db


GRID_PITCH_UM = 10.0
GRID_FLAKE_UM = 4.0


def populate_grid(db: Database, n_side: int, name: str = "chip-G") -> int:
    """Chip ``name`` with ``n_side`` × ``n_side`` square flakes (4 µm) on a 10 µm lattice.

    Flake (i, j) covers x in [10 i, 10 i + 4] and y in [10 j, 10 j + 4] µm; it is hBN when
    ``(i + j) % 4 == 0`` and graphene otherwise. One tile without a file spans -3 µm to
    ``10 n_side - 3`` µm on both axes. Returns the chip id.
    """
    chip = db.add_chip(name, ["graphene", "hBN"], 90.0)
    scan = db.start_scan(
        chip,
        settings={},
        objective="50x",
        um_per_px=UM_PER_PX,
        detector="test",
        detector_version="1",
        n_tiles_planned=1,
    )
    records = []
    for i in range(n_side):
        for j in range(n_side):
            x0, y0, s = i * GRID_PITCH_UM, j * GRID_PITCH_UM, GRID_FLAKE_UM
            records.append(
                FlakeRecord(
                    material="hBN" if (i + j) % 4 == 0 else "graphene",
                    layer_class=LayerClass.FEW,
                    confidence=0.9,
                    polygon_um=_square(x0, y0, s),
                    bbox_um=(x0, y0, x0 + s, y0 + s),
                    area_um2=s * s,
                    polygon_px=_square(0, 0, s / UM_PER_PX),
                    bbox_px=(0, 0, s / UM_PER_PX, s / UM_PER_PX),
                    detector="test",
                    detector_version="1",
                    layer_count=3,
                    tile_index=0,
                )
            )
    side_um = n_side * GRID_PITCH_UM  # one tile (no file) over the lattice: extent -3 .. side - 3
    size_px = round(side_um / UM_PER_PX)
    centre = side_um / 2 - 3.0
    db.record_tile(
        scan, TileRecord(0, centre, centre, 0.0, size_px, size_px, UM_PER_PX, None), records
    )
    db.finish_scan(scan)
    return chip


STRIP_TILE_PX = 128
STRIP_UM_PER_PX = 150.0 / STRIP_TILE_PX  # a tile is 150 µm wide: the strip is one tile wide


def strip_colour(i: int) -> tuple[int, int, int]:
    """The flat colour of tile ``i`` of :func:`populate_strip` (all distinct)."""
    return (20 + (i * 37) % 200, 40 + (i * 11) % 180, 250 - i)


def populate_strip(db: Database, image_dir: Path, n_tiles: int = 67, name: str = "strip") -> int:
    """Chip ``name``: a long thin scan, one column of ``n_tiles`` flat-coloured 150 µm tiles
    (67: 0.15 mm x 10.05 mm), tile i centred at (75, 75 + 150 i) µm. Returns the chip id."""
    chip = db.add_chip(name, ["graphene"], 90.0)
    scan = db.start_scan(
        chip,
        settings={},
        objective="20x",
        um_per_px=STRIP_UM_PER_PX,
        detector="test",
        detector_version="1",
        n_tiles_planned=n_tiles,
    )
    image_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_tiles):
        path = image_dir / f"strip_{i:03d}.png"
        pixels = np.full((STRIP_TILE_PX, STRIP_TILE_PX, 3), strip_colour(i), np.uint8)
        Image.fromarray(pixels).save(path)
        record = TileRecord(
            i, 75.0, 75.0 + 150.0 * i, 0.0, STRIP_TILE_PX, STRIP_TILE_PX, STRIP_UM_PER_PX, str(path)
        )
        db.record_tile(scan, record, [])
    db.finish_scan(scan)
    return chip
