"""``flakefinder demo``: a simulated chip search end to end (virtual chip -> scan -> detect -> SQLite)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(
        Path("demo-output"), help="Folder for the database, tiles and exports."
    ),
    chip_mm: float = typer.Option(1.5, help="Side of the square virtual chip (mm)."),
    materials: str = typer.Option("graphene,hBN", help="Materials exfoliated onto the chip."),
    oxide_nm: float = typer.Option(90.0, help="SiO2 thickness (nm)."),
    detector: str = typer.Option(
        "auto",
        help="auto (the shipped Mask R-CNN model if installed, else contrast), maskrcnn, contrast.",
    ),
    seed: int = typer.Option(7, help="Seed of the virtual chip and camera noise."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    real: bool = typer.Option(
        False,
        "--real",
        help="Instead: calibrate (imported table and no-label self-calibration) and detect on "
        "the real 2DMatGMM micrographs shipped with flakefinder, with overlays.",
    ),
) -> None:
    """Make a virtual chip, scan it with the simulated microscope, detect and store every flake.

    Prints how the stored flakes compare with the chip's known flakes, and where the database,
    tile images and CSV/JSON exports are. Browse them with the command it prints at the end.
    """
    if real:
        from flakefinder.cli.demo_real import run_real_demo

        run_real_demo(out)
        return
    from flakefinder.cli import parse_materials
    from flakefinder.db import Database, FlakeQuery, flakes_to_csv, flakes_to_json
    from flakefinder.detect.registry import create_detector
    from flakefinder.domain import ImagingContext
    from flakefinder.evaluate.chip_truth import FoundFlake, compare_with_chip
    from flakefinder.hardware.sim import simulated_microscope
    from flakefinder.scan.loop import run_scan
    from flakefinder.scan.plan import plan_raster
    from flakefinder.synth.chip import random_chip, save_chip

    mats = parse_materials(materials)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    side_um = chip_mm * 1000.0
    chip = random_chip(side_um, side_um, mats, oxide_thickness_nm=oxide_nm, seed=seed)
    chip_file = save_chip(chip, out / "chip.json")
    microscope = simulated_microscope(chip, shape_px=(1024, 1024), um_per_px=0.2, seed=seed)
    h_px, w_px = microscope.camera.shape_px
    fov_w, fov_h = w_px * microscope.camera.um_per_px, h_px * microscope.camera.um_per_px
    plan = plan_raster(
        [(0.0, 0.0), (side_um, side_um)], fov_w, fov_h, 0.1, limits=microscope.stage.limits
    )

    if detector == "auto":
        from flakefinder.detect.maskrcnn import default_model_folder

        detector = "maskrcnn" if (default_model_folder() / "config.json").is_file() else "contrast"
    det = create_detector(detector)
    db_path = out / "flakefinder.db"
    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    chip_id = db.add_chip(
        f"demo-{chip_mm:g}mm-seed{seed}", mats, oxide_nm, "virtual chip", get_or_create=True
    )
    scan_id = db.start_scan(
        chip_id,
        settings={"demo": True, "chip_file": str(chip_file), "overlap": 0.1},
        objective=microscope.objective,
        um_per_px=microscope.camera.um_per_px,
        detector=det.name,
        detector_version=det.version,
        n_tiles_planned=len(plan),
    )
    typer.echo(
        f"virtual {chip_mm:g} x {chip_mm:g} mm chip ({', '.join(mats)}, {len(chip.flakes)} pieces) -> "
        f"{len(plan)} tiles of {fov_w:.0f} x {fov_h:.0f} µm, detector {det.name} {det.version}"
    )
    context = ImagingContext(
        um_per_px=microscope.camera.um_per_px, oxide_thickness_nm=oxide_nm, materials=mats
    )
    summary = run_scan(
        microscope,
        det,
        db,
        scan_id,
        plan,
        context,
        image_dir=out / f"scan_{scan_id}",
        progress=progress,
    )
    stored = db.query_flakes(FlakeQuery(scan_id=scan_id))
    flakes_to_csv(stored, out / "flakes.csv")
    flakes_to_json(stored, out / "flakes.json")
    comparison = compare_with_chip(
        chip, [FoundFlake(f.material, f.layer_class, f.layer_count, f.bbox_um) for f in stored]
    )
    db.close()
    typer.echo(
        f"\nscan {scan_id}: {summary.tiles_done} tiles in {summary.wall_s:.1f} s "
        f"({summary.tiles_per_s:.2f} tiles/s, {100 * summary.outside_detection_share:.1f}% outside detection), "
        f"{len(stored)} flakes stored\n"
    )
    typer.echo("Known flakes of the virtual chip vs what the scan stored:\n")
    typer.echo(comparison.to_markdown())
    import os
    import sys

    exe = sys.argv[0] if sys.argv and sys.argv[0].endswith("flakefinder") else "flakefinder"
    exe = os.path.relpath(exe) if os.path.isabs(exe) and exe.startswith(os.getcwd()) else exe
    if det.name != "contrast":
        typer.echo(f"\ncompare with the training-free detector:  {exe} demo --detector contrast")
    typer.echo(
        f"\nresults:\n  database   {db_path}\n  tiles      {out / f'scan_{scan_id}'}\n"
        f"  flakes     {out / 'flakes.csv'}, {out / 'flakes.json'}\n  chip       {chip_file}\n"
        f"browse:  {exe} serve --detector none --db sqlite:///{db_path}   (then open http://127.0.0.1:8000)\n"
        f"query:   {exe} flakes list --db sqlite:///{db_path} --layer-class mono"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
