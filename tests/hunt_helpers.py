"""A small, exactly known hunt for the web tests, on top of ``web_helpers.populate``.

Scan 1 (chip-A, two 128 px tiles at 0.5 µm/px centred at x = 100 and 164, y = 100) gets an
overview pass (a 100 x 75 px mosaic at 4 µm/px over x 0..400, y 0..300 µm) and a revisit pass
at 50x of flake 2 (3 layers at 20x): found again with 2 layers, two close-ups (in focus and
+0.5 µm). Chip "chip-E" has scan 2, stopped after its overview: its region can still change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flakefinder.db import Database
from flakefinder.db.hunt import HuntStore
from flakefinder.domain import FlakeRecord, LayerClass
from flakefinder.scan.region import Exclusion, SearchRegion, plan_region
from flakefinder.scan.revisit import CloseupRecord, RevisitRecord, RevisitStatus
from flakefinder.scan.throughput import PassReport
from web_helpers import populate

AREA = (0.0, 0.0, 400.0, 300.0)
FOV = (64.0, 64.0)
REGION = SearchRegion((60.0, 60.0, 240.0, 140.0), (Exclusion("residue", (60.0, 60.0, 90.0, 90.0)),))


def _mosaic(path: Path) -> str:
    pixels = np.full((75, 100, 3), (40, 40, 44), np.uint8)
    pixels[10:65, 10:90] = (150, 120, 170)  # the chip
    pixels[15:22, 15:22] = (135, 110, 150)  # residue
    Image.fromarray(pixels).save(path)
    return str(path)


def add_overview(hunt: HuntStore, chip_id: int, scan_id: int, folder: Path) -> int:
    n = len(plan_region(REGION, *FOV, 0.1))
    pass_id = hunt.start_pass(chip_id, scan_id=scan_id, kind="overview", objective="5x",
                              um_per_px=4.0, n_planned=1, settings={})  # fmt: skip
    hunt.update_pass(pass_id, settings={
        "area_um": list(AREA), "search_objective": "20x", "search_fov_um": list(FOV),
        "overlap": 0.1, "region": REGION.to_dict(), "proposed_region": REGION.to_dict(),
        "region_edited": False, "search_tiles": n,
        "analysis": {"chip_corners_um": [[40, 40], [360, 40], [360, 260], [40, 260]]},
        "mosaic_path": _mosaic(folder / f"overview_{scan_id}.png"), "mosaic_extent_um": list(AREA),
    })  # fmt: skip
    hunt.finish_pass(pass_id, PassReport("overview", "5x", 4.0, 400, 300, 0.1, 1, 1.5, capture_s=0.5))
    hunt.set_planned_tiles(scan_id, n)
    return pass_id


def add_revisit(hunt: HuntStore, chip_id: int, folder: Path) -> int:
    pass_id = hunt.start_pass(chip_id, scan_id=1, kind="revisit", objective="50x", um_per_px=0.2,
                              n_planned=1, settings={"filter": "layers<=3", "route": [2]})  # fmt: skip
    paths = []
    for k in range(2):
        pixels = np.full((160, 160, 3), (150, 120, 170), np.uint8)
        pixels[40:115, 45:120] = (120, 100, 160) if k == 0 else (128, 106, 163)
        paths.append(folder / f"flake_2_pass{pass_id}_{k}.png")
        Image.fromarray(pixels).save(paths[-1])
    poly_px = ((45.0, 40.0), (120.0, 40.0), (120.0, 115.0), (45.0, 115.0))
    poly_um = tuple((98.0 + (x - 45) * 0.2, 98.0 + (y - 40) * 0.2) for x, y in poly_px)
    refined = FlakeRecord("graphene", LayerClass.FEW, 0.93, poly_um, (98.0, 98.0, 113.0, 113.0),
                          225.0, poly_px, (45.0, 40.0, 120.0, 115.0), "contrast", "1.0",
                          layer_count=2)  # fmt: skip
    closeups = [
        CloseupRecord(k, 105.5, 105.5, 1.5 + 0.5 * k, 0.5 * k, 10.0, 160, 160, 0.2, 0.1, str(p))
        for k, p in enumerate(paths)
    ]
    record = RevisitRecord(2, RevisitStatus.OK, "", "50x", 0.2, 1.5, refined, 0.91)
    hunt.record_revisit(pass_id, record, closeups)
    hunt.finish_pass(pass_id, PassReport("revisit", "50x", 0.2, 32, 32, 0.1, 1, 2.0, focus_s=1.2,
                                         route_um=50.0, naive_route_um=50.0))  # fmt: skip
    return pass_id


def populate_hunt(url: str, folder: Path) -> Database:
    """``web_helpers.populate`` plus the hunt described in the module docstring."""
    db = populate(url, folder / "tiles")
    hunt = HuntStore(db)
    add_overview(hunt, 1, 1, folder / "tiles")
    add_revisit(hunt, 1, folder / "tiles")
    chip = db.add_chip("chip-E", ["graphene"], 90.0)
    scan = db.start_scan(chip, settings={}, objective="20x", um_per_px=0.5, detector="contrast",
                         detector_version="1.0", n_tiles_planned=0)  # fmt: skip
    add_overview(hunt, chip, scan, folder / "tiles")
    db.mark_interrupted(scan)
    return db
