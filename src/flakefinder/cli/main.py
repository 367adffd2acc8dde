"""The ``flakefinder`` command. Each sub-command lives in its own module with ``register(app)``."""

from __future__ import annotations

import errno
import importlib

import typer

# Modules under flakefinder.cli that add commands; each defines register(app: typer.Typer).
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "scan",
    "revisit",
    "flakes",
    "synth",
    "detect",
    "train",
    "evaluate",
    "serve",
    "batch",
    "annotate",
    "db",
    "calibrate",
)


def create_app() -> typer.Typer:
    app = typer.Typer(
        name="flakefinder",
        help="Find exfoliated 2D crystals on SiO2/Si chips: simulate, scan, detect, store, browse.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"flakefinder.cli.{name}").register(app)
    return app


def main() -> None:
    from flakefinder.errors import FlakefinderError

    app = create_app()
    try:
        app()
    except FlakefinderError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        typer.secho(f"error: no space left on the disk{where}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
