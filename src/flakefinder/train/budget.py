"""When a training call stops: a step limit and a wall-clock budget that is never overrun.

Before each step the budget predicts what finishing that step would cost (the slowest step so
far, plus the epoch-end test loss when the step ends an epoch, plus writing the checkpoint and
the model folder, each as last measured) and refuses the step when the prediction ends past
the budget. Every call runs at least one step, so repeated short calls always make progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StepBudget:
    """Decides whether the next training step still fits this call's limits.

    Parameters
    ----------
    seconds
        Wall-clock budget of the call, counted from ``t_start`` (``None``: no limit).
    max_steps
        At most this many steps in this call (``None``: no limit).
    t_start
        Start of the call on ``clock``.
    clock
        Time source (seconds).
    """

    def __init__(
        self,
        *,
        seconds: float | None,
        max_steps: int | None,
        t_start: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds, self.max_steps = seconds, max_steps
        self.t_start, self.clock = t_start, clock
        self.steps = 0
        self.step_s = 0.0  # slowest step so far
        self.eval_s = 0.0  # last epoch-end evaluation
        self.save_s = 0.0  # last checkpoint + history write
        self.publish_s = 0.0  # last model-folder write

    def allows_step(self, *, ends_epoch: bool) -> bool:
        """True when one more step (and the epoch end it may trigger) fits the limits."""
        if self.max_steps is not None and self.steps >= self.max_steps:
            return False
        if self.seconds is None or self.steps == 0:
            return True
        need = self.step_s + self.save_s + self.publish_s + (self.eval_s if ends_epoch else 0.0)
        return self.clock() - self.t_start + need <= self.seconds

    def note_step(self, seconds: float) -> None:
        """A step took ``seconds``."""
        self.steps += 1
        self.step_s = max(self.step_s, seconds)
