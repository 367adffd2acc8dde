"""The run of ``flakefinder scan``: the optional overview pass, then the search pass, with the
scan locked, SIGTERM as Ctrl-C, and each pass's throughput table at its end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from flakefinder.cli.interrupts import sigterm_as_interrupt, stopped

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.db import Database
    from flakefinder.domain import Detector, ImagingContext
    from flakefinder.hardware.protocols import Microscope
    from flakefinder.scan.plan import TilePlan


@dataclass(frozen=True)
class Passes:
    """The hunt options of a scan: overview objective (None: no overview), the search
    objective (None: the microscope's one), whether to stop after the overview, and the
    area the overview images (stage µm)."""

    overview: str | None = None
    search: str | None = None
    stop_after_overview: bool = False
    area_um: tuple[float, float, float, float] | None = None
    chip_um: tuple[float, float, float, float] | None = None  # where the chip should be


def _refuse(database: Database, scan_id: int, passes: Passes) -> None:
    """Refuse, before anything moves or is marked, a scan that another process finished while
    this one waited for its lock, and an overview asked for after the search has begun."""
    from flakefinder.db import ScanStatus
    from flakefinder.db.hunt import HuntStore
    from flakefinder.errors import FlakefinderError, ScanLockedError
    from flakefinder.hunt.search_pass import stored_region

    info = database.get_scan(scan_id)
    if info is not None and info.status is ScanStatus.FINISHED:
        raise ScanLockedError(f"scan {scan_id} was finished by another process meanwhile")
    if (
        info is not None
        and info.tiles_done
        and passes.overview is not None
        and stored_region(HuntStore(database), scan_id) is None
    ):
        raise FlakefinderError(
            f"scan {scan_id} was started without --overview; resume it without --overview"
        )


def _leave_interrupted(database: Database, scan_id: int, exc: BaseException) -> None:
    """After a run stopped by ``exc``: a scan still marked running (this process holds its lock,
    so the mark is its own) becomes interrupted; when that fails too, ``exc`` says so."""
    from flakefinder.db import ScanStatus

    try:
        info = database.get_scan(scan_id)
        if info is not None and info.status is ScanStatus.RUNNING:
            database.mark_interrupted(scan_id)
    except Exception as error:  # e.g. the database's disk is full too
        exc.add_note(f"marking the scan interrupted also failed: {error}")


def _status_note(database: Database, scan_id: int) -> str:
    """"" when the scan is marked interrupted; else why not (e.g. the database is full too)."""
    from flakefinder.db import ScanStatus
    from flakefinder.errors import FlakefinderError

    try:
        info = database.get_scan(scan_id)
    except FlakefinderError as exc:
        return f" (its status could not be read: {exc})"
    if info is None or info.status is ScanStatus.INTERRUPTED:
        return ""
    return f" (it is still marked {info.status.value}: the database could not be updated)"


def _search_plan(
    microscope: Microscope,
    database: Database,
    scan_id: int,
    chip_id: int,
    plan: list[TilePlan] | None,
    passes: Passes,
    out: Path | None,
    progress: bool,
) -> list[TilePlan] | None:
    """The tiles to search: the region of the scan's overview (run first when asked for and
    not done yet), else ``plan``. None: stopped after the overview, as asked."""
    from flakefinder.db.hunt import HuntStore
    from flakefinder.hardware.objectives import switch_objective
    from flakefinder.hunt.overview_pass import run_overview_pass
    from flakefinder.hunt.search_pass import region_plan, stored_region
    from flakefinder.scan.throughput import pass_table
    from flakefinder.text import plural

    hunt = HuntStore(database)
    region = stored_region(hunt, scan_id)
    scan = database.get_scan(scan_id)
    assert scan is not None
    if region is None and passes.overview is not None:
        assert passes.area_um is not None
        outcome = run_overview_pass(
            microscope,
            hunt,
            chip_id=chip_id,
            scan_id=scan_id,
            overview=passes.overview,
            search=passes.search or scan.objective,
            area_um=passes.area_um,
            chip_hint_um=passes.chip_um,
            image_dir=None if out is None else out.resolve() / f"scan_{scan_id}",
            progress=progress,
        )
        a = outcome.analysis
        x0, y0, x1, y1 = a.region.rect_um
        typer.echo(
            f"overview (pass {outcome.pass_id}): chip {a.chip_rect_um[2] - a.chip_rect_um[0]:.0f}"
            f" x {a.chip_rect_um[3] - a.chip_rect_um[1]:.0f} µm,"
            f" {plural(len(a.residue_um), 'residue patch', 'residue patches')},"
            f" {plural(len(a.empty_um), 'empty area')}; search region x {x0:.0f}..{x1:.0f},"
            f" y {y0:.0f}..{y1:.0f} µm: {plural(outcome.search_tiles, 'tile')} at {scan.objective}"
        )
        typer.echo(pass_table([outcome.report]))
        hunt.set_planned_tiles(scan_id, outcome.search_tiles)
        region = a.region
        if passes.stop_after_overview:
            database.mark_interrupted(scan_id)
            typer.echo(
                f"stopped after the overview: check or edit the search region on the scan page"
                f" (/scans/{scan_id} of flakefinder serve), then run the same command with"
                " --resume"
            )
            return None
    if region is None:
        return plan
    if microscope.turret is not None:
        switch_objective(microscope, scan.objective)
    return region_plan(microscope, region, 0.1)


def run_passes(
    microscope: Microscope,
    det: Detector,
    database: Database,
    scan_id: int,
    chip_id: int,
    plan: list[TilePlan] | None,
    context: ImagingContext,
    *,
    autofocus: bool,
    out: Path | None,
    progress: bool,
    passes: Passes,
    overlap: float = 0.1,
) -> None:
    """Lock the scan, run its overview (if asked) and its search; print each pass's report."""
    from dataclasses import replace

    from flakefinder.db.hunt import HuntStore
    from flakefinder.db.locks import scan_lock
    from flakefinder.errors import FlakefinderError
    from flakefinder.hunt.search_pass import run_search_pass
    from flakefinder.scan.focus import focus_points, measure_focus_map
    from flakefinder.scan.plan import plan_bounds_um
    from flakefinder.scan.throughput import pass_table
    from flakefinder.text import plural

    # a second run of this scan (two --resume at once) refuses here, before the stage moves
    with sigterm_as_interrupt(), scan_lock(database, scan_id):
        _refuse(database, scan_id, passes)
        try:
            HuntStore(database).mark_scan_running(scan_id)  # the region is fixed from here on
            tiles = _search_plan(
                microscope, database, scan_id, chip_id, plan, passes, out, progress
            )
            if tiles is None:
                return
            typer.echo(f"scan {scan_id}: {plural(len(tiles), 'tile')} planned", err=True)
            focus_map = None
            if autofocus and tiles:
                focus_map, _ = measure_focus_map(microscope, focus_points(plan_bounds_um(tiles), 3))
                typer.echo(f"focus map: {focus_map}")
            context = replace(context, um_per_px=microscope.camera.um_per_px)
            summary, report = run_search_pass(
                microscope,
                det,
                database,
                HuntStore(database),
                scan_id=scan_id,
                chip_id=chip_id,
                plan=tiles,
                context=context,
                overlap=overlap,
                focus_map=focus_map,
                image_dir=out.resolve() / f"scan_{scan_id}" if out is not None else None,
                progress=progress,
            )
        except KeyboardInterrupt as exc:
            _leave_interrupted(database, scan_id, exc)
            stopped(f"scan {scan_id}", exc)
        except FlakefinderError as exc:  # a full disk, a database that stopped answering, ...
            _leave_interrupted(database, scan_id, exc)
            typer.secho(
                f"error: scan {scan_id} stopped: {exc}; the tiles stored so far are kept:"
                " fix that, then continue with the same command and"
                f" --resume{_status_note(database, scan_id)}",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(2) from None
        except BaseException as exc:
            _leave_interrupted(database, scan_id, exc)
            raise
    merged = summary.duplicates_merged + summary.border_dropped
    typer.echo(
        f"scan {scan_id}: {plural(summary.tiles_done, 'tile')} scanned, "
        f"{summary.tiles_skipped} skipped, {plural(summary.flakes_stored, 'flake')} stored, "
        f"{plural(merged, 'duplicate view')} merged, {summary.wall_s:.1f} s "
        f"({summary.tiles_per_s:.2f} tiles/s, {summary.detect_s:.1f} s detecting)"
    )
    typer.echo(pass_table([report]))
