"""Reading Mask R-CNN weights: state dicts from model folders, ``.safetensors`` or torch files.

Shared by :mod:`flakefinder.detect.model_folder` (loading model folders) and
:mod:`flakefinder.detect.maskrcnn_model` (transfer learning from a weights file); it imports
neither, so the two do not form an import cycle. torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flakefinder.errors import ModelError

if TYPE_CHECKING:
    from pathlib import Path

    import torch

WEIGHT_FILES = ("weights.safetensors", "weights.pt")


def weights_file(folder: Path) -> Path:
    """Return the weights file of a model folder (``weights.safetensors`` before ``weights.pt``).

    Raises
    ------
    ModelError
        When the folder holds neither file.
    """
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"model folder {folder} has no weights file ({' or '.join(WEIGHT_FILES)})")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a model folder, a ``.safetensors`` file or a torch file.

    A training checkpoint (``{"model": ..., "optimizer": ...}``) gives its model's state dict.

    Raises
    ------
    ModelError
        When the file is missing, unreadable, or does not hold a mapping of tensors.
    """
    import torch

    if path.is_dir():
        path = weights_file(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # training checkpoint {"model": ..., "optimizer": ...}
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    return dict(state)
