"""``flakefinder revisit``: back to a scan's selected flakes at high magnification."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flakefinder.cli.interrupts import sigterm_as_interrupt, stopped
from flakefinder.cli.options import (
    DbOpt,
    DetectorOptionsOpt,
    ModelOpt,
    ScanDetectorOpt,
    SetupOpt,
    scan_detector,
)

if TYPE_CHECKING:
    from flakefinder.db import Database, ScanInfo
    from flakefinder.db.hunt import HuntStore
    from flakefinder.domain import Detector
    from flakefinder.hardware.objectives import Objective
    from flakefinder.hardware.protocols import Microscope
    from flakefinder.hunt.revisit_pass import RevisitRequest


def register(app: typer.Typer) -> None:
    app.command("revisit")(revisit_cmd)


def revisit_cmd(
    scan: int = typer.Option(..., "--scan", min=1, help="The scan whose flakes to revisit."),
    objective: str = typer.Option(..., help="Objective of the close-ups, e.g. 50x or 100x."),
    filter_text: str = typer.Option(
        "",
        "--filter",
        help="Which flakes: comma-separated FIELD OP VALUE clauses, all must hold, e.g."
        " 'layers<=3,area_um2>=100' (fields: layers, area_um2, confidence, material, class,"
        " status; default: every flake of the scan).",
    ),
    db: DbOpt = None,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the scan's unfinished revisit pass."
    ),
    z_stack: int = typer.Option(1, min=1, max=21, help="Close-up planes (a z-stack when > 1)."),
    z_step_um: float = typer.Option(0.5, min=0.01, max=50.0, help="Spacing of the z-stack (µm)."),
    bracket: bool = typer.Option(
        False,
        "--bracket",
        help="A second close-up exposure: half for thick flakes, 1.5x for monolayers.",
    ),
    objectives_file: Path | None = typer.Option(
        None, "--objectives", help="Objectives file (TOML/JSON) of the microscope."
    ),
    mm_config: Path | None = typer.Option(
        None, help="Micro-Manager configuration (default: the scan's simulated microscope)."
    ),
    chip_name: str | None = typer.Option(
        None, help="Name of the chip on the stage (must be the scan's chip)."
    ),
    chip: Path | None = typer.Option(
        None, help="Simulated: the virtual chip on the stage (default: the scan's own)."
    ),
    detector: ScanDetectorOpt = None,
    model: ModelOpt = None,
    setup: SetupOpt = None,
    detector_option: DetectorOptionsOpt = None,
    out: Path | None = typer.Option(
        None, help="Folder for close-ups when the scan saved no tiles (else next to its tiles)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Move to each selected flake of a scan along a short route, autofocus, take close-ups,
    detect again at this magnification and store the refined outline and layer number with
    the flake. Flakes that cannot be done (outside the stage, focus fails, not found again)
    are reported and the rest goes on. Stop with Ctrl-C; continue with --resume."""
    from flakefinder.cli.options import load_setup_option, open_database
    from flakefinder.db.hunt import HuntStore
    from flakefinder.hardware.objectives import switch_objective
    from flakefinder.hunt.detectors import detector_for_objective
    from flakefinder.hunt.revisit_pass import RevisitRequest, closeup_dir, finished_scan
    from flakefinder.scan.revisit import RevisitOptions
    from flakefinder.scan.selection import parse_filter

    parse_filter(filter_text)  # a bad filter is refused before anything else
    options = RevisitOptions(z_stack=z_stack, z_step_um=z_step_um, bracket=bracket)
    database = open_database(db, must_exist=True)
    database.migrate()
    scan_info = finished_scan(database, scan)
    microscope = _microscope(scan_info, mm_config, chip_name, chip, objectives_file)
    obj = switch_objective(microscope, objective)
    det = detector_for_objective(
        scan_detector(detector, simulated=mm_config is None), obj, model=model, setup=load_setup_option(setup), options=detector_option
    )
    request = RevisitRequest(scan, obj.name, filter_text, resume, options)
    _run(microscope, det, database, HuntStore(database), request, scan_info, obj,
         closeup_dir(database, scan, out), progress)  # fmt: skip


def _objectives(path: Path | None, stored: tuple[Objective, ...]) -> tuple[Objective, ...]:
    from flakefinder.hardware.objectives import DEFAULT_OBJECTIVES, load_objectives

    if path is not None:
        return load_objectives(path)
    return stored or DEFAULT_OBJECTIVES


