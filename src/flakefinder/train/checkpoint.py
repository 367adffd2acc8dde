"""Training checkpoints: where a run stands, written atomically, read back with clear errors.

A checkpoint (``checkpoint.pt``) records the position in the schedule down to the iteration
(stage, epoch within the stage, iteration within the epoch, global step), the partial sums of
an unfinished epoch, the model and optimizer state, every RNG state and the epoch history, so
that a run stopped anywhere continues exactly where it stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flakefinder.errors import ModelError

CHECKPOINT = "checkpoint.pt"
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


@dataclass
class EpochSums:
    """Running sums of an epoch in progress (loss totals over the iterations done so far)."""

    total: float = 0.0
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOSS_KEYS, 0.0))
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the checkpoint."""
        return {"total": self.total, "parts": dict(self.parts), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EpochSums:
        """Inverse of :meth:`to_dict`; ``None`` (older checkpoints) gives empty sums."""
        if not data:
            return cls()
        parts = dict.fromkeys(LOSS_KEYS, 0.0)
        parts.update({str(k): float(v) for k, v in data["parts"].items()})
        return cls(float(data["total"]), parts, float(data["seconds"]))


@dataclass
class Position:
    """Where training stands: the next stage/epoch/iteration to run and the global step."""

    stage: int = 0
    epoch: int = 0  # within the stage
    iteration: int = 0  # within the epoch
    step: int = 0  # global optimizer steps done


@dataclass
class Checkpoint:
    """A checkpoint read back from disk (the model/optimizer states are left as loaded)."""

    position: Position
    sums: EpochSums
    history: list[dict[str, Any]]
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    optimizer_stage: int
    rng: dict[str, Any]
    recipe: dict[str, Any]
    class_names: list[str]


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA) and Python RNG states."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    *,
    model: Any,
    optimizer: Any | None,
    optimizer_stage: int,
    position: Position,
    sums: EpochSums,
    history: list[dict[str, Any]],
    recipe: dict[str, Any],
    class_names: list[str],
) -> None:
    """Write the checkpoint atomically (temporary file, then rename)."""
    import torch

    payload = {
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "opt_stage": optimizer_stage,
        "next_stage": position.stage,
        "next_epoch": position.epoch,
        "next_iteration": position.iteration,
        "epoch_sums": sums.to_dict(),
        "step": position.step,
        "history": history,
        "rng": rng_state(),
        "recipe": recipe,
        "class_names": class_names,
    }
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


_REQUIRED = ("model", "next_stage", "next_epoch", "step", "history", "rng", "recipe")


def load_checkpoint(path: Path) -> Checkpoint:
    """Read ``path``; a truncated, corrupt or foreign file raises :class:`ModelError`."""
    import torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise ModelError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); delete it to start "
            "over, or train with --no-resume"
        ) from None
    missing = [k for k in _REQUIRED if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise ModelError(
            f"{path} is not a flakefinder training checkpoint (missing {missing}); delete it to "
            "start over, or train with --no-resume"
        )
    position = Position(
        int(raw["next_stage"]),
        int(raw["next_epoch"]),
        int(raw.get("next_iteration", 0)),
        int(raw["step"]),
    )
    return Checkpoint(
        position=position,
        sums=EpochSums.from_dict(raw.get("epoch_sums")),
        history=list(raw["history"]),
        model_state=raw["model"],
        optimizer_state=raw.get("optimizer"),
        optimizer_stage=int(raw.get("opt_stage", -1)),
        rng=raw["rng"],
        recipe=dict(raw["recipe"]),
        class_names=[str(n) for n in raw.get("class_names", [])],
    )
