"""``flakefinder scan``: raster-scan a chip (simulated or real), detect flakes, store them."""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flakefinder.cli import validation
from flakefinder.cli.options import (
    DEFAULT_FRAME_PX,
    ChipSizeMmOpt,
    DbOpt,
    DetectorOptionsOpt,
    FramePxOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
    ScanDetectorOpt,
    SetupOpt,
)

if TYPE_CHECKING:
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector
    from flakefinder.hardware.objectives import Objective
    from flakefinder.hardware.protocols import Microscope
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
    """The microscope of a scan, where the chip lies, and (simulated) how to rebuild it."""

    microscope: Microscope
    corners: list[tuple[float, float]]
    chip_name: str
    oxide_nm: float
    sim: dict[str, object] = field(default_factory=dict)


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
    detector: ScanDetectorOpt = None,
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
    objective: str | None = typer.Option(
        None,
        help="Search objective, e.g. 20x (needs an objective turret: the simulated microscope"
        " has 5x, 20x, 50x and 100x; a real one its Micro-Manager objective device).",
    ),
    objectives_file: Path | None = typer.Option(
        None,
        "--objectives",
        help="Objectives file (TOML/JSON): pixel size, NA, focus offset and setup profile of each"
        " objective.",
    ),
    overview: str | None = typer.Option(
        None,
        help="First image the whole chip at this low-magnification objective (e.g. 5x), find the"
        " chip outline, tape residue and empty areas, and search only the proposed region.",
    ),
    stop_after_overview: bool = typer.Option(
        False,
        "--stop-after-overview",
        help="Stop after the overview so the search region can be edited on the scan page of"
        " the web UI; continue with --resume.",
    ),
) -> None:
    """Scan a chip tile by tile, detect flakes and store them in the database.

    Stop with Ctrl-C (or SIGTERM) at any time; run again with --resume to continue where it
    stopped. --resume refuses when the chip has no unfinished scan. With --overview, a
    low-magnification overview first proposes the search region (stored with the scan).
    """
    from flakefinder.cli.options import (
        build_detector,
        open_database,
        resolve_context,
        scan_detector,
        setting,
    )
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
    if stop_after_overview and overview is None:
        raise typer.BadParameter("needs --overview OBJECTIVE", param_hint="--stop-after-overview")
    if overview is not None and objective is None:
        raise typer.BadParameter(
            "needs --objective too (the search objective, e.g. 20x)", param_hint="--overview"
        )
    loaded = _load_setup(setup)
    profile = None if loaded is None else loaded.profile
    # explicit option > setup profile > default; a real camera's own pixel size before the default
    chosen = resolve_context(
        um_per_px=um_per_px, oxide_nm=oxide_nm, materials=materials, profile=profile
    )
    mats = chosen.materials
    objs = _objectives(objectives_file, simulated, objective or overview)
    if simulated:
        where = _simulated_setup(
            chip, chip_size_mm, seed, chip_name, corners, mats, chosen.oxide_thickness_nm,
            frame_px, chosen.um_per_px, overlap, progress, objs, objective,
        )  # fmt: skip
    else:
        assert mm_config is not None
        pixel_given = setting(um_per_px, None if profile is None else profile.um_per_px, None)
        where = _real_setup(
            mm_config, corners, chip_name, chosen.oxide_thickness_nm, pixel_given, objs
        )
    frame, frame_warning = chip_frame_settings(simulated, where.corners)
    microscope = where.microscope
    if objective is not None:
        from flakefinder.hardware.objectives import switch_objective

        switch_objective(microscope, objective)  # refuses an unknown or uncalibrated one
    h_px, w_px = microscope.camera.shape_px
    pixel = microscope.camera.um_per_px
    plan = None
    if overview is None:
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
            det = build_detector(
                scan_detector(detector, simulated=simulated),
                model=model,
                setup=loaded,
                options=detector_option,
            )
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
                n_tiles_planned=0 if plan is None else len(plan),
                settings={
                    "overlap": overlap,
                    "corners_um": where.corners,
                    "simulated": simulated,
                    "chip_frame": frame,
                    **({"sim": where.sim} if where.sim else {}),
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
        from flakefinder.cli.scan_run import Passes, run_passes
        from flakefinder.hunt.overview_pass import corners_box, overview_area

        passes = Passes(
            overview=overview,
            search=microscope.objective,
            stop_after_overview=stop_after_overview,
            area_um=overview_area(where.corners) if overview is not None else None,
            chip_um=corners_box(where.corners),
        )
        run_passes(
            microscope, det, database, scan_id, opened.chip_id, plan, context,
            autofocus=autofocus, out=out, progress=progress, passes=passes, overlap=overlap,
        )  # fmt: skip


def _objectives(
    path: Path | None, simulated: bool, wanted: str | None
) -> tuple[Objective, ...] | None:
    """The objectives of the turret: from ``--objectives``; the simulated microscope's own
    when an objective is asked for; None (no turret: today's single objective) otherwise."""
    from flakefinder.hardware.objectives import DEFAULT_OBJECTIVES, load_objectives

    if path is not None:
        return load_objectives(path)
    if wanted is not None and simulated:
        return DEFAULT_OBJECTIVES
    return () if wanted is not None else None


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
    um_per_px: float | None,
    overlap: float,
    progress: bool,
    objectives: tuple[Objective, ...] | None = None,
    objective: str | None = None,
) -> _Setup:
    from flakefinder.hunt.simulated import SimSpec, build_microscope, chip_fingerprint
    from flakefinder.synth.chip import load_chip

    pixel = um_per_px or 0.2
    if objectives and objective is not None:
        from flakefinder.hardware.objectives import find_objective

        pixel = find_objective(objectives, objective).pixel_size()
    if chip is not None:
        vchip = load_chip(chip)
        name = chip_name or chip.stem
    else:
        vchip = _random_chip(
            chip_size_mm, mats, oxide_nm, seed, frame_px * pixel, overlap, progress
        )
        name = chip_name or f"sim-{chip_size_mm:g}mm-seed{seed}"
    spec = SimSpec(
        seed=seed,
        frame_px=frame_px,
        chip_size_mm=None if chip is not None else chip_size_mm,
        materials=mats,
        oxide_nm=oxide_nm,
        chip_file=None if chip is None else str(chip.resolve()),
        um_per_px=pixel,
        objectives=objectives or (),
        objective=objective if objectives else None,
        chip_edge=bool(objectives),  # with a turret the holder shows around the chip
        chip_sha256=chip_fingerprint(vchip),
    )
    chip_corners = (
        _parse_corners(corners) if corners else [(0.0, 0.0), (vchip.width_um, vchip.height_um)]
    )
    return _Setup(
        build_microscope(spec, vchip),
        chip_corners,
        name,
        float(vchip.oxide_thickness_nm),
        spec.to_dict(),
    )


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
    objectives: tuple[Objective, ...] | None = None,
) -> _Setup:
    from flakefinder.hardware.mmcore import mmcore_microscope

    if not mm_config.is_file():
        raise typer.BadParameter(
            f"no such Micro-Manager configuration file: {mm_config}", param_hint="--mm-config"
        )
    if corners is None:
        raise typer.BadParameter("a real chip needs --corners", param_hint="--corners")
    chip_corners = _parse_corners(corners)
    microscope = mmcore_microscope(mm_config, um_per_px=um_per_px, objectives=objectives)
    return _Setup(microscope, chip_corners, chip_name or "chip", oxide_nm)
