"""``flakefinder annotate``: pre-annotations out to labelling tools, corrected labels back in."""

from __future__ import annotations

from pathlib import Path

import typer

from flakefinder.cli.options import (
    DetectorOpt,
    DetectorOptionsOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
    SetupOpt,
)
from flakefinder.detect.registry import DEFAULT_DETECTOR

annotate_app = typer.Typer(
    help="Annotation round trip: export model predictions as pre-annotations for Label Studio, "
    "CVAT (COCO) and labelme, then import the corrected labels (Label Studio JSON, CVAT COCO, "
    "labelme JSON, Labelbox NDJSON) back into one COCO dataset for `flakefinder train`.",
    no_args_is_help=True,
)


@annotate_app.command("export")
def export_cmd(
    images: list[Path] = typer.Argument(..., help="Image files or folders to pre-annotate."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for labelstudio_tasks.json, cvat_coco.json, labelme/."
    ),
    detector: DetectorOpt = DEFAULT_DETECTOR,
    model: ModelOpt = None,
    setup: SetupOpt = None,
    detector_option: DetectorOptionsOpt = None,
    materials: ProfileMaterialsOpt = None,
    oxide_nm: OptionalOxideNmOpt = None,
    um_per_px: OptionalUmPerPxOpt = None,
    image_url_prefix: str | None = typer.Option(
        None,
        "--image-url-prefix",
        help="Prefix of each Label Studio task's image URL (default: "
        "/data/local-files/?d=FOLDER/ with FOLDER the image folder's name, for a Label Studio "
        "whose LOCAL_FILES_DOCUMENT_ROOT is that folder's parent).",
    ),
) -> None:
    """Run a detector over IMAGES and write its predictions as pre-annotations.

    Unreadable images are named and skipped. For Label Studio, serve the images as local
    files: LOCAL_FILES_SERVING_ENABLED=true, LOCAL_FILES_DOCUMENT_ROOT=<parent of the image
    folder>, and a "Local files" storage with the image folder's absolute path.
    """
    from flakefinder.annotate.labelstudio import local_files_prefix
    from flakefinder.annotate.roundtrip import export_preannotations, predict_images
    from flakefinder.cli.options import build_detector, load_setup_option, resolve_context
    from flakefinder.domain import ClassMap
    from flakefinder.imaging import iter_image_files
    from flakefinder.text import plural

    loaded = load_setup_option(setup)
    ctx = resolve_context(
        um_per_px=um_per_px,
        oxide_nm=oxide_nm,
        materials=materials,
        profile=None if loaded is None else loaded.profile,
    )
    mats = ctx.materials
    det = build_detector(detector, model=model, setup=loaded, options=detector_option)
    files = iter_image_files(images)
    root = images[0] if len(images) == 1 and images[0].is_dir() else None
    predicted = predict_images(files, det, ctx, root=root)
    for reason in predicted.skipped:
        typer.secho(f"skipped: {reason}", fg=typer.colors.YELLOW, err=True)
    if not predicted.images:
        from flakefinder.errors import ImageError

        raise ImageError(f"none of the {len(files)} image(s) could be read")
    if image_url_prefix is None:
        folder = root if root is not None else files[0].parent
        image_url_prefix = local_files_prefix(folder.resolve().name)
    labeled = predicted.images
    written = export_preannotations(
        labeled,
        out,
        class_map=ClassMap.for_materials(mats),
        model_version=f"{det.name}-{det.version}",
        image_url_prefix=image_url_prefix,
    )
    n = sum(len(im.shapes) for im in labeled)
    typer.echo(f"{plural(n, 'flake')} in {plural(len(labeled), 'image')} exported:")
    for key, path in written.items():
        typer.echo(f"  {key}: {path}")
    if predicted.skipped:
        typer.echo(f"{plural(len(predicted.skipped), 'unreadable image')} skipped")
    typer.echo(f"Label Studio image URLs: {image_url_prefix}<file name>")


@annotate_app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="Annotation files (or folders of labelme JSON)."),
    fmt: str = typer.Option(..., "--format", help="labelstudio, cvat, coco, labelme or labelbox."),
    out: Path = typer.Option(
        ..., "--out", help="Dataset folder to write (annotations.json, images/)."
    ),
    images: Path | None = typer.Option(None, help="Folder holding the annotated images (copied)."),
    label_map: list[str] = typer.Option(
        [], help="Rename a label, e.g. --label-map 'graphene 1L=graphene_mono' (repeatable)."
    ),
    accept_predictions: bool = typer.Option(
        False,
        "--accept-predictions",
        help="Label Studio: import the pre-annotations of tasks nobody annotated as labels "
        "(default: such tasks are left out; skipped tasks are always left out).",
    ),
) -> None:
    """Import corrected labels into one COCO dataset ready for `flakefinder train`.

    Labels must be detection categories (<material>_<mono|few|thick>) or be renamed with
    --label-map. Empty polygons are dropped; RLE/brush masks are refused with a message.
    Label Studio JSON and JSON_MIN exports are read; of each task the newest finished
    annotation counts, skipped tasks and tasks without an annotation are left out (named),
    two tasks for one image are refused. COCO exports whose file names point elsewhere
    (../../images/x.png) are matched to the files in --images.
    """
    from flakefinder.annotate.roundtrip import ReadReport, import_dataset

    mapping = {}
    for item in label_map:
        old, sep, new = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--label-map {item!r} is not of the form old=new")
        mapping[old] = new
    report = ReadReport()
    path = import_dataset(files, fmt, out, image_dir=images, label_map=mapping,
                          accept_predictions=accept_predictions, report=report)  # fmt: skip
    for what, tasks in (("skipped in Label Studio", report.skipped),
                        ("without an annotation (use --accept-predictions to import their "
                         "pre-annotations)", report.unreviewed),
                        ("imported from unreviewed pre-annotations", report.from_predictions)):  # fmt: skip
        if tasks:
            shown = ", ".join(tasks[:5]) + (" ..." if len(tasks) > 5 else "")
            typer.echo(f"{len(tasks)} task(s) {what}: {shown}")
    n = sum(len(im.shapes) for im in report.images)
    typer.echo(f"COCO dataset written: {path} ({len(report.images)} image(s), {n} flake(s))")


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")
