"""Reading and splitting the training dataset, checked before the training writes anything."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flakefinder.errors import DatasetError
from flakefinder.train.augment import Augmenter
from flakefinder.train.data import CocoDetectionDataset, resolve_dataset, split_dataset

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from flakefinder.domain import ClassMap
    from flakefinder.train.recipe import TrainRecipe


@dataclass
class TrainData:
    """The datasets of one training run."""

    annotation_file: Path
    class_map: ClassMap
    full: CocoDetectionDataset
    train: CocoDetectionDataset
    test: CocoDetectionDataset
    test_indices: list[int]


def prepare_data(
    rec: TrainRecipe,
    dataset: str | Path,
    *,
    drop_other_classes: bool,
    skip_missing: bool,
    rank: int,
    world: int,
    say: Callable[[str], None],
) -> TrainData:
    """Read and split the dataset; an unusable one raises :class:`DatasetError` before any write.

    ``drop_other_classes``: annotations of classes outside the recipe's materials are dropped
    and only images with a kept annotation are used; otherwise they are an error.
    """
    from flakefinder.train.agnostic import training_classes

    ann, image_dir = resolve_dataset(dataset)
    class_map, mapping = training_classes(rec, ann)  # class-agnostic recipes train one "flake"
    subset = drop_other_classes or mapping is not None
    unknown = "drop" if subset else "error"
    common: dict[str, Any] = {"image_size": rec.image_size, "unknown_categories": unknown,
                              "only_annotated": subset, "category_mapping": mapping}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = CocoDetectionDataset(ann, image_dir, class_map, skip_missing=skip_missing, **common)
    for w in caught:
        say(f"warning: {w.message}")
    if not full.coco["categories"]:
        raise DatasetError(f"{ann}: the class map ('categories') is empty; nothing to learn")
    n_objects = sum(len(r.annotations) for r in full.records)
    if n_objects == 0:
        raise DatasetError(
            f"{ann}: no labelled flake of the classes {list(class_map.names)}; the dataset's "
            f"categories {[c.get('name') for c in full.coco['categories']]} match none of them"
        )
    if len(full) < 2:
        raise DatasetError(f"{ann}: need at least 2 usable images to train, found {len(full)}")
    train_ids, test_ids = split_dataset(full.ids, rec.train_fraction, rec.seed)
    aug = Augmenter() if rec.augment else None
    train_ds = CocoDetectionDataset(ann, image_dir, class_map, transform=aug, image_ids=train_ids,
                                    **common)  # fmt: skip
    test_ds = CocoDetectionDataset(ann, image_dir, class_map, image_ids=test_ids, **common)
    test_idx = list(range(len(test_ds)))
    if rec.max_test_images:
        test_idx = test_idx[: rec.max_test_images]
    return TrainData(ann, class_map, full, train_ds, test_ds, test_idx[rank::world])
