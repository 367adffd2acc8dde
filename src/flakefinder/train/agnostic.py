"""Class-agnostic training (``class_agnostic = true`` in a recipe): one "flake" class.

Every category of the dataset whose material is one of the recipe's materials is trained as
``"flake"`` (categories of other materials are dropped; a category already called ``"flake"`` is
kept). Material and layer number then come from a setup profile at detection time
(:mod:`flakefinder.detect.segment_classify`). The paper's material x thickness heads remain the
default (``class_agnostic = false``).
"""

from __future__ import annotations

from pathlib import Path

from flakefinder.detect.maskrcnn_model import AGNOSTIC_CLASS
from flakefinder.domain import ClassMap, parse_category_name
from flakefinder.train.data import load_coco
from flakefinder.train.recipe import TrainRecipe


def agnostic_mapping(
    annotation_file: str | Path, materials: tuple[str, ...]
) -> dict[str, str | None]:
    """Dataset category name -> ``"flake"`` (a recipe material) or None (dropped).

    Parameters
    ----------
    annotation_file : str or Path
        The COCO file.
    materials : tuple of str
        Materials to keep.

    Returns
    -------
    dict
        A ``category_mapping`` for :class:`~flakefinder.train.data.CocoDetectionDataset`.
    """
    wanted = {m.lower() for m in materials}
    out: dict[str, str | None] = {}
    for cat in load_coco(annotation_file)["categories"]:
        name = str(cat["name"])
        if name == AGNOSTIC_CLASS:
            out[name] = AGNOSTIC_CLASS
            continue
        try:
            material = parse_category_name(name)[0]
        except ValueError:
            out[name] = None
            continue
        out[name] = AGNOSTIC_CLASS if material.lower() in wanted else None
    return out


def training_classes(
    recipe: TrainRecipe, annotation_file: str | Path
) -> tuple[ClassMap, dict[str, str | None] | None]:
    """The class map to train and the dataset's category mapping (None: names used as they are)."""
    if not recipe.class_agnostic:
        return ClassMap.for_materials(recipe.materials), None
    return ClassMap((AGNOSTIC_CLASS,)), agnostic_mapping(annotation_file, recipe.materials)
