"""``flakefinder scan``: raster-scan a chip (simulated or real), detect flakes, store them."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flakefinder.cli import validation
from flakefinder.cli.options import (
    DEFAULT_FRAME_PX,
    ChipSizeMmOpt,
    DbOpt,
    DetectorOpt,
    DetectorOptionsOpt,
    FramePxOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
    SetupOpt,
)
from flakefinder.detect.registry import DEFAULT_DETECTOR

if TYPE_CHECKING:
    from flakefinder.db import Database
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector, ImagingContext
    from flakefinder.hardware.protocols import Microscope
    from flakefinder.scan.plan import TilePlan
    from flakefinder.synth.chip import VirtualChip


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


@dataclass(frozen=True)
class _Setup:
    """The microscope of a scan and where the chip lies."""

    microscope: Microscope
    corners: list[tuple[float, float]]
    chip_name: str
    oxide_nm: float


def scan_cmd(
    simulated: bool = typer.Option(False, "--simulated", help="Scan a virtual chip."),
    chip: Path | None = typer.Option(None, help="Simulated: virtual chip JSON (synth save_chip)."),
    chip_size_mm: ChipSizeMmOpt = 2.0,
    seed: int = typer.Option(0, help="Simulated: random chip and camera noise seed."),
    mm_config: Path | None = typer.Option(None, help="Micro-Manager configuration file."),
    corners: str | None = typer.Option(
        None,
        help="Chip corners in stage µm 'x,y;x,y[;x,y;x,y]' (default: the virtual chip). Real"
        " chip: the first corner (A) is the chip origin and the chip x edge runs from A to the"
        " second corner (B); give them in order around the chip.",
    ),
    chip_name: str | None = typer.Option(None, help="Chip name in the database."),
    db: DbOpt = None,
    detector: DetectorOpt = DEFAULT_DETECTOR,
    model: ModelOpt = None,
    setup: SetupOpt = None,
    detector_option: DetectorOptionsOpt = None,
    server: str | None = typer.Option(
        None,
        help="Detect on a remote inference server (flakefinder serve) at this URL instead; with"
        " --setup FILE, the server's detector for that setup profile.",
    ),
    api_key: str | None = typer.Option(
        None, envvar="FLAKEFINDER_API_KEY", help="API key of the inference server, if it needs one."
    ),
    oxide_nm: OptionalOxideNmOpt = None,
    materials: ProfileMaterialsOpt = None,
    out: Path | None = typer.Option(
        None,
        help="Folder for tile images (scan_<id>/tile_*.png; about 1.7 MB per 1024² tile).",
        callback=validation.output_folder(),
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the chip's unfinished scan."),
    overlap: float = typer.Option(0.1, help="Tile overlap, fraction of the field of view."),
    frame_px: FramePxOpt = DEFAULT_FRAME_PX,
    um_per_px: OptionalUmPerPxOpt = None,
    autofocus: bool = typer.Option(False, help="Measure a 3x3 focus map before scanning."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Scan a chip tile by tile, detect flakes and store them in the database.

    Stop with Ctrl-C (or SIGTERM) at any time; run again with --resume to continue where it
    stopped. --resume refuses when the chip has no unfinished scan.
    """
    from flakefinder.cli.options import build_detector, open_database, resolve_context, setting
    from flakefinder.domain import ImagingContext
    from flakefinder.scan.plan import plan_raster
    from flakefinder.scan.resume import NewScan, open_scan

    if server is not None and api_key is not None:
        from flakefinder.server.settings import check_api_key

        try:
            check_api_key(api_key, source="--api-key / FLAKEFINDER_API_KEY")
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--api-key") from None
    if not 0.0 <= overlap < 1.0:
        raise typer.BadParameter("must lie in [0, 1)", param_hint="--overlap")
    if simulated == (mm_config is not None):
        raise typer.BadParameter("give exactly one of --simulated or --mm-config FILE")
    loaded = _load_setup(setup)
    profile = None if loaded is None else loaded.profile
    # explicit option > setup profile > default; a real camera's own pixel size before the default
    chosen = resolve_context(
        um_per_px=um_per_px, oxide_nm=oxide_nm, materials=materials, profile=profile
    )
    mats = chosen.materials
    if simulated:
        where = _simulated_setup(
            chip, chip_size_mm, seed, chip_name, corners, mats, chosen.oxide_thickness_nm,
            frame_px, chosen.um_per_px, overlap, progress,
        )  # fmt: skip
    else:
        assert mm_config is not None
        pixel_given = setting(um_per_px, None if profile is None else profile.um_per_px, None)
        where = _real_setup(
            mm_config, corners, chip_name, chosen.oxide_thickness_nm, pixel_given
        )
    frame, frame_warning = chip_frame_settings(simulated, where.corners)
    microscope = where.microscope
    h_px, w_px = microscope.camera.shape_px
    pixel = microscope.camera.um_per_px
    plan = plan_raster(
        where.corners, w_px * pixel, h_px * pixel, overlap, limits=microscope.stage.limits
    )
    profile_id = chosen.profile_id
    with ExitStack() as cleanup:  # a remote detector's connections close however the scan ends
        det: Detector
        if server is not None:
            from flakefinder.server.client import RemoteDetector

            remote = RemoteDetector(server, api_key=api_key, profile_id=profile_id)
            cleanup.callback(remote.close)
            det = remote
        else:
            det = build_detector(detector, model=model, setup=loaded, options=detector_option)
        database = open_database(db)
        cleanup.callback(database.close)
        database.migrate()
        opened = open_scan(
            database,
            NewScan(
                chip_name=where.chip_name,
                materials=mats,
                oxide_thickness_nm=where.oxide_nm,
                objective=microscope.objective,
                um_per_px=pixel,
                detector=str(det.name),
                detector_version=str(det.version),
                n_tiles_planned=len(plan),
                settings={
                    "overlap": overlap,
                    "corners_um": where.corners,
                    "simulated": simulated,
                    "chip_frame": frame,
                },
            ),
            resume=resume,
        )
        scan_id = opened.scan_id
        if opened.resumed:
            typer.echo(f"resuming scan {scan_id} of chip {where.chip_name!r}")
        elif frame_warning:
            typer.secho(f"warning: {frame_warning}", fg=typer.colors.YELLOW, err=True)
        context = ImagingContext(
            um_per_px=pixel,
            oxide_thickness_nm=where.oxide_nm,
            materials=mats,
            profile_id=profile_id,
        )
        _run(microscope, det, database, scan_id, plan, context, autofocus, out, progress)