def _microscope(
    scan: ScanInfo,
    mm_config: Path | None,
    chip_name: str | None,
    chip: Path | None,
    objectives_file: Path | None,
) -> Microscope:
    """The microscope holding the scan's chip: a Micro-Manager one (``--mm-config``) or the
    scan's simulated one, rebuilt; refuses another chip than the scan's."""
    from dataclasses import replace

    from flakefinder.errors import FlakefinderError
    from flakefinder.hunt.simulated import (
        SimSpec,
        WrongChipError,
        build_chip,
        build_microscope,
        chip_fingerprint,
    )

    if chip_name is not None and chip_name != scan.chip_name:
        raise WrongChipError(
            f"scan {scan.id} is of chip {scan.chip_name!r}, but the chip on the stage is"
            f" {chip_name!r}; mount that chip or revisit a scan of this one"
        )
    if mm_config is not None:
        from flakefinder.hardware.mmcore import mmcore_microscope

        if chip_name is None:
            raise typer.BadParameter(
                "name the chip on the stage (it must be the scan's chip)", param_hint="--chip-name"
            )
        objs = () if objectives_file is None else _objectives(objectives_file, ())
        return mmcore_microscope(mm_config, objectives=objs)
    raw = scan.settings.get("sim")
    if not isinstance(raw, dict):
        raise FlakefinderError(
            f"scan {scan.id} was made on a real microscope (or before simulated scans kept their"
            " microscope): give --mm-config FILE and --chip-name NAME"
        )
    spec = SimSpec.from_dict(raw)
    if chip is not None:
        from flakefinder.synth.chip import load_chip

        vchip = load_chip(chip)
        if spec.chip_sha256 and chip_fingerprint(vchip) != spec.chip_sha256:
            raise WrongChipError(
                f"{chip} is not the virtual chip of scan {scan.id} (chip {scan.chip_name!r});"
                " revisit a scan of this chip, or leave out --chip"
            )
    else:
        vchip = build_chip(spec)
    objs = _objectives(objectives_file, spec.objectives)
    start = spec.objective
    if start is None or start not in {o.name for o in objs}:  # start at a calibrated one
        start = next((o.name for o in objs if o.um_per_px is not None), objs[0].name)
    return build_microscope(replace(spec, objectives=objs, objective=start), vchip)


def _run(
    microscope: Microscope,
    det: Detector,
    database: Database,
    hunt: HuntStore,
    request: RevisitRequest,
    scan: ScanInfo,
    obj: Objective,
    image_dir: Path | None,
    progress: bool,
) -> None:
    from flakefinder.db.locks import scan_lock
    from flakefinder.domain import ImagingContext
    from flakefinder.hunt.revisit_pass import open_revisit, run_revisit_pass
    from flakefinder.scan.revisit import RevisitStatus
    from flakefinder.scan.throughput import pass_table
    from flakefinder.text import plural

    chip = database.get_chip(scan.chip_id)
    context = ImagingContext(
        um_per_px=obj.pixel_size(),
        oxide_thickness_nm=90.0 if chip is None else chip.oxide_thickness_nm,
        materials=("graphene",) if chip is None or not chip.materials else chip.materials,
    )
    try:
        with sigterm_as_interrupt(), scan_lock(database, scan.id):
            opened = open_revisit(database, hunt, request, microscope)
            what = "continuing" if opened.resumed else "revisiting"
            typer.echo(
                f"revisit pass {opened.pass_id}: {what} {plural(len(opened.targets), 'flake')} of"
                f" scan {scan.id} at {obj.name} ({obj.pixel_size():g} µm/px), route"
                f" {opened.route_um / 1000:.2f} mm (stored order {opened.naive_route_um / 1000:.2f} mm)",
                err=True,
            )
            summary = run_revisit_pass(
                microscope, det, hunt, opened, context,
                options=request.options, image_dir=image_dir, progress=progress,
            )  # fmt: skip
    except KeyboardInterrupt as exc:
        stopped(f"revisit of scan {scan.id}", exc)
    for info in hunt.revisits_of_pass(summary.pass_id):
        if info.status != RevisitStatus.OK.value:
            typer.secho(f"  {info.status}: {info.message}", fg=typer.colors.YELLOW, err=True)
    counts = ", ".join(f"{n} {s.value}" for s, n in summary.by_status.items() if n)
    typer.echo(
        f"revisit pass {summary.pass_id}: {plural(summary.visited, 'flake')} visited"
        f" ({counts or 'none'}), {summary.skipped} done before; close-ups in"
        f" {image_dir if image_dir is not None else '(not saved: the scan has no image folder; use --out)'}"
    )
    typer.echo(pass_table([summary.report]))
