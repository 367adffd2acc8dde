"""The search pass: today's scan (:func:`flakefinder.scan.loop.run_scan`) over the search
region the overview proposed (and the user may have edited), recorded as a search pass of the
scan with its throughput report. A resumed scan continues the same pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flakefinder.scan.region import SearchRegion, plan_region
from flakefinder.scan.throughput import PassReport

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.db.database import Database
    from flakefinder.db.hunt import HuntStore
    from flakefinder.domain import Detector, ImagingContext
    from flakefinder.hardware.protocols import Microscope
    from flakefinder.scan.focus import FocusMap
    from flakefinder.scan.loop import ScanSummary
    from flakefinder.scan.plan import TilePlan


def stored_region(hunt: HuntStore, scan_id: int) -> SearchRegion | None:
    """The search region held by the scan's overview pass (as edited), if it has one."""
    overview = hunt.overview_of_scan(scan_id)
    if overview is None or "region" not in overview.settings:
        return None
    return SearchRegion.from_dict(overview.settings["region"])


def region_plan(
    microscope: Microscope, region: SearchRegion, overlap: float
) -> list[TilePlan]:
    """The search tiles of ``region`` at the microscope's current objective."""
    h_px, w_px = microscope.camera.shape_px
    pixel = microscope.camera.um_per_px
    return plan_region(region, w_px * pixel, h_px * pixel, overlap, limits=microscope.stage.limits)


def run_search_pass(
    microscope: Microscope,
    detector: Detector,
    database: Database,
    hunt: HuntStore,
    *,
    scan_id: int,
    chip_id: int,
    plan: list[TilePlan],
    context: ImagingContext,
    overlap: float = 0.1,
    focus_map: FocusMap | None = None,
    image_dir: Path | None = None,
    progress: bool = True,
) -> tuple[ScanSummary, PassReport]:
    """Run (or continue) the scan's search pass; see the module docstring."""
    from flakefinder.scan.loop import run_scan  # looked up per call (tests replace it)

    found = hunt.find_resumable_pass(scan_id, "search")
    pixel = microscope.camera.um_per_px
    if found is not None:
        pass_id = found.id
        hunt.update_pass(pass_id, n_planned=len(plan))
    else:
        pass_id = hunt.start_pass(
            chip_id,
            scan_id=scan_id,
            kind="search",
            objective=microscope.objective,
            um_per_px=pixel,
            n_planned=len(plan),
            settings={"overlap": overlap, "detector": f"{detector.name} {detector.version}"},
        )
    try:
        summary = run_scan(
            microscope,
            detector,
            database,
            scan_id,
            plan,
            context,
            focus_map=focus_map,
            image_dir=image_dir,
            progress=progress,
        )
    except BaseException as exc:
        try:
            hunt.mark_pass_interrupted(pass_id)
        except Exception as error:  # e.g. the database's disk is full too
            exc.add_note(f"marking pass {pass_id} interrupted also failed: {error}")
        raise
    h_px, w_px = microscope.camera.shape_px
    report = PassReport(
        kind="search",
        objective=microscope.objective,
        um_per_px=pixel,
        fov_width_um=w_px * pixel,
        fov_height_um=h_px * pixel,
        overlap=overlap,
        frames=summary.tiles_done,
        wall_s=summary.wall_s,
        move_s=summary.move_s,
        focus_s=summary.focus_s,
        capture_s=summary.snap_s,
        detect_s=summary.detect_s,
        store_s=summary.write_s,
        images=summary.tiles_done if image_dir is not None else 0,
    )
    hunt.finish_pass(pass_id, report)
    return summary, report