def _load_setup(setup: str | None) -> LoadedSetup | None:
    """The setup profile file of ``--setup`` (a scan cannot self-calibrate: no images yet)."""
    if setup is None:
        return None
    if setup.strip().lower() == "auto":
        raise typer.BadParameter(
            "a scan needs a setup profile file (calibrate one with `flakefinder calibrate`, or"
            " run `flakefinder detect --setup auto` on a few tiles)",
            param_hint="--setup",
        )
    from flakefinder.detect.setup_io import load_setup

    return load_setup(Path(setup))


def _simulated_setup(
    chip: Path | None,
    chip_size_mm: float,
    seed: int,
    chip_name: str | None,
    corners: str | None,
    mats: tuple[str, ...],
    oxide_nm: float,
    frame_px: int,
    pixel: float,
    overlap: float,
    progress: bool,
) -> _Setup:
    from flakefinder.hardware.sim import simulated_microscope
    from flakefinder.synth.chip import load_chip

    if chip is not None:
        vchip = load_chip(chip)
        name = chip_name or chip.stem
    else:
        vchip = _random_chip(
            chip_size_mm, mats, oxide_nm, seed, frame_px * pixel, overlap, progress
        )
        name = chip_name or f"sim-{chip_size_mm:g}mm-seed{seed}"
    microscope = simulated_microscope(
        vchip, shape_px=(frame_px, frame_px), um_per_px=pixel, seed=seed
    )
    chip_corners = (
        _parse_corners(corners) if corners else [(0.0, 0.0), (vchip.width_um, vchip.height_um)]
    )
    return _Setup(microscope, chip_corners, name, float(vchip.oxide_thickness_nm))


