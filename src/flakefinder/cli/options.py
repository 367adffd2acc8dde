"""The CLI vocabulary: one ``Annotated`` option type per concept, shared by every command.

One name per concept (``--materials``, ``--chip-size-mm``, ``--frame-px``, ``--detector``,
``--model``, ``--setup``, ``--detector-option``, ``--score``, ``--um-per-px``, ``--oxide-nm``,
``--db``) with one default, so ``detect``, ``batch-detect``, ``scan``, ``demo``, ``serve``,
``evaluate`` and ``annotate`` agree. :func:`build_detector` turns the detector options into a
detector through :mod:`flakefinder.detect.registry`; :func:`open_database` resolves ``--db``
(else ``$FLAKEFINDER_DATABASE_URL``, else ``sqlite:///flakefinder.db``).

Pixel size, oxide and materials follow one rule (:func:`setting`, :func:`resolve_context`): an
explicit option, else the ``--setup`` profile's value, else the defaults below, which are also
those of ``calibrate`` and of self-calibration (``--setup auto``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from flakefinder import bounds
from flakefinder.detect.registry import DEFAULT_DETECTOR, SIMULATED_DETECTOR, detector_help

if TYPE_CHECKING:
    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.db import Database
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector, ImagingContext

T = TypeVar("T")
D = TypeVar("D")

DEFAULT_MATERIALS = "graphene"
"""Default ``--materials`` of every command (the synthetic datasets' default too)."""
DEFAULT_SCORE = 0.5
"""Default ``--score``: detections below this confidence are dropped (detect, batch-detect)."""
DEFAULT_UM_PER_PX = 0.2
"""Default ``--um-per-px`` of every command (self-calibration and ``calibrate`` included)."""
DEFAULT_OXIDE_NM = 90.0
"""Default ``--oxide-nm`` of every command (self-calibration and ``calibrate`` included)."""
DEFAULT_FRAME_PX = 1024

DB_HELP = (
    "Database URL, e.g. sqlite:///flakes.db or postgresql+psycopg://user:pw@host/db "
    "(default: $FLAKEFINDER_DATABASE_URL, else sqlite:///flakefinder.db)."
)


def _positive_finite(value: float | None, name: str) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}", param_hint=name)
    return value


def _in_range(value: float | None, allowed: bounds.Range, name: str) -> float | None:
    """``value`` if finite and in ``allowed`` (the table shared with the server's schemas)."""
    if value is None:
        return None
    try:
        return allowed.check(value, name)
    except ValueError:
        raise typer.BadParameter(
            f"must be a finite number in {allowed.describe()}, got {value}", param_hint=name
        ) from None


def _check_um_per_px(value: float | None) -> float | None:
    return _in_range(value, bounds.UM_PER_PX, "--um-per-px")


def _check_oxide_nm(value: float | None) -> float | None:
    return _in_range(value, bounds.OXIDE_NM, "--oxide-nm")


def _check_chip_size_mm(value: float | None) -> float | None:
    return _in_range(value, bounds.CHIP_SIZE_MM, "--chip-size-mm")


def _check_score(value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise typer.BadParameter(f"must lie in [0, 1], got {value}", param_hint="--score")
    return value


def _check_frame_px(value: int | None) -> int | None:
    if value is not None and value < 16:
        raise typer.BadParameter(f"must be at least 16, got {value}", param_hint="--frame-px")
    return value


MaterialsOpt = Annotated[
    str,
    typer.Option(
        "--materials",
        help="Comma-separated materials, e.g. graphene,hBN,MoS2,WTe2,WSe2,MoSe2.",
    ),
]
ProfileMaterialsOpt = Annotated[
    str | None,
    typer.Option(
        "--materials",
        help="Comma-separated materials, e.g. graphene,hBN,MoS2,WTe2,WSe2,MoSe2 (default: the"
        f" setup profile's, else {DEFAULT_MATERIALS}).",
        show_default=False,
    ),
]
ChipSizeMmOpt = Annotated[
    float,
    typer.Option(
        "--chip-size-mm", help="Side of the square virtual chip (mm).", callback=_check_chip_size_mm
    ),
]
FramePxOpt = Annotated[
    int,
    typer.Option(
        "--frame-px", help="Image (camera frame) width and height (px).", callback=_check_frame_px
    ),
]
DetectorOpt = Annotated[str, typer.Option("--detector", help=detector_help())]
ScanDetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        help=detector_help() + " Default: contrast on a simulated chip (its images are rendered"
        " with the thin-film model it inverts), terrace on a real microscope.",
    ),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model", help="Model folder, for detectors that take one (default: the shipped model)."
    ),
]
SetupOpt = Annotated[
    str | None,
    typer.Option(
        "--setup",
        help="Setup profile JSON of the microscope (flakefinder calibrate), for detectors that"
        " accept one; 'auto' (detect, batch-detect): calibrate one on these images without"
        " labels first.",
    ),
]
def _detector_options_help(value: list[str] | None) -> list[str] | None:
    """``--detector-option help``: list every detector's options and exit 0.

    The option is eager, so the list comes before Typer asks for missing arguments
    (``flakefinder detect --detector-option help`` needs no images).
    """
    print_options_help_if_asked(value)
    return value


DetectorOptionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--detector-option",
        "-O",
        help="KEY=VALUE option of the detector (repeatable); '--detector-option help' lists them.",
        callback=_detector_options_help,
        is_eager=True,
    ),
]
ScoreOpt = Annotated[
    float,
    typer.Option(
        "--score", help="Keep detections with confidence >= SCORE.", callback=_check_score
    ),
]
UmPerPxOpt = Annotated[
    float,
    typer.Option("--um-per-px", help="Pixel size on the sample (µm).", callback=_check_um_per_px),
]
OptionalUmPerPxOpt = Annotated[
    float | None,
    typer.Option(
        "--um-per-px",
        help="Pixel size on the sample (µm; default: the setup profile's, else"
        f" {DEFAULT_UM_PER_PX:g}).",
        callback=_check_um_per_px,
    ),
]
OxideNmOpt = Annotated[
    float,
    typer.Option("--oxide-nm", help="SiO2 thickness of the chips (nm).", callback=_check_oxide_nm),
]
OptionalOxideNmOpt = Annotated[
    float | None,
    typer.Option(
        "--oxide-nm",
        help="SiO2 thickness of the chips (nm; default: the setup profile's, else"
        f" {DEFAULT_OXIDE_NM:g}).",
        callback=_check_oxide_nm,
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="For detectors with a model: cpu, cuda, cuda:N or auto.")
]
DbOpt = Annotated[str | None, typer.Option("--db", help=DB_HELP, show_default=False)]


def deprecated_alias(value: float | int | None, old: str, new: str) -> None:
    """Warn that ``old`` is a deprecated spelling of ``new`` when it was given."""
    if value is not None:
        typer.secho(f"warning: {old} is deprecated; use {new}", fg=typer.colors.YELLOW, err=True)


def setting(explicit: T | None, from_profile: T | None, default: D) -> T | D:
    """The one resolution rule of the CLI: an explicit option, else the setup profile's value,
    else the default (:data:`DEFAULT_UM_PER_PX`, :data:`DEFAULT_OXIDE_NM`, ...)."""
    if explicit is not None:
        return explicit
    if from_profile is not None:
        return from_profile
    return default


def resolve_context(
    *,
    um_per_px: float | None,
    oxide_nm: float | None,
    materials: str | Sequence[str] | None,
    profile: SetupProfile | None = None,
) -> ImagingContext:
    """The imaging context of a command by :func:`setting`: pixel size, oxide and materials.

    Used by ``detect``, ``batch-detect``, ``annotate export``, ``evaluate``, ``scan``, ``serve``
    and ``calibrate``, so that ``--setup FILE`` means the same everywhere: what the command line
    does not say comes from the profile (its materials are those it has colour tables for),
    and only then from the defaults of this module.

    Raises
    ------
    flakefinder.errors.ProfileError
        An explicit ``--materials`` the profile has no table for, or an ``--oxide-nm`` it was
        not calibrated on.
    UnknownMaterialError
        An unknown material name.
    """
    from flakefinder.cli import parse_materials
    from flakefinder.domain import ImagingContext

    mats = parse_materials(
        setting(materials, None if profile is None else profile.material_names, DEFAULT_MATERIALS)
    )
    ctx = ImagingContext(
        um_per_px=setting(um_per_px, None if profile is None else profile.um_per_px,
                          DEFAULT_UM_PER_PX),  # fmt: skip
        oxide_thickness_nm=setting(oxide_nm, None if profile is None else profile.oxide_nm,
                                   DEFAULT_OXIDE_NM),  # fmt: skip
        materials=mats,
        profile_id=None if profile is None else profile.profile_id,
    )
    if profile is not None:
        from flakefinder.calibration.profile import check_compatible

        check_compatible(profile, materials=mats, oxide_nm=ctx.oxide_thickness_nm)
    return ctx


def note_assumed_defaults(
    ctx: ImagingContext, *, um_per_px: float | None, oxide_nm: float | None, who: str
) -> None:
    """Say (stderr) which of ``--oxide-nm`` / ``--um-per-px`` ``who`` took from the defaults.

    For what calibrates on real images without a profile (``calibrate``, ``--setup auto``,
    the few-shot protocol): a wrong guess there goes into every colour table and area.
    """
    assumed = [
        text
        for value, text in (
            (oxide_nm, f"--oxide-nm {ctx.oxide_thickness_nm:g}"),
            (um_per_px, f"--um-per-px {ctx.um_per_px:g}"),
        )
        if value is None
    ]
    if assumed:
        typer.secho(
            f"{who} assumes the defaults {' and '.join(assumed)}; give your chip's and"
            " camera's values if they differ",
            fg=typer.colors.YELLOW,
            err=True,
        )


