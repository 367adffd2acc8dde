"""Training progress: a per-iteration bar with loss and ETA, or text lines when not a terminal.

On a terminal, a rich progress bar over the steps of this run shows the epoch, the running
loss, the elapsed time and the time remaining. Elsewhere (a pipe, a log file, a test), one line
is logged after the first step and then at most every ``every_s`` seconds, with the same
numbers, so that a long training never looks frozen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def format_duration(seconds: float) -> str:
    """``'42 s'``, ``'3 min 5 s'`` or ``'2 h 07 min'``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class TrainProgress:
    """Reports training steps; use as a context manager around the training loop.

    Parameters
    ----------
    total_steps
        Steps of the whole schedule.
    done_steps
        Steps already done before this run (resume).
    log
        Where text lines go (``None``: nowhere).
    bar
        Draw a rich progress bar (only when the console is a terminal).
    every_s
        Minimum seconds between two text lines when no bar is drawn.
    clock
        Time source (seconds).
    """

    def __init__(
        self,
        total_steps: int,
        done_steps: int,
        *,
        log: Callable[[str], None] | None,
        bar: bool,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done = int(total_steps), int(done_steps)
        self.log, self.every_s, self.clock = log, float(every_s), clock
        self._start_done = self.done
        self._t0 = clock()
        self._last_line: float | None = None
        self._progress: Any = None
        self._task: Any = None
        if bar:
            from rich.console import Console

            console = Console(stderr=True)
            if console.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"),
                    TimeElapsedColumn(),
                    TextColumn("ETA"),
                    TimeRemainingColumn(),
                    console=console,
                    transient=True,
                )

    def __enter__(self) -> TrainProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(
                "training", total=self.total, completed=self.done, loss="-"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def eta_s(self) -> float | None:
        """Seconds left for the whole schedule at this run's average speed so far."""
        n = self.done - self._start_done
        if n <= 0:
            return None
        return (self.clock() - self._t0) / n * (self.total - self.done)

    def step(self, *, label: str, loss: float) -> None:
        """One optimizer step finished; ``loss`` is the running mean loss of the epoch."""
        self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=label, loss=f"{loss:.4f}")
            return
        if self.log is None:
            return
        now = self.clock()
        if self._last_line is not None and now - self._last_line < self.every_s:
            return
        self._last_line = now
        n = self.done - self._start_done
        per = (now - self._t0) / n
        eta = self.eta_s()
        self.log(
            f"step {self.done}/{self.total} ({label}): loss {loss:.4f}, {per:.2f} s/step, "
            f"ETA {format_duration(eta or 0.0)}"
        )