def _random_chip(
    chip_size_mm: float,
    mats: tuple[str, ...],
    oxide_nm: float,
    seed: int,
    fov_um: float,
    overlap: float,
    progress: bool,
) -> VirtualChip:
    """A random virtual chip; says the plan size first and shows generation progress."""
    from flakefinder.scan.plan import plan_raster
    from flakefinder.synth.chip import random_chip
    from flakefinder.text import plural

    side = chip_size_mm * 1000.0
    n_tiles = len(plan_raster([(0.0, 0.0), (side, side)], fov_um, fov_um, overlap))
    typer.echo(
        f"virtual {chip_size_mm:g} x {chip_size_mm:g} mm chip: {plural(n_tiles, 'tile')} of"
        f" {fov_um:.0f} x {fov_um:.0f} µm planned; generating the chip",
        err=True,
    )
    if not progress:
        return random_chip(side, side, mats, oxide_thickness_nm=oxide_nm, seed=seed)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("chip flakes"), BarColumn(), MofNCompleteColumn()) as bar:
        task = bar.add_task("chip", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return random_chip(
            side, side, mats, oxide_thickness_nm=oxide_nm, seed=seed, progress=advance
        )


def _real_setup(
    mm_config: Path,
    corners: str | None,
    chip_name: str | None,
    oxide_nm: float,
    um_per_px: float | None,
) -> _Setup:
    from flakefinder.hardware.mmcore import mmcore_microscope

    if not mm_config.is_file():
        raise typer.BadParameter(
            f"no such Micro-Manager configuration file: {mm_config}", param_hint="--mm-config"
        )
    if corners is None:
        raise typer.BadParameter("a real chip needs --corners", param_hint="--corners")
    chip_corners = _parse_corners(corners)
    microscope = mmcore_microscope(mm_config, um_per_px=um_per_px)
    return _Setup(microscope, chip_corners, chip_name or "chip", oxide_nm)


def _refuse_finished(database: Database, scan_id: int) -> None:
    """Refuse a scan that another process finished while this one waited for its lock."""
    from flakefinder.db import ScanStatus
    from flakefinder.errors import ScanLockedError

    info = database.get_scan(scan_id)
    if info is not None and info.status is ScanStatus.FINISHED:
        raise ScanLockedError(f"scan {scan_id} was finished by another process meanwhile")


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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that a scan stops as cleanly as on Ctrl-C."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`_Terminated` (a KeyboardInterrupt) in the main
    thread; the previous handler comes back afterwards. Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(
    microscope: Microscope,
    det: Detector,
    database: Database,
    scan_id: int,
    plan: list[TilePlan],
    context: ImagingContext,
    autofocus: bool,
    out: Path | None,
    progress: bool,
) -> None:
    from flakefinder.db.locks import scan_lock
    from flakefinder.errors import FlakefinderError, ScanLockedError
    from flakefinder.scan.focus import focus_points, measure_focus_map
    from flakefinder.scan.loop import run_scan
    from flakefinder.scan.plan import plan_bounds_um
    from flakefinder.text import plural

    typer.echo(f"scan {scan_id}: {plural(len(plan), 'tile')} planned", err=True)
    try:
        # a second run of this scan (two --resume at once) refuses here, before the stage moves
        with sigterm_as_interrupt(), scan_lock(database, scan_id):
            _refuse_finished(database, scan_id)
            focus_map = None
            if autofocus:
                focus_map, _ = measure_focus_map(microscope, focus_points(plan_bounds_um(plan), 3))
                typer.echo(f"focus map: {focus_map}")
            summary = run_scan(
                microscope,
                det,
                database,
                scan_id,
                plan,
                context,
                focus_map=focus_map,
                image_dir=out.resolve() / f"scan_{scan_id}" if out is not None else None,
                progress=progress,
            )
    except KeyboardInterrupt as exc:
        why = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        typer.secho(
            f"scan {scan_id} {why}; continue with the same command and --resume",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(143 if isinstance(exc, _Terminated) else 130) from None
    except ScanLockedError:
        raise
    except FlakefinderError as exc:  # a full disk, a database that stopped answering, ...
        typer.secho(
            f"error: scan {scan_id} stopped: {exc}; the tiles stored so far are kept: fix that,"
            f" then continue with the same command and --resume{_status_note(database, scan_id)}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2) from None
    merged = summary.duplicates_merged + summary.border_dropped
    typer.echo(
        f"scan {scan_id}: {plural(summary.tiles_done, 'tile')} scanned, "
        f"{summary.tiles_skipped} skipped, {plural(summary.flakes_stored, 'flake')} stored, "
        f"{plural(merged, 'duplicate view')} merged, {summary.wall_s:.1f} s "
        f"({summary.tiles_per_s:.2f} tiles/s, {summary.detect_s:.1f} s detecting)"
    )
