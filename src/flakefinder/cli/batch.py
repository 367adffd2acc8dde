"""``flakefinder batch-detect``: detection over many images on a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from flakefinder.cli.options import (
    DEFAULT_SCORE,
    DetectorOpt,
    DetectorOptionsOpt,
    DeviceOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
    ScoreOpt,
    SetupOpt,
)
from flakefinder.cli.progress import ProgressOpt
from flakefinder.detect.registry import DEFAULT_DETECTOR


def batch_detect(
    images: list[Path] = typer.Argument(None, help="Image files or folders (or use --db)."),
    out: Path = typer.Option(..., "--out", help="Folder for flakes.jsonl and flakes.csv."),
    detector: DetectorOpt = DEFAULT_DETECTOR,
    model: ModelOpt = None,
    setup: SetupOpt = None,
    detector_option: DetectorOptionsOpt = None,
    score: ScoreOpt = DEFAULT_SCORE,
    device: DeviceOpt = "auto",
    db: str | None = typer.Option(
        None,
        "--db",
        help="Take the images of a flakefinder database instead (default when no images are"
        " given: $FLAKEFINDER_DATABASE_URL, if set).",
        show_default=False,
    ),
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
    materials: ProfileMaterialsOpt = None,
    oxide_nm: OptionalOxideNmOpt = None,
    um_per_px: OptionalUmPerPxOpt = None,
    progress: bool = ProgressOpt,
) -> None:
    """Run a detector over a folder or a database of images on a Dask cluster.

    Unreadable images are listed in the output with their error; the rest are processed.
    """
    import csv
    import json
    import os

    from flakefinder.cli.options import check_detector, database_url, resolve_context
    from flakefinder.cli.progress import progress_bar
    from flakefinder.cluster.batch import (
        DetectorRecipe,
        ImageResult,
        database_image_paths,
        detect_files,
    )
    from flakefinder.db.settings import DATABASE_URL_ENV
    from flakefinder.detect.flake_csv import FLAKE_CSV_FIELDS, flake_csv_row
    from flakefinder.detect.registry import parse_option_pairs
    from flakefinder.domain import ClassMap
    from flakefinder.imaging import iter_image_files
    from flakefinder.server.schemas import FlakeOut
    from flakefinder.text import plural

    if not db and not images and os.environ.get(DATABASE_URL_ENV, "").strip():
        db = database_url(None)
    if db:
        files = database_image_paths(db, scan)
    elif images:
        files = iter_image_files(list(images))
    else:
        raise typer.BadParameter("give image files/folders or --db")
    profile = None
    loaded = None
    setup_file: Path | None = None
    if setup is not None:
        from flakefinder.cli.setup_option import resolve_setup

        # loaded here so that a bad profile fails before the cluster starts
        loaded = resolve_setup(setup, detector, files, materials, oxide_nm, um_per_px)
        profile = loaded.profile
    ctx = resolve_context(
        um_per_px=um_per_px, oxide_nm=oxide_nm, materials=materials, profile=profile
    )
    if loaded is not None and setup is not None:
        if loaded.source == "self-calibrated":
            out.mkdir(parents=True, exist_ok=True)
            setup_file = loaded.profile.save(out / "setup_profile.json")
            typer.echo(f"self-calibrated setup profile written to {setup_file}")
        else:
            setup_file = Path(setup)
    # Check name, options, model and profile here so that they fail before the cluster starts.
    check_detector(detector, model=model, setup=loaded, options=detector_option)

    recipe = DetectorRecipe(
        detector,
        tuple(parse_option_pairs(detector_option).items()),
        model=None if model is None else str(model.resolve()),
        setup=None if setup_file is None else str(setup_file.resolve()),
        min_score=score,
        device=device,
    )
    with progress_bar(len(files), "detecting", enabled=progress) as advance:

        def one_done(_: ImageResult) -> None:
            advance()

        results = detect_files(
            files,
            recipe,
            ctx,
            scheduler=scheduler,
            n_workers=workers,
            chunk_size=chunk_size,
            on_result=one_done,
        )
    out.mkdir(parents=True, exist_ok=True)
    class_map = ClassMap.for_materials(ctx.materials)
    n_flakes = 0
    from flakefinder.artifacts import atomic_open

    with atomic_open(out / "flakes.jsonl") as jf, atomic_open(out / "flakes.csv", newline="") as cf:
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
    typer.echo(
        f"{plural(n_flakes, 'flake')} in {plural(len(results) - len(bad), 'image')} -> {out}"
    )
    for r in bad:
        typer.echo(f"skipped {r.path}: {r.error}", err=True)


def register(app: typer.Typer) -> None:
    app.command("batch-detect")(batch_detect)
