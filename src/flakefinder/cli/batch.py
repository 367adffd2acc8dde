"""``flakefinder batch-detect``: detection over many images on a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import typer


def batch_detect(
    images: list[Path] = typer.Argument(None, help="Image files or folders (or use --db)."),
    out: Path = typer.Option(..., "--out", help="Folder for flakes.jsonl and flakes.csv."),
    detector: str = typer.Option("maskrcnn", help="maskrcnn, contrast or rulebased."),
    model: Path | None = typer.Option(
        None, help="Model folder for maskrcnn (default: shipped model)."
    ),
    db: str | None = typer.Option(None, help="Take the images of a flakefinder database instead."),
    scan: int | None = typer.Option(None, help="With --db: only this scan's images."),
    scheduler: str | None = typer.Option(
        None, help="Dask scheduler address (tcp://host:8786); default: a local cluster."
    ),
    workers: int | None = typer.Option(
        None, help="Local cluster worker processes (default: cores)."
    ),
    chunk_size: int = typer.Option(
        16, help="Images per task (the detector is built once per task)."
    ),
    materials: str = typer.Option("graphene", help="Comma-separated materials on the chips."),
    oxide_nm: float | None = typer.Option(
        None, help="SiO2 thickness (nm; default: the setup profile's, else 90)."
    ),
    um_per_px: float | None = typer.Option(
        None, help="Pixel size on the sample (µm; default: the setup profile's, else 0.2)."
    ),
    setup: Path | None = typer.Option(
        None, "--setup", help="Setup profile JSON for the calibrated contrast detector."
    ),
) -> None:
    """Run a detector over a folder or a database of images on a Dask cluster.

    Unreadable images are listed in the output with their error; the rest are processed.
    """
    import csv
    import json

    from rich.progress import Progress

    from flakefinder.cli import parse_materials
    from flakefinder.cluster.batch import (
        DetectorSpec,
        ImageResult,
        database_image_paths,
        detect_files,
    )
    from flakefinder.detect.flake_csv import FLAKE_CSV_FIELDS, flake_csv_row
    from flakefinder.domain import ClassMap, ImagingContext
    from flakefinder.imaging import iter_image_files
    from flakefinder.server.schemas import FlakeOut

    if db:
        files = database_image_paths(db, scan)
    elif images:
        files = iter_image_files(list(images))
    else:
        raise typer.BadParameter("give image files/folders or --db")
    options: tuple[tuple[str, str], ...] = (("model", str(model)),) if model else ()
    mats = parse_materials(materials)
    profile = None
    if setup is not None:
        from flakefinder.calibration.profile import check_compatible
        from flakefinder.cli.setup_option import resolve_setup

        # loaded here too so that a bad profile fails before any worker starts
        profile = resolve_setup(str(setup), detector, files, mats, oxide_nm, um_per_px).profile
        check_compatible(profile, materials=mats, oxide_nm=oxide_nm)
        options = (("setup_file", str(setup.resolve())),)
    ctx = ImagingContext(
        um_per_px=um_per_px if um_per_px is not None else (profile.um_per_px if profile else 0.2),
        oxide_thickness_nm=(
            oxide_nm if oxide_nm is not None else (profile.oxide_nm if profile else 90.0)
        ),
        materials=mats,
    )
    spec = DetectorSpec(detector, options)
    with Progress() as progress:
        task = progress.add_task("detecting", total=len(files))

        def advance(_: ImageResult) -> None:
            progress.advance(task)

        results = detect_files(
            files,
            spec,
            ctx,
            scheduler=scheduler,
            n_workers=workers,
            chunk_size=chunk_size,
            on_result=advance,
        )
    out.mkdir(parents=True, exist_ok=True)
    class_map = ClassMap.for_materials(ctx.materials)
    n_flakes = 0
    with (out / "flakes.jsonl").open("w") as jf, (out / "flakes.csv").open("w", newline="") as cf:
        writer = csv.DictWriter(cf, fieldnames=FLAKE_CSV_FIELDS)
        writer.writeheader()
        for image_id, r in enumerate(results, start=1):
            jf.write(
                json.dumps(
                    {
                        "image": r.path,
                        "width_px": r.width_px,
                        "height_px": r.height_px,
                        "error": r.error,
                        "flakes": [
                            FlakeOut.from_detection(d, ctx.um_per_px).model_dump(mode="json")
                            for d in r.detections
                        ],
                    }
                )
                + "\n"
            )
            for k, d in enumerate(r.detections):
                n_flakes += 1
                cat_id = class_map.id_of(d.material, d.layer_class)
                writer.writerow(flake_csv_row(d, image_id, r.path, k, cat_id, ctx.um_per_px))
    bad = [r for r in results if r.error]
    typer.echo(f"{n_flakes} flakes in {len(results) - len(bad)} images -> {out}")
    for r in bad:
        typer.echo(f"skipped {r.path}: {r.error}", err=True)


def register(app: typer.Typer) -> None:
    app.command("batch-detect")(batch_detect)
