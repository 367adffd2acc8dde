"""Class-agnostic training option (``class_agnostic = true``): one 'flake' class, CPU, tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_train_helpers import make_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from flakefinder.train.agnostic import agnostic_mapping, training_classes  # noqa: E402
from flakefinder.train.recipe import RecipeError, Stage, TrainRecipe  # noqa: E402


def test_mapping_keeps_recipe_materials_only(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n_images=2)
    m = agnostic_mapping(data / "annotations.json", ("graphene",))
    assert m and set(m.values()) <= {"flake", None}
    assert all((v == "flake") == k.startswith("graphene_") for k, v in m.items())
    cmap, mapping = training_classes(
        TrainRecipe(materials=("graphene",)), data / "annotations.json"
    )
    assert mapping is None and cmap.names[0] == "graphene_mono"


def test_recipe_rejects_non_bool() -> None:
    with pytest.raises(RecipeError, match="class_agnostic"):
        TrainRecipe.from_dict({"class_agnostic": "yes"})


def test_agnostic_training_writes_a_flake_model(tmp_path: Path) -> None:
    from flakefinder.detect.model_folder import read_model_config
    from flakefinder.train.loop import train

    torch.set_num_threads(2)
    data = make_dataset(tmp_path / "data", n_images=3)
    rec = TrainRecipe(
        name="tiny-agnostic", stages=(Stage("all", "all", 0.02, 1),), iterations_per_epoch=2,
        backbone="mobilenet_v3_fpn", weights="none", image_size=128, batch_size=2,
        num_workers=0, materials=("graphene", "WTe2"), rois_per_image=32,
        rpn_post_nms_train=100, train_fraction=0.67, class_agnostic=True, augment=False,
    )  # fmt: skip
    out = train(rec, data, tmp_path / "model", device="cpu", progress=False, log=None)
    cfg = read_model_config(out)
    assert cfg.class_agnostic and cfg.class_names == ("flake",)
    assert cfg.materials == ("graphene", "WTe2")
