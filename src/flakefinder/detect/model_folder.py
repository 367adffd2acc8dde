"""Self-describing Mask R-CNN model folders.

A model folder holds::

    weights.pt            state_dict (float16 or float32), or weights.safetensors
    config.json           ModelConfig + {"artifact": {weights file, dtype, sha256}}
    class_map.json        {"names": [...], "categories": [{"id": 1, "name": ...}, ...]}
    metrics.json          evaluation metrics of the training run
    model_card.md         human-readable summary: recipe, training-data hash, metrics

:func:`load_model_folder` validates everything and raises :class:`ModelError` naming the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.artifacts import (
    load_json_file,
    model_card_markdown,
    sha256_file,
    write_atomic,
    write_json_atomic,
)
from flakefinder.detect.maskrcnn_model import ModelConfig, build_model
from flakefinder.detect.state_dict import WEIGHT_FILES, read_state_dict, weights_file
from flakefinder.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch
    from torchvision.models.detection import MaskRCNN

__all__ = [
    "REQUIRED_FILES",
    "WEIGHT_FILES",
    "load_model_folder",
    "load_weights_file",
    "model_folder_version",
    "read_model_config",
    "read_state_dict",
    "save_model_folder",
]

REQUIRED_FILES = ("config.json", "class_map.json")
_PREDICTOR_KEY = "roi_heads.box_predictor.cls_score.weight"


def save_model_folder(
    directory: str | Path,
    model: torch.nn.Module,
    config: ModelConfig,
    *,
    metrics: Mapping[str, Any] | None = None,
    training_data_hash: str = "",
    recipe: Mapping[str, Any] | None = None,
    dtype: str = "float16",
) -> Path:
    """Write ``model`` as a self-describing folder (see module docstring); returns the folder."""
    import torch

    if dtype not in ("float16", "float32"):
        raise ModelError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = torch.float16 if dtype == "float16" else torch.float32
    state = {
        k: (
            v.detach().to("cpu", target) if v.is_floating_point() else v.detach().cpu()
        ).contiguous()
        for k, v in model.state_dict().items()
    }
    n_out = int(state[_PREDICTOR_KEY].shape[0]) if _PREDICTOR_KEY in state else None
    if n_out is not None and n_out != config.num_classes:
        raise ModelError(
            f"class map has {len(config.class_names)} classes but weights have {n_out - 1}"
        )
    for stale in WEIGHT_FILES:
        (folder / stale).unlink(missing_ok=True)
    weights_path = folder / "weights.pt"
    torch.save(state, weights_path)
    digest = sha256_file(weights_path)
    cfg = config.to_dict()
    cfg["artifact"] = {"weights_file": weights_path.name, "dtype": dtype, "sha256": digest}
    _write_json(folder / "config.json", cfg)
    _write_json(
        folder / "class_map.json",
        {
            "names": list(config.class_names),
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(config.class_names)],
        },
    )
    _write_json(folder / "metrics.json", dict(metrics or {}))
    n_params = sum(int(v.numel()) for v in state.values() if v.is_floating_point())
    write_atomic(
        folder / "model_card.md",
        _model_card(
            config, dict(metrics or {}), training_data_hash, recipe, dtype, digest, n_params
        ),
    )
    return folder


def _write_json(path: Path, data: Any) -> None:
    write_json_atomic(path, data, allow_nan=True, default=str)


def _model_card(
    config: ModelConfig,
    metrics: dict[str, Any],
    data_hash: str,
    recipe: Mapping[str, Any] | None,
    dtype: str,
    digest: str,
    n_params: int,
) -> str:
    facts = [
        f"classes ({len(config.class_names)}): {', '.join(config.class_names)}",
        f"input: letterboxed to {config.image_size} x {config.image_size} px (aspect kept, zero pad)",
        f"parameters: {n_params:,}; weights {dtype}, sha256 `{digest}`",
        f"training data sha256: `{data_hash or 'unknown'}`",
    ]
    return model_card_markdown(
        f"flakefinder Mask R-CNN ({config.backbone})", facts, {"Recipe": recipe, "Metrics": metrics}
    )


def read_model_config(directory: str | Path) -> ModelConfig:
    """Read and validate ``config.json`` + ``class_map.json`` of a model folder (no torch)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise ModelError(f"model folder {folder} has no {name}")
    cfg_data = _read_json(folder / "config.json")
    config = ModelConfig.from_dict(cfg_data)
    cmap = _read_json(folder / "class_map.json")
    names = cmap.get("names") if isinstance(cmap, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{folder / 'class_map.json'} has no list of class names under 'names'")
    cats = cmap.get("categories")
    if isinstance(cats, list) and [c.get("name") for c in cats if isinstance(c, dict)] != names:
        raise ModelError(
            f"{folder / 'class_map.json'}: its 'categories' ({len(cats)}) disagree with its "
            f"'names' ({len(names)}: {names})"
        )
    if tuple(names) != config.class_names:
        raise ModelError(
            f"class_map.json ({len(names)} classes: {names}) disagrees with config.json "
            f"({len(config.class_names)} classes: {list(config.class_names)})"
        )
    return config


def _read_json(path: Path) -> Any:
    return load_json_file(path, error=ModelError)


def model_folder_version(directory: str | Path) -> str:
    """Short identifier of a model folder: the first 12 hex digits of its weights' sha256."""
    folder = Path(directory)
    try:
        digest = _read_json(folder / "config.json").get("artifact", {}).get("sha256")
    except (ModelError, AttributeError):
        digest = None
    return str(digest or sha256_file(weights_file(folder)))[:12]


def load_model_folder(
    directory: str | Path, *, device: str = "cpu"
) -> tuple[MaskRCNN, ModelConfig]:
    """Rebuild the model of a folder written by :func:`save_model_folder`, in eval mode, fp32."""
    config = read_model_config(directory)
    weights = weights_file(Path(directory))
    model = load_weights_file(weights, config)
    return model.to(device).eval(), config


def load_weights_file(path: str | Path, config: ModelConfig) -> MaskRCNN:
    """Build ``config``'s network and load a bare state-dict file into it (strictly)."""
    state = read_state_dict(Path(path))
    if _PREDICTOR_KEY in state:
        n_out = int(state[_PREDICTOR_KEY].shape[0])
        if n_out != config.num_classes:
            raise ModelError(
                f"class map has {len(config.class_names)} classes but weights have {n_out - 1}"
            )
    model = build_model(config, weights="none")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape", bad))
            if keys
        )
        raise ModelError(
            f"weights in {path} do not fit a {config.backbone} Mask R-CNN with this config "
            f"({detail})"
        )
    model.load_state_dict(state, strict=True)
    return model.float().eval()
