"""The passes of ``flakefinder demo`` on the simulated microscope: overview at low
magnification, search of the proposed region, revisit of the selected flakes at high
magnification; and how the revisit's outlines compare with the virtual chip's known flakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.db import Database
    from flakefinder.db.hunt import HuntStore
    from flakefinder.domain import Detector, ImagingContext
    from flakefinder.hardware.protocols import Microscope
    from flakefinder.scan.loop import ScanSummary
    from flakefinder.scan.plan import TilePlan
    from flakefinder.scan.revisit import RevisitSummary
    from flakefinder.scan.throughput import PassReport
    from flakefinder.synth.chip import VirtualChip

PASS_NAMES = ("overview", "search", "revisit")
#: The demo chip's focal plane: tilted by 0.4 and -0.3 µm per mm.
DEMO_FOCUS_PLANE_UM = (0.0, 0.0004, -0.0003)
#: How far the 50x and 100x focal planes are from their stated offsets (autofocus finds it).
DEMO_PARFOCAL_ERROR_UM = {"50x": 1.5, "100x": -1.0}


def parse_passes(text: str) -> tuple[str, ...]:
    """``overview,search,revisit`` (any subset with search) in pass order."""
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    unknown = sorted(names - set(PASS_NAMES))
    if unknown:
        raise typer.BadParameter(
            f"unknown pass {', '.join(unknown)}; use {', '.join(PASS_NAMES)}",
            param_hint="--passes",
        )
    if "search" not in names:
        raise typer.BadParameter("the demo always searches: include search", param_hint="--passes")
    return tuple(p for p in PASS_NAMES if p in names)


@dataclass
class HuntRun:
    """What the passes did (the demo prints it)."""

    reports: list[PassReport] = field(default_factory=list)
    summary: ScanSummary | None = None
    revisit: RevisitSummary | None = None
    notes: list[str] = field(default_factory=list)


def search_tiles(
    microscope: Microscope,
    hunt: HuntStore,
    run: HuntRun,
    *,
    chip: VirtualChip,
    chip_id: int,
    scan_id: int,
    overview: str | None,
    search: str,
    image_dir: Path,
    progress: bool,
) -> list[TilePlan]:
    """The search pass's tiles: the overview's proposed region, or the whole chip."""
    from flakefinder.hardware.objectives import switch_objective
    from flakefinder.hunt.overview_pass import corners_box, overview_area, run_overview_pass
    from flakefinder.hunt.search_pass import region_plan
    from flakefinder.scan.plan import plan_raster
    from flakefinder.text import plural

    corners = [(0.0, 0.0), (chip.width_um, chip.height_um)]
    if overview is None:
        switch_objective(microscope, search)
        h_px, w_px = microscope.camera.shape_px
        pixel = microscope.camera.um_per_px
        return plan_raster(
            corners, w_px * pixel, h_px * pixel, 0.1, limits=microscope.stage.limits
        )
    outcome = run_overview_pass(
        microscope, hunt, chip_id=chip_id, scan_id=scan_id, overview=overview, search=search,
        area_um=overview_area(corners), chip_hint_um=corners_box(corners), image_dir=image_dir,
        progress=False,  # a frame or a few: the summary line follows at once
    )  # fmt: skip
    run.reports.append(outcome.report)
    a = outcome.analysis
    run.notes.append(
        f"overview at {overview}: chip {a.chip_rect_um[2] - a.chip_rect_um[0]:.0f} x"
        f" {a.chip_rect_um[3] - a.chip_rect_um[1]:.0f} µm found,"
        f" {plural(len(a.residue_um), 'tape residue patch', 'tape residue patches')},"
        f" {plural(len(a.empty_um), 'empty area')}; search region"
        f" {a.region.width_um:.0f} x {a.region.height_um:.0f} µm"
    )
    switch_objective(microscope, search)
    hunt.set_planned_tiles(scan_id, outcome.search_tiles)
    return region_plan(microscope, a.region, 0.1)


def revisit(
    microscope: Microscope,
    database: Database,
    hunt: HuntStore,
    run: HuntRun,
    *,
    scan_id: int,
    objective: str,
    filter_text: str,
    context: ImagingContext,
    detector_name: str,
    detector_options: list[str] | None,
    image_dir: Path,
    progress: bool,
) -> None:
    """The revisit pass of the demo's scan (a note instead when the filter selects nothing)."""
    from dataclasses import replace

    from flakefinder.errors import FlakefinderError
    from flakefinder.hardware.objectives import switch_objective
    from flakefinder.hunt.detectors import detector_for_objective
    from flakefinder.hunt.revisit_pass import RevisitRequest, open_revisit, run_revisit_pass
    from flakefinder.scan.revisit import RevisitOptions

    obj = switch_objective(microscope, objective)
    det: Detector = detector_for_objective(detector_name, obj, options=detector_options)
    options = RevisitOptions(bracket=True)
    request = RevisitRequest(scan_id, obj.name, filter_text, options=options)
    try:
        opened = open_revisit(database, hunt, request, microscope)
    except FlakefinderError as exc:
        run.notes.append(f"revisit skipped: {exc}")
        return
    run.revisit = run_revisit_pass(
        microscope, det, hunt, opened, replace(context, um_per_px=obj.pixel_size()),
        options=options, image_dir=image_dir / "closeups", progress=progress,
    )  # fmt: skip
    run.reports.append(run.revisit.report)


def revisit_vs_truth(chip: VirtualChip, database: Database, hunt: HuntStore, pass_id: int) -> str:
    """How the revisit's outlines and layer numbers compare with the search's, against the
    virtual chip's known flakes (polygon IoU with the best-matching known terrace)."""
    from flakefinder.evaluate.chip_truth import best_truth_outline

    rows = []
    for info in hunt.revisits_of_pass(pass_id):
        flake = database.get_flake(info.flake_id)
        if flake is None or info.status != "ok" or info.material is None:
            continue
        before = best_truth_outline(chip, flake.material, flake.polygon_um)
        after = best_truth_outline(chip, info.material, info.polygon_um)
        if before is None or after is None:
            continue
        rows.append((before, after, flake.layer_count, info.layer_count))
    if not rows:
        return "no revisited flake to compare with the known flakes"
    n = len(rows)
    iou0 = sum(r[0].iou for r in rows) / n
    iou1 = sum(r[1].iou for r in rows) / n
    exact0 = sum(r[2] == r[0].n_layers for r in rows)
    exact1 = sum(r[3] == r[1].n_layers for r in rows)
    better = sum(r[1].iou > r[0].iou for r in rows)
    return (
        f"revisited flakes vs the known flakes ({n}): mean outline IoU {iou0:.3f} (search) ->"
        f" {iou1:.3f} (revisit), better for {better} of {n}; exact layer number {exact0} ->"
        f" {exact1} of {n}"
    )
