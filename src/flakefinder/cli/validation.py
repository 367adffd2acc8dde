"""Typer option callbacks that check numbers at the command line's edge.

Each factory returns a callback for ``typer.Option(..., callback=...)``: a non-finite or
out-of-range value becomes a usage error (exit code 2) naming the option and the allowed
range, before any work starts. The ranges come from :mod:`flakefinder.bounds`, the same table
the server's schemas use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import typer

from flakefinder import bounds


def _name(param: typer.CallbackParam) -> str:
    opts = list(getattr(param, "opts", []) or [])
    return opts[0] if opts else f"--{(param.name or 'value').replace('_', '-')}"


def finite() -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """A callback accepting any finite number (or ``None`` for an unset optional option)."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise typer.BadParameter(
                f"must be a finite number, got {value}", param_hint=_name(param)
            )
        return value

    return check


def positive() -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """A callback accepting finite numbers > 0 (or ``None``)."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise typer.BadParameter(
                f"must be a finite number > 0, got {value}", param_hint=_name(param)
            )
        return value

    return check


def in_range(
    lo: float, hi: float, unit: str = ""
) -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """A callback accepting finite numbers in ``[lo, hi]`` (or ``None``)."""
    allowed = bounds.Range(lo, hi, unit)

    def check(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
        if value is None:
            return None
        try:
            allowed.check(value, "value")
        except ValueError:
            raise typer.BadParameter(
                f"must be a finite number in {allowed.describe()}, got {value}",
                param_hint=_name(param),
            ) from None
        return value

    return check


def um_per_px() -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """Pixel size on the sample: :data:`flakefinder.bounds.UM_PER_PX`."""
    return in_range(bounds.UM_PER_PX.lo, bounds.UM_PER_PX.hi, bounds.UM_PER_PX.unit)


def oxide_nm() -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """SiO2 thickness: :data:`flakefinder.bounds.OXIDE_NM`."""
    return in_range(bounds.OXIDE_NM.lo, bounds.OXIDE_NM.hi, bounds.OXIDE_NM.unit)


def chip_size_mm() -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """A simulated chip's side: :data:`flakefinder.bounds.CHIP_SIZE_MM`."""
    return in_range(bounds.CHIP_SIZE_MM.lo, bounds.CHIP_SIZE_MM.hi, bounds.CHIP_SIZE_MM.unit)


def fraction() -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """A number in [0, 1] (scores, overlaps)."""
    return in_range(0.0, 1.0)


def output_folder() -> Callable[[typer.Context, typer.CallbackParam, Path | None], Path | None]:
    """A folder to write into: it may not exist yet, but it must not be (or lie in) a file."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
        if value is None:
            return None
        problem = folder_problem(value)
        if problem:
            raise typer.BadParameter(problem, param_hint=_name(param))
        return value

    return check


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an output folder, or ``None`` if it can."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, so {path} cannot be a folder"
            if not os_access_writable(parent):
                return f"cannot create {path}: {parent} is not writable"
            break
    return None


def os_access_writable(path: Path) -> bool:
    """Whether this process may create entries in the folder ``path``."""
    import os

    return os.access(path, os.W_OK | os.X_OK)
