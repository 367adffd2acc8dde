"""``flakefinder synth``: render a synthetic COCO dataset of flakes on virtual SiO2/Si chips."""

from __future__ import annotations

from pathlib import Path

import typer

from flakefinder.cli.options import (
    DEFAULT_FRAME_PX,
    DEFAULT_MATERIALS,
    DEFAULT_OXIDE_NM,
    DEFAULT_UM_PER_PX,
    FramePxOpt,
    MaterialsOpt,
    OxideNmOpt,
    UmPerPxOpt,
)

HELP = """Render a synthetic instance-segmentation dataset (COCO) of exfoliated 2D flakes.

Random single-material virtual chips are generated (crystal-shaped flakes with terraces, bulk
pieces, tape residue, particles), views around flakes are rendered with the thin-film optics
contrast model (illumination inhomogeneity, white balance, defocus blur, camera noise), and
OUT_DIR receives images/NNNNNN.png, annotations.json (COCO, RLE masks, categories such as
graphene_mono / graphene_few / graphene_thick with n_layers attributes) and chips/*.json
(the virtual chips, to re-render or simulate a scan). Same --seed, same bytes.

--style realistic renders crowded, randomised micrographs instead (each image draws its own
oxide 70-300 nm, NA 0.3-0.9, magnification 5-100x, lamp, white balance on the substrate or on
white, auto-exposure, sRGB/gamma, JPEG quality 60-95, per-channel defocus, vignetting, noise; bulk
crystals, residue, glue streaks, particles, folds, cracks, overlapping flakes) and writes
images/NNNNNN.jpg; --um-per-px, --oxide-nm, --flakes-per-mm2 and --gamma are then drawn per
image and the options are not used.

Example: flakefinder synth data/synth --images 200 --materials graphene,hBN --seed 0
         flakefinder synth data/real-like --style realistic --images 500 --frame-px 512
"""


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write images/, annotations.json, chips/."),
    images: int = typer.Option(100, "--images", "-n", min=0, help="Number of images to render."),
    materials: MaterialsOpt = DEFAULT_MATERIALS,
    frame_px: FramePxOpt = DEFAULT_FRAME_PX,
    size: int | None = typer.Option(None, "--size", hidden=True, help="Old name of --frame-px."),
    um_per_px: UmPerPxOpt = DEFAULT_UM_PER_PX,
    oxide_nm: OxideNmOpt = DEFAULT_OXIDE_NM,
    flakes_per_mm2: float = typer.Option(40.0, help="Flake density on the virtual chips."),
    gamma: float = typer.Option(1.0, help="Camera gamma encoding (stored = linear ** (1/gamma))."),
    seed: int = typer.Option(0, help="Random seed (the whole dataset is deterministic)."),
    style: str = typer.Option(
        "legacy", help="legacy (sparse chips, PNG) or realistic (crowded, randomised camera, JPEG)."
    ),
) -> None:
    """Render a synthetic COCO dataset of 2D flakes into OUT_DIR."""
    from flakefinder.cli import parse_materials
    from flakefinder.cli.options import deprecated_alias
    from flakefinder.errors import UnknownMaterialError

    deprecated_alias(size, "--size", "--frame-px")
    if size is not None:
        if size < 16:
            raise typer.BadParameter(f"must be at least 16, got {size}", param_hint="--size")
        frame_px = size

    try:
        mats = list(parse_materials(materials))
    except UnknownMaterialError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    if um_per_px <= 0 or oxide_nm < 0:
        typer.secho(
            "error: --um-per-px must be > 0 and --oxide-nm >= 0", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(code=2)

    if style not in ("legacy", "realistic"):
        typer.secho(
            f"error: --style must be legacy or realistic, got {style!r}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)

    from flakefinder.synth.coco import export_coco
    from flakefinder.synth.render import RenderSettings
    from flakefinder.text import plural

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            typer.echo(f"  {done}/{plural(total, 'image')}")

    if style == "realistic":
        from flakefinder.synth.realistic_coco import export_realistic_coco

        path = export_realistic_coco(
            out_dir,
            n_images=images,
            materials=mats,
            width_px=frame_px,
            height_px=frame_px,
            seed=seed,
            progress=progress,
        )
    else:
        path = export_coco(
            out_dir,
            n_images=images,
            materials=mats,
            width_px=frame_px,
            height_px=frame_px,
            um_per_px=um_per_px,
            seed=seed,
            oxide_thickness_nm=oxide_nm,
            flakes_per_mm2=flakes_per_mm2,
            settings=RenderSettings(gamma=gamma),
            progress=progress,
        )
    import json

    data = json.loads(path.read_text())
    typer.echo(
        f"wrote {plural(len(data['images']), 'image')} and "
        f"{plural(len(data['annotations']), 'annotation')} "
        f"({plural(len(data['categories']), 'category', 'categories')}) to {path}"
    )


def register(app: typer.Typer) -> None:
    app.command("synth", help=HELP)(synth)
