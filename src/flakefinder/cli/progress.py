"""The progress bar of commands that work through many images (``detect``, ``batch-detect``).

A rich bar on stderr, so that stdout keeps only results; drawn only when stderr is a terminal
(a log file or a pipe gets nothing) and not with ``--no-progress``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

ProgressOpt = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (the bar is drawn only then)."""
    return sys.stderr.isatty()


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool) -> Iterator[Callable[[], None]]:
    """A bar over ``total`` items; the block gets a function to call once per item done."""
    if not enabled or total <= 0 or not stderr_is_terminal():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True, force_terminal=True)
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
