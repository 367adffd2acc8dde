"""``flakefinder scan``: raster-scan a chip (simulated or real), detect flakes, store them."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flakefinder.cli import validation

if TYPE_CHECKING:
    from flakefinder.scan.loop import ScanSummary


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_cmd)


def _parse_corners(text: str) -> list[tuple[float, float]]:
    try:
        pts = [tuple(float(v) for v in p.split(",")) for p in text.split(";") if p.strip()]
    except ValueError:
        raise typer.BadParameter("use 'x,y;x,y[;x,y;x,y]' in µm", param_hint="--corners") from None
    if not 2 <= len(pts) <= 4 or any(len(p) != 2 for p in pts):
        raise typer.BadParameter("give 2 to 4 corners 'x,y;x,y'", param_hint="--corners")
    if not all(math.isfinite(v) for p in pts for v in p):
        raise typer.BadParameter("corners must be finite numbers (µm)", param_hint="--corners")
    return [(p[0], p[1]) for p in pts]


def _run_locked(database: Any, scan_id: int, run: Callable[[], ScanSummary]) -> ScanSummary:
    """Run the scan once its lock is held; a scan another process finished meanwhile is
    not run again."""
    from flakefinder.db import ScanStatus
    from flakefinder.errors import ScanLockedError

    info = database.get_scan(scan_id)
    if info is not None and info.status is ScanStatus.FINISHED:
        raise ScanLockedError(f"scan {scan_id} was finished by another process meanwhile")
    return run()


def chip_frame_settings(
    simulated: bool, corners: list[tuple[float, float]]
) -> tuple[dict[str, float], str | None]:
    """The scan's ``chip_frame`` setting and a warning, if the corners look misordered.

    A simulated chip's coordinates are stage coordinates (identity frame); a real chip's frame
    has corner A (the first corner) as origin and its +x edge from A towards B (the second).
    """
    from flakefinder.domain import ChipFrame

    if simulated:
        return ChipFrame.identity().to_dict(), None
    try:
        frame = ChipFrame.from_corners(corners[0], corners[1])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--corners") from None
    warning = None
    off_axis = abs((frame.angle_deg + 45.0) % 90.0 - 45.0)  # tilt from the nearest stage axis
    if off_axis > 10.0:
        warning = (
            f"chip x edge from corner A to corner B is {frame.angle_deg:.1f}° from the stage x"
            " axis; chip positions assume A and B are neighbouring corners (not opposite ones)"
        )
    return frame.to_dict(), warning


def scan_cmd(
    simulated: bool = typer.Option(False, "--simulated", help="Scan a virtual chip."),
    chip: Path | None = typer.Option(None, help="Simulated: virtual chip JSON (synth save_chip)."),
    chip_size_mm: float = typer.Option(
        2.0,
        help="Simulated: side of a random square chip (mm).",
        callback=validation.chip_size_mm(),
    ),
    seed: int = typer.Option(0, help="Simulated: random chip and camera noise seed."),
    mm_config: Path | None = typer.Option(None, help="Micro-Manager configuration file."),
    corners: str | None = typer.Option(
        None,
        help="Chip corners in stage µm 'x,y;x,y[;x,y;x,y]' (default: the virtual chip). Real"
        " chip: the first corner (A) is the chip origin and the chip x edge runs from A to the"
        " second corner (B); give them in order around the chip.",
    ),
    chip_name: str | None = typer.Option(None, help="Chip name in the database."),
    db: str = typer.Option("sqlite:///flakefinder.db", help="Database URL."),
    detector: str = typer.Option("contrast", help="Detector: contrast, rulebased or maskrcnn."),
    model: Path | None = typer.Option(None, help="maskrcnn: model folder."),
    server: str | None = typer.Option(
        None, help="Detect on a remote inference server (flakefinder serve) at this URL instead."
    ),
    api_key: str | None = typer.Option(
        None, envvar="FLAKEFINDER_API_KEY", help="API key of the inference server, if it needs one."
    ),
    oxide_nm: float = typer.Option(
        90.0, help="SiO2 thickness (nm).", callback=validation.oxide_nm()
    ),
    materials: str = typer.Option("graphene", help="Comma-separated materials on the chip."),
    out: Path | None = typer.Option(
        None,
        help="Folder for tile images (scan_<id>/tile_*.png).",
        callback=validation.output_folder(),
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the chip's unfinished scan."),
    overlap: float = typer.Option(0.1, help="Tile overlap, fraction of the field of view."),
    frame_px: int = typer.Option(1024, help="Simulated: frame width and height (px)."),
    um_per_px: float | None = typer.Option(
        None,
        help="Pixel size (µm); simulated default 0.2, real: from Micro-Manager.",
        callback=validation.um_per_px(),
    ),
    autofocus: bool = typer.Option(False, help="Measure a 3x3 focus map before scanning."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Scan a chip tile by tile, detect flakes and store them in the database.

    Stop with Ctrl-C at any time; run again with --resume to continue where it stopped.
    """
    from flakefinder.cli import parse_materials
    from flakefinder.domain import ImagingContext
    from flakefinder.scan.focus import focus_points, measure_focus_map
    from flakefinder.scan.loop import run_scan
    from flakefinder.scan.plan import plan_bounds_um, plan_raster

    mats = parse_materials(materials)
    if not 0.0 <= overlap < 1.0:
        raise typer.BadParameter("must lie in [0, 1)", param_hint="--overlap")
    if frame_px < 1 or (um_per_px is not None and not um_per_px > 0):
        raise typer.BadParameter("--frame-px and --um-per-px must be > 0")
    if simulated == (mm_config is not None):
        raise typer.BadParameter("give exactly one of --simulated or --mm-config FILE")
    if simulated:
        from flakefinder.hardware.sim import simulated_microscope
        from flakefinder.synth.chip import load_chip, random_chip

        if chip is not None:
            vchip = load_chip(chip)
            name = chip_name or chip.stem
        else:
            side = chip_size_mm * 1000.0
            vchip = random_chip(side, side, mats, oxide_thickness_nm=oxide_nm, seed=seed)
            name = chip_name or f"sim-{chip_size_mm:g}mm-seed{seed}"
        microscope = simulated_microscope(
            vchip, shape_px=(frame_px, frame_px), um_per_px=um_per_px or 0.2, seed=seed
        )
        chip_corners = (
            _parse_corners(corners) if corners else [(0.0, 0.0), (vchip.width_um, vchip.height_um)]
        )
        oxide = float(getattr(vchip, "oxide_thickness_nm", oxide_nm))
    else:
        from flakefinder.hardware.mmcore import mmcore_microscope

        if corners is None:
            raise typer.BadParameter("a real chip needs --corners", param_hint="--corners")
        microscope = mmcore_microscope(mm_config, um_per_px=um_per_px)
        chip_corners = _parse_corners(corners)
        name = chip_name or "chip"
        oxide = oxide_nm

    frame, frame_warning = chip_frame_settings(simulated, chip_corners)
    h_px, w_px = microscope.camera.shape_px
    pixel = microscope.camera.um_per_px
    plan = plan_raster(
        chip_corners, w_px * pixel, h_px * pixel, overlap, limits=microscope.stage.limits
    )

    from flakefinder.db import Database
    from flakefinder.detect.registry import create_detector
    from flakefinder.domain import Detector

    det: Detector
    if server is not None:
        from flakefinder.server.client import RemoteDetector

        det = RemoteDetector(server, api_key=api_key)
    else:
        det = create_detector(detector, **({"model": model} if model is not None else {}))
    database = Database(db)
    database.migrate()
    chip_id = database.add_chip(name, mats, oxide, get_or_create=True)
    scan_id = None
    if resume:
        found = database.find_resumable_scan(chip_id)
        if found is not None:
            scan_id = found.id
            typer.echo(f"resuming scan {scan_id} of chip {name!r}")
        else:
            typer.echo(f"chip {name!r} has no unfinished scan; starting a new one")
    if scan_id is None:
        if frame_warning:
            typer.secho(f"warning: {frame_warning}", fg=typer.colors.YELLOW, err=True)
        scan_id = database.start_scan(
            chip_id,
            settings={
                "overlap": overlap,
                "corners_um": chip_corners,
                "simulated": simulated,
                "chip_frame": frame,
            },
            objective=microscope.objective,
            um_per_px=pixel,
            detector=str(getattr(det, "name", detector)),
            detector_version=str(getattr(det, "version", "")),
            n_tiles_planned=len(plan),
        )
    from flakefinder.db.locks import scan_lock

    context = ImagingContext(um_per_px=pixel, oxide_thickness_nm=oxide, materials=mats)
    image_dir = out.resolve() / f"scan_{scan_id}" if out is not None else None
    try:
        with scan_lock(database, scan_id):  # a second run of this scan refuses here
            focus_map = None
            if autofocus:
                focus_map, _ = measure_focus_map(microscope, focus_points(plan_bounds_um(plan), 3))
                typer.echo(f"focus map: {focus_map}")
            summary = _run_locked(
                database,
                scan_id,
                lambda: run_scan(
                    microscope,
                    det,
                    database,
                    scan_id,
                    plan,
                    context,
                    focus_map=focus_map,
                    image_dir=image_dir,
                    progress=progress,
                ),
            )
    except KeyboardInterrupt:
        typer.secho(
            f"scan {scan_id} interrupted; continue with the same command and --resume",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo(
        f"scan {scan_id}: {summary.tiles_done} tiles scanned, {summary.tiles_skipped} skipped, "
        f"{summary.flakes_stored} flakes stored, {summary.duplicates_merged + summary.border_dropped}"
        f" duplicate views merged, {summary.wall_s:.1f} s ({summary.tiles_per_s:.2f} tiles/s, "
        f"{summary.detect_s:.1f} s detecting)"
    )
