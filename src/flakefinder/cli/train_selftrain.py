"""``flakefinder train --recipe cpu_selftrain``: one chunk of self-training (thin wrapper)."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.train.recipe import TrainRecipe


def selftrain_chunk(
    rec: TrainRecipe,
    recipe_arg: str,
    dataset: Path | None,
    out: Path,
    *,
    unlabelled: list[Path],
    real_data: Path | None,
    materials: list[str] | None,
    um_per_px: float | None,
    oxide_nm: float | None,
    init_from: Path | None,
    resume: bool,
    device: str,
    max_minutes: float | None,
) -> None:
    """Build (or reuse) the pseudo-labelled dataset in ``out/data`` and train one chunk."""
    from flakefinder.cli import parse_materials
    from flakefinder.cli.options import DEFAULT_OXIDE_NM, DEFAULT_UM_PER_PX
    from flakefinder.errors import DatasetError
    from flakefinder.train.selftrain.run import run_selftrain

    if dataset is not None:
        raise DatasetError(
            f"recipe {rec.name} builds its own dataset (pseudo-labelled pictures and synthetic "
            f"tiles): drop {dataset}, and give your own unlabelled pictures with --unlabelled"
        )
    assumed: list[str] = []
    if unlabelled and um_per_px is None:
        assumed.append(f"{DEFAULT_UM_PER_PX:g} um/px assumed (give --um-per-px)")
    if unlabelled and oxide_nm is None:
        assumed.append(f"{DEFAULT_OXIDE_NM:g} nm oxide assumed (give --oxide-nm)")
    for note in assumed:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    mats = list(parse_materials(materials)) if materials else ["graphene"]
    command = _continue_command(recipe_arg, out, unlabelled, real_data, materials, um_per_px,
                                oxide_nm)  # fmt: skip
    ledger = run_selftrain(
        rec, out, folders=list(unlabelled), real_root=real_data,
        um_per_px=um_per_px if um_per_px is not None else DEFAULT_UM_PER_PX,
        oxide_nm=oxide_nm if oxide_nm is not None else DEFAULT_OXIDE_NM,
        material=mats[0], assumed=tuple(assumed), init_from=init_from, resume=resume,
        device=device, max_minutes=max_minutes, command=command, log=typer.echo,
    )  # fmt: skip
    typer.echo(f"done: {out} ({ledger['cpu_hours']:.3f} CPU-hours so far; the card: "
               f"{out / 'model_card.md'})")  # fmt: skip


def _continue_command(
    recipe: str, out: Path, unlabelled: list[Path], real_data: Path | None,
    materials: list[str] | None, um_per_px: float | None, oxide_nm: float | None,
) -> str:  # fmt: skip
    """The command that continues this training by another 20-minute chunk."""
    parts = ["flakefinder", "train", "--recipe", recipe, "--out", str(out)]
    for folder in unlabelled:
        parts += ["--unlabelled", str(folder)]
    if real_data is not None:
        parts += ["--real-data", str(real_data)]
    if materials:
        parts += ["--materials", ",".join(materials)]
    if um_per_px is not None:
        parts += ["--um-per-px", f"{um_per_px:g}"]
    if oxide_nm is not None:
        parts += ["--oxide-nm", f"{oxide_nm:g}"]
    return " ".join(shlex.quote(a) for a in [*parts, "--max-minutes", "20"])
