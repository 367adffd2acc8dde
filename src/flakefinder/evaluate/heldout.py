"""Held-out evaluation: score a trained model only on images it was not trained on.

``flakefinder train`` writes ``split.json`` into the model folder: the sha256 of the COCO
annotation file it trained on and the file names of its training and test images. When
``flakefinder evaluate DATASET --model FOLDER`` is given the same annotation file (same
sha256), the training images are left out, so the score is a held-out one; another dataset
is scored whole. Model folders without ``split.json`` (the shipped model, older runs) change
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.artifacts import sha256_file, write_json_atomic
from flakefinder.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SPLIT_FILE = "split.json"

__all__ = ["SPLIT_FILE", "HeldOut", "TrainingSplit", "held_out", "read_split", "write_split"]


@dataclass(frozen=True)
class TrainingSplit:
    """Which images of which annotation file a model was trained and tested on."""

    annotations_sha256: str
    train_images: frozenset[str]
    test_images: frozenset[str]


def write_split(
    folder: str | Path,
    annotation_file: str | Path,
    train_images: Iterable[str],
    test_images: Iterable[str],
) -> Path:
    """Write ``folder/split.json`` (atomically); returns its path."""
    path = Path(folder) / SPLIT_FILE
    write_json_atomic(
        path,
        {
            "annotations_sha256": sha256_file(Path(annotation_file)),
            "annotation_file": Path(annotation_file).name,
            "train_images": sorted(set(train_images)),
            "test_images": sorted(set(test_images)),
        },
    )
    return path


def read_split(model_folder: str | Path) -> TrainingSplit | None:
    """The split recorded in a model folder; None when it has none.

    Raises
    ------
    ModelError
        A ``split.json`` that is not the file :func:`write_split` writes.
    """
    path = Path(model_folder) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        split = TrainingSplit(
            str(data["annotations_sha256"]),
            frozenset(str(n) for n in data["train_images"]),
            frozenset(str(n) for n in data["test_images"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a readable training split ({exc})") from None
    return split


@dataclass(frozen=True)
class HeldOut:
    """A ground truth without the model's training images."""

    gt: dict[str, Any]
    n_training: int  # images of the dataset the model was trained on (left out)
    n_scored: int


def held_out(
    gt: Mapping[str, Any], annotation_file: str | Path, split: TrainingSplit
) -> HeldOut | None:
    """``gt`` without the images ``split`` trained on, when ``annotation_file`` is the one it
    was made from (same sha256); None for another dataset."""
    if sha256_file(Path(annotation_file)) != split.annotations_sha256:
        return None
    keep = [im for im in gt["images"] if str(im.get("file_name")) not in split.train_images]
    ids = {im["id"] for im in keep}
    out = dict(gt)
    out["images"] = keep
    out["annotations"] = [a for a in gt["annotations"] if a["image_id"] in ids]
    return HeldOut(out, len(gt["images"]) - len(keep), len(keep))
