"""``flakefinder demo``: a simulated chip search end to end (virtual chip -> scan -> detect -> SQLite)."""

from __future__ import annotations

from pathlib import Path

import typer

from flakefinder.cli.options import (
    DEFAULT_MATERIALS,
    DEFAULT_OXIDE_NM,
    ChipSizeMmOpt,
    DetectorOpt,
    DetectorOptionsOpt,
    MaterialsOpt,
    ModelOpt,
    OxideNmOpt,
)
from flakefinder.detect.registry import SIMULATED_DETECTOR

BEST_DETECTOR_WHY = (
    "best by the benchmarks: mask mAP@50 0.51 vs 0.30 for the shipped Mask R-CNN on held-out"
    " synthetic images (README, 'Detectors on held-out synthetic images')"
)

# Files and folders one demo run writes into --out (a re-run removes them first).
_DEMO_FILES = ("flakefinder.db", "flakefinder.db-wal", "flakefinder.db-shm", "flakes.csv",
               "flakes.json", "chip.json")  # fmt: skip


def demo(
    out: Path = typer.Option(
        Path("demo-output"), help="Folder for the database, tiles and exports."
    ),
    chip_size_mm: ChipSizeMmOpt = 1.5,
    chip_mm: float | None = typer.Option(None, "--chip-mm", hidden=True, help="Old name."),
    materials: MaterialsOpt = DEFAULT_MATERIALS,
    oxide_nm: OxideNmOpt = DEFAULT_OXIDE_NM,
    detector: DetectorOpt = SIMULATED_DETECTOR,
    model: ModelOpt = None,
    detector_option: DetectorOptionsOpt = None,
    seed: int = typer.Option(7, help="Seed of the virtual chip and camera noise."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    real: bool = typer.Option(
        False,
        "--real",
        help="Instead: calibrate (imported table and no-label self-calibration) and detect on "
        "the real 2DMatGMM micrographs shipped with flakefinder, with overlays.",
    ),
    passes: str = typer.Option(
        "overview,search,revisit",
        help="Which passes to run: overview (low magnification, proposes the search region),"
        " search, revisit (close-ups of the selected flakes at high magnification).",
    ),
    overview_objective: str = typer.Option("5x", help="Objective of the overview pass."),
    search_objective: str = typer.Option("20x", help="Objective of the search pass."),
    revisit_objective: str = typer.Option("50x", help="Objective of the revisit pass."),
    revisit_filter: str = typer.Option(
        "layers<=10,area_um2>=40", help="Which flakes the revisit visits (as revisit --filter)."
    ),
) -> None:
    """Make a virtual chip and hunt it with the simulated microscope: an overview at 5x finds
    the chip and proposes the search region, the search at 20x detects and stores every flake,
    the revisit at 50x takes close-ups of the selected ones and refines them.

    Prints how the stored flakes compare with the chip's known flakes, each pass's throughput,
    and where the database, tile images and CSV/JSON exports are. Browse them with the command
    it prints at the end.
    """
    if real:
        from flakefinder.cli.demo_real import run_real_demo

        run_real_demo(out)
        return
    from flakefinder.cli import parse_materials
    from flakefinder.cli.demo_hunt import (
        DEMO_FOCUS_PLANE_UM,
        DEMO_PARFOCAL_ERROR_UM,
        HuntRun,
        parse_passes,
        revisit,
        revisit_vs_truth,
        search_tiles,
    )
    from flakefinder.cli.options import deprecated_alias
    from flakefinder.db import Database, FlakeQuery, flakes_to_csv, flakes_to_json
    from flakefinder.db.hunt import HuntStore
    from flakefinder.domain import ImagingContext
    from flakefinder.evaluate.chip_truth import FoundFlake, compare_with_chip
    from flakefinder.hardware.objectives import DEFAULT_OBJECTIVES, find_objective
    from flakefinder.hunt.detectors import detector_for_objective
    from flakefinder.hunt.search_pass import run_search_pass
    from flakefinder.hunt.simulated import SimSpec, build_microscope, chip_fingerprint
    from flakefinder.scan.throughput import pass_table
    from flakefinder.synth.chip import random_chip, save_chip
    from flakefinder.text import plural

    deprecated_alias(chip_mm, "--chip-mm", "--chip-size-mm")
    if chip_mm is not None:
        chip_size_mm = chip_mm
    chip_mm = chip_size_mm
    mats = parse_materials(materials)
    wanted = parse_passes(passes)
    for name in (overview_objective, search_objective, revisit_objective):
        find_objective(DEFAULT_OBJECTIVES, name).pixel_size()  # refuse unknown ones first
    search_obj = find_objective(DEFAULT_OBJECTIVES, search_objective)
    det = detector_for_objective(detector, search_obj, model=model, options=detector_option)
    out = out.resolve()
    _clear_previous_demo(out)
    out.mkdir(parents=True, exist_ok=True)
    side_um = chip_mm * 1000.0
    chip = random_chip(side_um, side_um, mats, oxide_thickness_nm=oxide_nm, seed=seed)
    chip_file = save_chip(chip, out / "chip.json")
    spec = SimSpec(
        seed=seed, frame_px=1024, chip_file=str(chip_file), materials=mats, oxide_nm=oxide_nm,
        objectives=DEFAULT_OBJECTIVES, objective=search_obj.name,
        focus_plane_um=DEMO_FOCUS_PLANE_UM, parfocal_error_um=DEMO_PARFOCAL_ERROR_UM,
        chip_edge=True, chip_sha256=chip_fingerprint(chip),
    )  # fmt: skip
    microscope = build_microscope(spec, chip)
    fov_w, fov_h = search_obj.fov_um(microscope.camera.shape_px)

    db_path = out / "flakefinder.db"
    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    hunt = HuntStore(db)
    chip_id = db.add_chip(
        f"demo-{chip_mm:g}mm-seed{seed}", mats, oxide_nm, "virtual chip", get_or_create=True
    )
    scan_id = db.start_scan(
        chip_id,
        settings={"demo": True, "chip_file": str(chip_file), "overlap": 0.1, "sim": spec.to_dict(),
                  "simulated": True},
        objective=search_obj.name,
        um_per_px=search_obj.pixel_size(),
        detector=det.name,
        detector_version=det.version,
        n_tiles_planned=0,
    )  # fmt: skip
    run = HuntRun()
    overview = overview_objective if "overview" in wanted else None
    plan = search_tiles(
        microscope, hunt, run, chip=chip, chip_id=chip_id, scan_id=scan_id, overview=overview,
        search=search_obj.name, image_dir=out / f"scan_{scan_id}", progress=progress,
    )  # fmt: skip
    hunt.set_planned_tiles(scan_id, len(plan))
    typer.echo(
        f"virtual {chip_mm:g} x {chip_mm:g} mm chip ({', '.join(mats)}, "
        f"{plural(len(chip.flakes), 'piece')}) -> {plural(len(plan), 'tile')} of "
        f"{fov_w:.0f} x {fov_h:.0f} µm"
    )
    for note in run.notes:
        typer.echo(note)
    why = f" ({BEST_DETECTOR_WHY})" if det.name == SIMULATED_DETECTOR else ""
    typer.echo(f"detector: {det.name} {det.version}{why}")
    context = ImagingContext(
        um_per_px=microscope.camera.um_per_px, oxide_thickness_nm=oxide_nm, materials=mats
    )
    summary, report = run_search_pass(
        microscope, det, db, hunt, scan_id=scan_id, chip_id=chip_id, plan=plan,
        context=context, image_dir=out / f"scan_{scan_id}", progress=progress,
    )  # fmt: skip
    run.reports.append(report)
    stored = db.query_flakes(FlakeQuery(scan_id=scan_id))
    flakes_to_csv(stored, out / "flakes.csv")
    flakes_to_json(stored, out / "flakes.json")
    comparison = compare_with_chip(
        chip, [FoundFlake(f.material, f.layer_class, f.layer_count, f.bbox_um) for f in stored]
    )
    typer.echo(
        f"\nscan {scan_id}: {plural(summary.tiles_done, 'tile')} in {summary.wall_s:.1f} s "
        f"({summary.tiles_per_s:.2f} tiles/s, {100 * summary.outside_detection_share:.1f}% outside detection), "
        f"{plural(len(stored), 'flake')} stored\n"
    )
    typer.echo("Known flakes of the virtual chip vs what the scan stored:\n")
    typer.echo(comparison.to_markdown())
    if "revisit" in wanted:
        revisit(
            microscope, db, hunt, run, scan_id=scan_id, objective=revisit_objective,
            filter_text=revisit_filter, context=context, detector_name=detector,
            detector_options=detector_option, image_dir=out / f"scan_{scan_id}",
            progress=progress,
        )  # fmt: skip
        typer.echo("")
        if run.revisit is not None:
            r = run.revisit
            counts = ", ".join(f"{n} {s.value}" for s, n in r.by_status.items() if n)
            typer.echo(
                f"revisit at {revisit_objective} ({revisit_filter}):"
                f" {plural(r.visited, 'flake')} visited ({counts})"
            )
            typer.echo(revisit_vs_truth(chip, db, hunt, r.pass_id))
        for note in run.notes[len(run.notes) - 1 :] if run.revisit is None else ():
            typer.echo(note)
    db.close()
    typer.echo("\nPasses (time per frame; hours for a 1 cm² chip at each objective):\n")
    typer.echo(pass_table(run.reports))
    import os
    import sys

    exe = sys.argv[0] if sys.argv and sys.argv[0].endswith("flakefinder") else "flakefinder"
    exe = os.path.relpath(exe) if os.path.isabs(exe) and exe.startswith(os.getcwd()) else exe
    if det.name != SIMULATED_DETECTOR:
        typer.echo(
            f"\ncompare with the default detector:  {exe} demo --detector {SIMULATED_DETECTOR}"
        )
    typer.echo(
        f"\nresults:\n  database   {db_path}\n  tiles      {out / f'scan_{scan_id}'}"
        f" (close-ups in closeups/)\n"
        f"  flakes     {out / 'flakes.csv'}, {out / 'flakes.json'}\n  chip       {chip_file}\n"
        f"browse:  {exe} serve --detector none --db sqlite:///{db_path}   (then open http://127.0.0.1:8000)\n"
        f"query:   {exe} flakes list --db sqlite:///{db_path} --layer-class mono"
    )


def _clear_previous_demo(out: Path) -> None:
    """Remove an earlier demo run from ``out`` (so flakes.csv and the database agree).

    Refuses (exit 2) when ``out`` holds a database with scans that the demo did not make.
    """
    import shutil

    from flakefinder.db import Database
    from flakefinder.errors import FlakefinderError

    db_path = out / "flakefinder.db"
    if not db_path.is_file():
        return
    db = Database(f"sqlite:///{db_path}")
    try:
        scans = db.list_scans()
    finally:
        db.close()
    if any(not s.settings.get("demo") for s in scans):
        raise FlakefinderError(
            f"{db_path} holds scans that `flakefinder demo` did not make; choose another --out"
        )
    typer.echo(f"{out} holds an earlier demo run; starting fresh (its results are replaced)")
    for name in _DEMO_FILES:
        (out / name).unlink(missing_ok=True)
    for folder in out.glob("scan_*"):
        if folder.is_dir():
            shutil.rmtree(folder)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
