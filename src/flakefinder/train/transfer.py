"""Building the network to train: fresh from a recipe, or transferred from a model folder.

Transfer learning (the paper's second step) starts from a model trained on several materials
and continues on a subset. Everything but the class-specific predictors is copied by name;
the predictors' rows (classification, box regression, mask logits) are copied for every class
the new class map shares with the source model (and for the background). Classes the source
model does not know start from fresh random rows; their names are reported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import torch

    from flakefinder.detect.maskrcnn_model import ModelConfig
    from flakefinder.train.recipe import TrainRecipe

# (state-dict key, rows per class)
PREDICTOR_KEYS: tuple[tuple[str, int], ...] = (
    ("roi_heads.box_predictor.cls_score.weight", 1),
    ("roi_heads.box_predictor.cls_score.bias", 1),
    ("roi_heads.box_predictor.bbox_pred.weight", 4),
    ("roi_heads.box_predictor.bbox_pred.bias", 4),
    ("roi_heads.mask_predictor.mask_fcn_logits.weight", 1),
    ("roi_heads.mask_predictor.mask_fcn_logits.bias", 1),
)


def map_predictor_rows(
    model: torch.nn.Module,
    source_state: Mapping[str, torch.Tensor],
    source_names: Sequence[str],
    target_names: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Copy the predictor rows of shared classes; returns (copied class names, new class names)."""
    import torch

    own = model.state_dict()
    src_row = {n: i + 1 for i, n in enumerate(source_names)}
    pairs = [(0, 0)] + [(t + 1, src_row[n]) for t, n in enumerate(target_names) if n in src_row]
    updated: dict[str, torch.Tensor] = {}
    for key, per in PREDICTOR_KEYS:
        if key not in own or key not in source_state:
            raise ModelError(f"transfer learning: predictor tensor {key} missing")
        dst, src = own[key].clone(), source_state[key]
        if tuple(src.shape[1:]) != tuple(dst.shape[1:]):
            raise ModelError(
                f"transfer learning: {key} has shape {tuple(src.shape)} in the source model, "
                f"incompatible with {tuple(dst.shape)}"
            )
        with torch.no_grad():
            for t, s in pairs:
                dst[t * per : (t + 1) * per] = src[s * per : (s + 1) * per].to(dst.dtype)
        updated[key] = dst
    model.load_state_dict(updated, strict=False)
    copied = [n for n in target_names if n in src_row]
    new = [n for n in target_names if n not in src_row]
    return copied, new


def apply_sampling(model: Any, recipe: TrainRecipe) -> None:
    """Training-time sampling sizes of the recipe (ROIs per image, RPN proposals kept)."""
    model.roi_heads.fg_bg_sampler.batch_size_per_image = int(recipe.rois_per_image)
    post = dict(model.rpn._post_nms_top_n)
    pre = dict(model.rpn._pre_nms_top_n)
    post["training"] = int(recipe.rpn_post_nms_train)
    pre["training"] = max(int(pre["training"]), post["training"])
    model.rpn._post_nms_top_n, model.rpn._pre_nms_top_n = post, pre


def build_training_model(
    recipe: TrainRecipe,
    class_names: Sequence[str],
    *,
    init_from: str | Path | None = None,
) -> tuple[Any, ModelConfig, list[str]]:
    """(model, config, messages) for training ``class_names`` with ``recipe``.

    Without ``init_from`` the network is ``build_model(config, weights=recipe.weights)``.
    With a model folder, its backbone and head sizes are kept, its weights loaded and the
    predictor rows of the shared classes mapped (see module docstring).
    """
    from flakefinder.detect.maskrcnn_model import ModelConfig, build_model, load_matching
    from flakefinder.detect.model_folder import read_model_config, read_state_dict

    names = tuple(class_names)
    if init_from is None:
        config = ModelConfig(
            class_names=names,
            backbone=recipe.backbone,
            image_size=recipe.image_size,
            class_agnostic=recipe.class_agnostic,
            materials=recipe.materials if recipe.class_agnostic else (),
            tile_um_per_px=recipe.tile_um_per_px or None,
        )
        model = build_model(config, weights=recipe.weights)
        apply_sampling(model, recipe)
        return model, config, []
    folder = Path(init_from)
    source = read_model_config(folder)
    config = dataclasses.replace(
        source,
        class_names=names,
        image_size=recipe.image_size,
        min_size=None,
        max_size=None,
        class_agnostic=recipe.class_agnostic,
        materials=recipe.materials if recipe.class_agnostic else (),
        tile_um_per_px=recipe.tile_um_per_px or None,
    )
    model = build_model(config, weights="none")
    apply_sampling(model, recipe)
    state = read_state_dict(folder)
    n, total = load_matching(model, state)
    copied, new = map_predictor_rows(model, state, source.class_names, names)
    messages = [
        f"transfer learning from {folder} ({source.backbone}): {n}/{total} tensors loaded; "
        f"head rows copied for {len(copied)} class(es): {', '.join(copied) or 'none'}"
    ]
    if new:
        messages.append(
            f"classes unknown to the source model start from re-initialised head rows: "
            f"{', '.join(new)}"
        )
    if recipe.backbone != source.backbone:
        messages.append(
            f"recipe backbone {recipe.backbone} ignored: the source model is {source.backbone}"
        )
    return model, config, messages
