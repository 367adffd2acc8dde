"""The overview pass: a low-magnification mosaic of the whole chip and the search region it
proposes, stored as an overview pass of the scan (the mosaic as a PNG next to the tiles).

Nothing is stored half-done: the pass row is created running, and only when the mosaic file is
written (atomically) does the row get the analysis, the region and the report; an interrupted
overview is marked interrupted and simply runs again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flakefinder.errors import FlakefinderError
from flakefinder.hardware.objectives import find_objective, switch_objective
from flakefinder.scan.loop import progress_bar
from flakefinder.scan.overview import OverviewAnalysis, OverviewFrame, analyse_overview, stitch
from flakefinder.scan.plan import plan_raster
from flakefinder.scan.region import plan_region
from flakefinder.scan.throughput import PassReport

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from flakefinder.db.hunt import HuntStore
    from flakefinder.hardware.protocols import Microscope

Rect = tuple[float, float, float, float]
MAX_MOSAIC_PX = 4096  # the stored picture's long side at most


@dataclass(frozen=True)
class OverviewOutcome:
    pass_id: int
    analysis: OverviewAnalysis
    search_tiles: int
    report: PassReport
    mosaic_path: Path | None


def corners_box(corners_um: list[tuple[float, float]]) -> Rect:
    xs, ys = [p[0] for p in corners_um], [p[1] for p in corners_um]
    return (min(xs), min(ys), max(xs), max(ys))


def overview_area(corners_um: list[tuple[float, float]], margin: float = 0.15) -> Rect:
    """The area to image at low magnification: the chip corners' box grown by ``margin`` of
    its size on every side (at least 200 µm), so the chip's edges are in view."""
    x0, y0, x1, y1 = corners_box(corners_um)
    grow = max(200.0, margin * max(x1 - x0, y1 - y0))
    return (x0 - grow, y0 - grow, x1 + grow, y1 + grow)


def _save_picture(path: Path, picture: np.ndarray) -> None:
    import cv2

    from flakefinder.imaging import save_image

    h, w = picture.shape[:2]
    if max(h, w) > MAX_MOSAIC_PX:
        f = MAX_MOSAIC_PX / max(h, w)
        picture = cv2.resize(picture, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    save_image(path, picture)  # atomic: a full disk never leaves half a mosaic


def run_overview_pass(
    microscope: Microscope,
    hunt: HuntStore,
    *,
    chip_id: int,
    scan_id: int,
    overview: str,
    search: str,
    area_um: Rect,
    image_dir: Path | None,
    chip_hint_um: Rect | None = None,
    overlap: float = 0.1,
    progress: bool = True,
) -> OverviewOutcome:
    """Image ``area_um`` at objective ``overview``, analyse it (the chip's colour is taken
    inside ``chip_hint_um``, where the chip should be), propose the region to search at
    objective ``search`` and store the pass. Leaves the microscope at ``overview``."""
    if microscope.turret is None:
        raise FlakefinderError("an overview pass needs a microscope with an objective turret")
    t_start = time.perf_counter()
    search_obj = find_objective(microscope.turret.objectives, search)
    shape = microscope.camera.shape_px
    search_fov = search_obj.fov_um(shape)
    obj = switch_objective(microscope, overview)
    fov_w, fov_h = obj.fov_um(shape)
    x0, y0, x1, y1 = area_um
    plan = plan_raster(
        [(x0, y0), (x1, y1)], fov_w, fov_h, overlap, limits=microscope.stage.limits
    )
    pass_id = hunt.start_pass(
        chip_id,
        scan_id=scan_id,
        kind="overview",
        objective=obj.name,
        um_per_px=obj.pixel_size(),
        n_planned=len(plan),
        settings={"area_um": list(area_um), "search_objective": search_obj.name},
    )
    move_s = snap_s = 0.0
    try:
        frames = []
        with progress_bar(progress, len(plan), 0, label="overview") as advance:
            for tile in plan:
                t0 = time.perf_counter()
                microscope.stage.move_xy_um(tile.x_um, tile.y_um)
                microscope.stage.wait_for_xy()
                t1 = time.perf_counter()
                image = microscope.camera.snap()
                x, y = microscope.stage.get_xy_um()
                frames.append(OverviewFrame(image, x, y))
                snap_s += time.perf_counter() - t1
                move_s += t1 - t0
                advance()
        t0 = time.perf_counter()
        mosaic = stitch(frames, obj.pixel_size(), chip_hint_um)
        analysis = analyse_overview(mosaic, search_fov_um=search_fov, overlap=overlap)
        n_search = len(
            plan_region(analysis.region, *search_fov, overlap, limits=microscope.stage.limits)
        )
        t1 = time.perf_counter()
        path = None
        if image_dir is not None:
            path = image_dir / f"overview_pass{pass_id}.png"
            _save_picture(path, mosaic.picture)
        settings = {
            "area_um": list(area_um),
            "search_objective": search_obj.name,
            "search_fov_um": list(search_fov),
            "overlap": overlap,
            "analysis": analysis.to_dict(),
            "proposed_region": analysis.region.to_dict(),
            "region": analysis.region.to_dict(),
            "region_edited": False,
            "search_tiles": n_search,
            "mosaic_path": None if path is None else str(path),
            "mosaic_extent_um": list(mosaic.extent_um),
        }
        hunt.update_pass(pass_id, settings=settings)
        t2 = time.perf_counter()
        report = PassReport(
            kind="overview",
            objective=obj.name,
            um_per_px=obj.pixel_size(),
            fov_width_um=fov_w,
            fov_height_um=fov_h,
            overlap=overlap,
            frames=len(plan),
            wall_s=time.perf_counter() - t_start,
            move_s=move_s,
            capture_s=snap_s,
            detect_s=t1 - t0,
            store_s=t2 - t1,
            images=0 if path is None else 1,
        )
        hunt.finish_pass(pass_id, report)
    except BaseException as exc:
        try:
            hunt.mark_pass_interrupted(pass_id)
        except Exception as error:  # e.g. the database's disk is full too
            exc.add_note(f"marking pass {pass_id} interrupted also failed: {error}")
        raise
    return OverviewOutcome(pass_id, analysis, n_search, report, path)
