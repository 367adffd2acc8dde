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
from flakefinder.detect.registry import DEFAULT_DETECTOR

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
    detector: DetectorOpt = DEFAULT_DETECTOR,
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
    from flakefinder.cli.options import build_detector, deprecated_alias
    from flakefinder.db import Database, FlakeQuery, flakes_to_csv, flakes_to_json
    from flakefinder.domain import ImagingContext
    from flakefinder.evaluate.chip_truth import FoundFlake, compare_with_chip
    from flakefinder.hardware.sim import simulated_microscope
    from flakefinder.scan.loop import run_scan
    from flakefinder.scan.plan import plan_raster
    from flakefinder.synth.chip import random_chip, save_chip
    from flakefinder.text import plural

    deprecated_alias(chip_mm, "--chip-mm", "--chip-size-mm")
    if chip_mm is not None:
        chip_size_mm = chip_mm
    chip_mm = chip_size_mm
    mats = parse_materials(materials)
    det = build_detector(detector, model=model, options=detector_option)
    out = out.resolve()
    _clear_previous_demo(out)
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
        f"virtual {chip_mm:g} x {chip_mm:g} mm chip ({', '.join(mats)}, "
        f"{plural(len(chip.flakes), 'piece')}) -> {plural(len(plan), 'tile')} of "
        f"{fov_w:.0f} x {fov_h:.0f} µm"
    )
    why = f" ({BEST_DETECTOR_WHY})" if det.name == DEFAULT_DETECTOR else ""
    typer.echo(f"detector: {det.name} {det.version}{why}")
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
        f"\nscan {scan_id}: {plural(summary.tiles_done, 'tile')} in {summary.wall_s:.1f} s "
        f"({summary.tiles_per_s:.2f} tiles/s, {100 * summary.outside_detection_share:.1f}% outside detection), "
        f"{plural(len(stored), 'flake')} stored\n"
    )
    typer.echo("Known flakes of the virtual chip vs what the scan stored:\n")
    typer.echo(comparison.to_markdown())
    import os
    import sys

    exe = sys.argv[0] if sys.argv and sys.argv[0].endswith("flakefinder") else "flakefinder"
    exe = os.path.relpath(exe) if os.path.isabs(exe) and exe.startswith(os.getcwd()) else exe
    if det.name != DEFAULT_DETECTOR:
        typer.echo(
            f"\ncompare with the default detector:  {exe} demo --detector {DEFAULT_DETECTOR}"
        )
    typer.echo(
        f"\nresults:\n  database   {db_path}\n  tiles      {out / f'scan_{scan_id}'}\n"
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