def load_setup_option(setup: LoadedSetup | str | Path | None) -> LoadedSetup | None:
    """The profile named by ``--setup FILE`` (with its flat-field); ``auto`` is refused here.

    Commands that read a batch of images resolve ``auto`` first
    (:func:`flakefinder.cli.setup_option.resolve_setup`).
    """
    if setup is None or not isinstance(setup, str | Path):
        return setup
    if str(setup).strip().lower() == "auto":
        raise typer.BadParameter(
            "'auto' (self-calibration) needs the images first; this command takes a profile file",
            param_hint="--setup",
        )
    from flakefinder.detect.setup_io import load_setup

    return load_setup(Path(setup))


def print_options_help_if_asked(options: list[str] | None) -> None:
    """For ``--detector-option help``: print every detector's options and exit 0."""
    from flakefinder.detect.registry import options_help

    if options and any(o.strip().lower() == "help" for o in options):
        typer.echo(options_help())
        raise typer.Exit(0)


def build_detector(
    name: str,
    *,
    model: Path | None = None,
    setup: LoadedSetup | str | Path | None = None,
    options: list[str] | None = None,
    score: float | None = None,
    device: str | None = None,
) -> Detector:
    """The detector named by the shared options (``--detector-option help`` lists options).

    Raises
    ------
    typer.Exit
        After printing every detector's options, for ``--detector-option help``.
    flakefinder.errors.FlakefinderError
        Unknown detector or option, a model folder or setup it cannot use, a bad profile file.
    """
    from flakefinder.detect.registry import create_detector, options_help, parse_option_pairs

    if options and any(o.strip().lower() == "help" for o in options):
        typer.echo(options_help())
        raise typer.Exit(0)
    return create_detector(
        name,
        model=model,
        setup=load_setup_option(setup),
        options=parse_option_pairs(options),
        min_score=score,
        device=device,
    )


def check_detector(
    name: str,
    *,
    model: Path | None = None,
    setup: LoadedSetup | str | Path | None = None,
    options: list[str] | None = None,
) -> None:
    """Validate the shared detector options without building the detector (no model load)."""
    from flakefinder.detect.registry import check_detector as check
    from flakefinder.detect.registry import options_help, parse_option_pairs

    if options and any(o.strip().lower() == "help" for o in options):
        typer.echo(options_help())
        raise typer.Exit(0)
    check(name, model=model, setup=load_setup_option(setup), options=parse_option_pairs(options))
    if model is not None and not model.is_dir():
        from flakefinder.errors import ModelError

        raise ModelError(f"model folder {model} does not exist")


def database_url(db: str | None) -> str:
    """``--db``, else ``$FLAKEFINDER_DATABASE_URL``, else ``sqlite:///flakefinder.db``."""
    from flakefinder.db import DatabaseSettings

    return DatabaseSettings.from_env(db).url


def open_database(
    db: str | None, *, must_exist: bool = False, read_only: bool = False
) -> Database:
    """The database of ``--db`` (see :func:`database_url`).

    With ``must_exist``, a SQLite URL naming a file that does not exist is refused (a mistyped
    path would otherwise silently create an empty database). ``read_only`` opens it for
    reading only (commands that only read: they work on a read-only file system too).
    """
    from flakefinder.db import Database, DatabaseSettings
    from flakefinder.errors import DatabaseError

    settings = DatabaseSettings.from_env(db)
    path = sqlite_file(settings.url)
    if must_exist and path is not None and not path.is_file():
        raise DatabaseError(
            f"no database file {path} (from {settings.masked_url}); check the path, or create"
            " one with `flakefinder db upgrade --db URL` or a scan"
        )
    return Database(settings.url, echo=settings.echo, read_only=read_only)


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL; None for other databases and in-memory SQLite."""
    head, sep, rest = url.partition(":///")
    if not sep or not head.startswith("sqlite"):
        return None
    path = rest.split("?", 1)[0]
    if path in ("", ":memory:") or path.startswith("file::memory:"):
        return None
    return Path(path)


DEFAULTS = {
    "detector": DEFAULT_DETECTOR,
    "materials": DEFAULT_MATERIALS,
    "score": DEFAULT_SCORE,
    "um_per_px": DEFAULT_UM_PER_PX,
    "oxide_nm": DEFAULT_OXIDE_NM,
    "frame_px": DEFAULT_FRAME_PX,
}
"""The shared defaults by concept (tests check that every command uses them)."""


def scan_detector(name: str | None, *, simulated: bool) -> str:
    """``--detector`` of scan-like commands: the given name, else contrast on a simulated chip
    and the default (terrace) on a real microscope."""
    if name is not None:
        return name
    return SIMULATED_DETECTOR if simulated else DEFAULT_DETECTOR
