"""``flakefinder calibrate`` and ``flakefinder setup show|export``: microscope setup profiles."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flakefinder.cli.options import OptionalOxideNmOpt, OptionalUmPerPxOpt

if TYPE_CHECKING:
    from flakefinder.calibration import SetupProfile

CALIBRATE_HELP = (
    "Build a setup profile (colour table per layer number) from micrographs of one setup: "
    "with --labels (layer numbers), --masks DIR (outlines only; layers from the optics fit), "
    "--from-gmm FILE (a 2DMatGMM table), or nothing (mined from the images; refused when the "
    "images cannot determine a table)."
)


class ExportFormat(str, Enum):
    """Formats ``setup export`` writes."""

    gmm = "gmm"


def calibrate_command(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Micrographs (files or folders).")
    ] = None,
    material: Annotated[str, typer.Option("--material", "-m", help="Flake material.")] = "graphene",
    oxide_nm: OptionalOxideNmOpt = None,
    um_per_px: OptionalUmPerPxOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Profile JSON to write.")] = Path(
        "setup.json"
    ),
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="COCO / labelme / Label Studio JSON, a folder of labelme files, or a folder of "
            "semantic PNGs (pixel = layer number) named like the images.",
        ),
    ] = None,
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks", help="Folder of instance-mask PNGs (pixel = instance id) per image stem."
        ),
    ] = None,
    from_gmm: Annotated[
        Path | None, typer.Option("--from-gmm", help="Import a 2DMatGMM colour-table JSON.")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Profile name.")] = "setup",
    base: Annotated[
        Path | None,
        typer.Option("--base", help="Add this material's table to an existing profile."),
    ] = None,
) -> None:
    """Calibrate a setup profile; see ``CALIBRATE_HELP``."""
    from flakefinder.calibration import SetupProfile
    from flakefinder.errors import CalibrationError

    given = [x for x in (labels, masks, from_gmm) if x is not None]
    if len(given) > 1:
        raise CalibrationError("use one of --labels, --masks and --from-gmm, not several")
    base_profile = SetupProfile.load(base) if base is not None else None
    oxide_nm, um_per_px = _oxide_and_pixel(oxide_nm, um_per_px, base_profile, material)
    if from_gmm is not None:
        from flakefinder.calibration.gmm import import_gmm

        profile = import_gmm(
            from_gmm,
            material=material,
            oxide_nm=oxide_nm,
            um_per_px=um_per_px,
            name=name,
            base=base_profile,
        )
        _print_table(profile, material)
        profile.save(out)
        typer.echo(f"wrote {out} ({profile.profile_id})")
        return
    from flakefinder.calibration import calibrate
    from flakefinder.calibration.labels import read_instance_masks, read_labels
    from flakefinder.imaging import iter_image_files, load_image

    files = iter_image_files(list(images or []))
    if not files:
        raise CalibrationError("no images given: pass micrographs of the setup to calibrate")
    arrays = [load_image(f) for f in files]
    names = [f.name for f in files]
    shapes = [(a.shape[0], a.shape[1]) for a in arrays]
    regions = None
    if masks is not None:
        regions = read_instance_masks(masks, names, shapes)
    elif labels is not None:
        label_set = read_labels(labels, names, shapes, material=material)
        regions = list(label_set.regions)
        if label_set.skipped:
            typer.echo(
                f"labels: {label_set.skipped} shapes skipped (no layer number or another material)"
            )
    report = calibrate(
        arrays,
        material=material,
        oxide_nm=oxide_nm,
        um_per_px=um_per_px,
        regions=regions,
        name=name,
        base=base_profile,
        image_names=names,
    )
    for line in report.lines():
        typer.echo(line)
    if regions is None and not report.profile.table(report.material).layers:
        raise CalibrationError("calibration produced no colour table")
    report.profile.save(out)
    typer.echo(f"wrote {out} ({report.profile.profile_id})")


def _oxide_and_pixel(
    oxide_nm: float | None, um_per_px: float | None, base: SetupProfile | None, material: str
) -> tuple[float, float]:
    """``--oxide-nm`` and ``--um-per-px`` by the CLI's one rule: given, else the ``--base``
    profile's, else the shared defaults (said on stderr, since they go into the profile)."""
    from flakefinder.cli.options import (
        DEFAULT_OXIDE_NM,
        DEFAULT_UM_PER_PX,
        note_assumed_defaults,
        setting,
    )
    from flakefinder.domain import ImagingContext

    ox = setting(oxide_nm, None if base is None else base.oxide_nm, DEFAULT_OXIDE_NM)
    um = setting(um_per_px, None if base is None else base.um_per_px, DEFAULT_UM_PER_PX)
    if base is None:
        ctx = ImagingContext(um_per_px=um, oxide_thickness_nm=ox, materials=(material,))
        note_assumed_defaults(ctx, um_per_px=um_per_px, oxide_nm=oxide_nm, who="calibrate")
    return ox, um


def _print_table(profile: object, material: str) -> None:
    from flakefinder.calibration.show import profile_lines

    for line in profile_lines(profile):  # type: ignore[arg-type]
        typer.echo(line)


def setup_show(
    profile_path: Annotated[Path, typer.Argument(help="Setup profile JSON.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of the colour clusters here.")
    ] = None,
) -> None:
    """Print a setup profile and (with --plot) draw its colour clusters."""
    from flakefinder.calibration import SetupProfile
    from flakefinder.calibration.show import plot_profile, profile_lines

    profile = SetupProfile.load(profile_path)
    for line in profile_lines(profile):
        typer.echo(line)
    if plot is not None:
        plot_profile(profile, plot)
        typer.echo(f"wrote {plot}")


def setup_export(
    profile_path: Annotated[Path, typer.Argument(help="Setup profile JSON.")],
    format: Annotated[
        ExportFormat, typer.Option("--format", help="Output format.")
    ] = ExportFormat.gmm,
    material: Annotated[
        str | None, typer.Option("--material", "-m", help="Material (default: the only one).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")] = Path("gmm.json"),
) -> None:
    """Write one material's colour table in another tool's format (2DMatGMM JSON)."""
    from flakefinder.artifacts import write_json_atomic
    from flakefinder.calibration import SetupProfile
    from flakefinder.calibration.gmm import export_gmm
    from flakefinder.errors import ProfileError

    profile = SetupProfile.load(profile_path)
    if material is None:
        if len(profile.materials) != 1:
            raise ProfileError(
                f"the profile has several materials ({', '.join(profile.material_names)}); "
                "choose one with --material"
            )
        material = profile.materials[0].material
    write_json_atomic(out, export_gmm(profile, material))
    typer.echo(f"wrote {out} ({format.value}, {material})")


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` and the ``setup`` group to the CLI."""
    app.command("calibrate", help=CALIBRATE_HELP)(calibrate_command)
    setup = typer.Typer(help="Inspect and export setup profiles.", no_args_is_help=True)
    setup.command("show")(setup_show)
    setup.command("export")(setup_export)
    app.add_typer(setup, name="setup")
