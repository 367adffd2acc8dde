"""Ctrl-C and SIGTERM for the long commands (scan, revisit): both stop the run cleanly so that
``--resume`` continues it."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that a run stops as cleanly as on Ctrl-C."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
    thread; the previous handler comes back afterwards. Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped(what: str, exc: KeyboardInterrupt) -> NoReturn:
    """Say that ``what`` stopped and how to continue; exit 143 (SIGTERM) or 130 (Ctrl-C)."""
    why = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    typer.secho(
        f"{what} {why}; continue with the same command and --resume",
        fg=typer.colors.YELLOW,
        err=True,
    )
    raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
