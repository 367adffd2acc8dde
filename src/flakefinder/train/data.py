"""COCO instance-segmentation datasets for Mask R-CNN training.

Reads flakefinder's own exports (``flakefinder.synth.export_coco``) and any user's COCO file:

* segmentations as polygons, compressed RLE or uncompressed RLE (see :mod:`flakefinder.coco`);
* category *names* are matched against the :class:`~flakefinder.domain.ClassMap`; an optional
  ``category_mapping`` renames user categories first (``{"graphene_1L": "graphene_mono"}``;
  mapping a name to ``None`` drops it). Names still unknown raise a :class:`DatasetError`
  naming them, unless ``unknown_categories="drop"`` (used for per-material transfer learning,
  where the other materials' annotations are left out);
* ``iscrowd=1`` annotations are ignored (Mask R-CNN has no crowd handling);
* annotations whose mask is empty (after decoding, or after augmentation) are dropped;
* images without any annotation are kept as negative examples (targets with zero boxes);
* missing image files raise a DatasetError listing the first few, or are skipped with a warning
  when ``skip_missing=True``.

Samples are returned in torchvision detection format: image float32 (3, S, S) in 0..1 and a target
dict with ``boxes`` (N, 4) float32 xyxy (pixel-edge convention: a mask covering columns 3..5
has x_min 3, x_max 6), ``labels`` (N,) int64, ``masks`` (N, S, S) uint8, ``image_id``.
Images are letterboxed to the square side S (aspect kept, centred, zero padded) exactly as
the detector does (:mod:`flakefinder.detect.letterbox`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.coco import decode_segmentation, load_coco
from flakefinder.domain import ClassMap
from flakefinder.errors import DatasetError
from flakefinder.train.augment import Augmenter, prepare_sample
from flakefinder.train.stats import DatasetStatistics, dataset_statistics, plot_statistics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "CocoDetectionDataset",
    "DatasetStatistics",
    "ImageRecord",
    "dataset_statistics",
    "plot_statistics",
    "resolve_dataset",
    "split_dataset",
]

MAX_LISTED = 5


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    path: Path
    width: int
    height: int
    annotations: tuple[tuple[int, Any], ...]  # (class id, segmentation)


def resolve_dataset(path: str | Path) -> tuple[Path, Path]:
    """(annotation file, image folder) of a dataset folder or of an annotation file.

    A folder must hold ``annotations.json`` (or exactly one ``*.json``); images are looked up in
    its ``images/`` subfolder when that exists, else in the folder itself.
    """
    p = Path(path)
    if p.is_dir():
        ann = p / "annotations.json"
        if not ann.is_file():
            found = sorted(p.glob("*.json"))
            if len(found) != 1:
                raise DatasetError(
                    f"{p}: expected annotations.json (or exactly one .json file), found "
                    f"{[f.name for f in found] or 'none'}"
                )
            ann = found[0]
        root = p
    elif p.is_file():
        ann, root = p, p.parent
    else:
        raise DatasetError(f"no such dataset folder or annotation file: {p}")
    return ann, (root / "images" if (root / "images").is_dir() else root)


def _image_path(image_dir: Path, annotation_dir: Path, file_name: str) -> Path:
    for base in (image_dir, annotation_dir):
        cand = base / file_name
        if cand.is_file():
            return cand
    by_name = image_dir / Path(file_name).name
    return by_name if by_name.is_file() else image_dir / file_name


def split_dataset(
    ids: Sequence[int], train_fraction: float = 0.8, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Deterministic random split into (train ids, test ids), 8:2 by default.

    Depends only on the *set* of ids and the seed (ids are sorted first). With two or more ids
    both parts are non-empty.
    """
    if not 0.0 < train_fraction <= 1.0:
        raise DatasetError(f"train_fraction must be in (0, 1], got {train_fraction}")
    ordered = sorted(int(i) for i in ids)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_train = int(round(train_fraction * len(ordered)))
    if len(ordered) >= 2 and train_fraction < 1.0:
        n_train = min(max(n_train, 1), len(ordered) - 1)
    shuffled = [ordered[i] for i in perm]
    return sorted(shuffled[:n_train]), sorted(shuffled[n_train:])


def _obviously_empty(seg: Any) -> bool:
    """An empty polygon list, only degenerate polygons, or an RLE of zero area."""
    if isinstance(seg, list):
        return not any(isinstance(p, list) and len(p) >= 6 for p in seg)
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        return not any(c for c in seg["counts"][1::2])  # odd runs are foreground
    return False


class CocoDetectionDataset:
    """Map-style dataset over a COCO file; see the module docstring for the rules.

    ``dataset[i]`` gives the un-augmented sample; ``dataset[(i, seed)]`` applies ``transform``
    (an :class:`~flakefinder.train.augment.Augmenter`) with that seed, so that a sample depends
    only on (index, seed): data loading is reproducible with any number of workers and resumes
    exactly.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path | None = None,
        class_map: ClassMap | None = None,
        *,
        transform: Augmenter | None = None,
        image_size: int = 1024,
        skip_missing: bool = False,
        category_mapping: Mapping[str, str | None] | None = None,
        unknown_categories: str = "error",
        image_ids: Sequence[int] | None = None,
        only_annotated: bool = False,
    ) -> None:
        if unknown_categories not in ("error", "drop"):
            raise DatasetError("unknown_categories must be 'error' or 'drop'")
        self.annotation_file = Path(annotation_file)
        self.coco, _ = load_coco(self.annotation_file)
        self.image_dir = Path(image_dir) if image_dir is not None else self.annotation_file.parent
        cats = {int(c["id"]): str(c["name"]) for c in self.coco["categories"]}
        self.class_map = class_map if class_map is not None else ClassMap(tuple(cats.values()))
        self.transform = transform
        self.image_size = int(image_size)
        mapping = dict(category_mapping or {})
        cat_to_class: dict[int, int | None] = {}
        unknown: list[str] = []
        for cid, name in cats.items():
            target = mapping.get(name, name)
            if target is None:
                cat_to_class[cid] = None
            elif target in self.class_map.names:
                cat_to_class[cid] = self.class_map.names.index(target) + 1
            else:
                cat_to_class[cid] = None
                unknown.append(name)
        anns_by_image: dict[int, list[tuple[int, Any]]] = {}
        n_empty = 0
        used_unknown: set[str] = set()
        for k, ann in enumerate(self.coco["annotations"]):
            try:
                iid, cid = int(ann["image_id"]), int(ann["category_id"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(
                    f"{self.annotation_file}: annotation #{k} lacks image_id/category_id"
                ) from None
            if cid not in cats:
                raise DatasetError(
                    f"{self.annotation_file}: annotation #{k} (image {iid}) has category_id "
                    f"{cid}, which is not in its 'categories' (ids {sorted(cats)})"
                )
            if ann.get("iscrowd", 0):
                continue
            cls = cat_to_class[cid]
            if cls is None:
                if cats[cid] in unknown:
                    used_unknown.add(cats[cid])
                continue
            if "segmentation" not in ann:
                raise DatasetError(f"annotation #{k} (image {iid}) has no segmentation")
            if _obviously_empty(ann["segmentation"]):
                n_empty += 1
                continue
            anns_by_image.setdefault(iid, []).append((cls, ann["segmentation"]))
        if n_empty:
            warnings.warn(
                f"{self.annotation_file}: {n_empty} annotation(s) with an empty segmentation "
                "(no polygon of 3+ points, or an empty mask) are dropped",
                stacklevel=2,
            )
        if used_unknown and unknown_categories == "error":
            raise DatasetError(
                f"{self.annotation_file}: categories {sorted(used_unknown)} are not in the class "
                f"map {list(self.class_map.names)}; rename them (`flakefinder annotate import --format coco "
                "--label-map OLD=NEW`, or category_mapping= in Python) or train only the known "
                "materials (`flakefinder train --materials ...`)"
            )
        wanted = None if image_ids is None else {int(i) for i in image_ids}
        records: list[ImageRecord] = []
        missing: list[str] = []
        for img in self.coco["images"]:
            iid = int(img["id"])
            if wanted is not None and iid not in wanted:
                continue
            anns = tuple(anns_by_image.get(iid, ()))
            if only_annotated and not anns:
                continue
            path = _image_path(self.image_dir, self.annotation_file.parent, str(img["file_name"]))
            if not path.is_file():
                missing.append(str(img["file_name"]))
                continue
            records.append(
                ImageRecord(iid, path, int(img.get("width", 0)), int(img.get("height", 0)), anns)
            )
        if missing:
            listed = ", ".join(missing[:MAX_LISTED]) + (" ..." if len(missing) > MAX_LISTED else "")
            msg = f"{len(missing)} image file(s) missing under {self.image_dir}: {listed}"
            if not skip_missing:
                raise DatasetError(
                    msg + " (leave them out with `flakefinder train --skip-missing`, or "
                    "skip_missing=True in Python)"
                )
            warnings.warn(msg + "; skipped", stacklevel=2)
        self.records: list[ImageRecord] = records

    @property
    def ids(self) -> list[int]:
        return [r.image_id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Original image (H, W, 3) uint8, masks (N, H, W) uint8 and labels (N,) int64."""
        from flakefinder.imaging import load_image

        rec = self.records[index]
        image = load_image(rec.path)
        h, w = image.shape[:2]
        if (rec.width and rec.width != w) or (rec.height and rec.height != h):
            raise DatasetError(
                f"{rec.path}: image is {w}x{h} px but the COCO file says {rec.width}x{rec.height}"
            )
        masks, labels = [], []
        for k, (cls, seg) in enumerate(rec.annotations):
            m = decode_segmentation(seg, h, w, what=f"image {rec.image_id} annotation {k}")
            if m.any():  # empty masks are dropped
                masks.append(m)
                labels.append(cls)
        mask_arr = np.stack(masks).astype(np.uint8) if masks else np.zeros((0, h, w), np.uint8)
        return image, mask_arr, np.asarray(labels, dtype=np.int64)

    def sample_arrays(
        self, index: int, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Numpy sample: image (S, S, 3) uint8, masks (N, S, S) uint8, boxes (N, 4), labels (N,)."""
        image, masks, labels = self.load_raw(index)
        aug = self.transform if seed is not None else None
        return prepare_sample(image, masks, labels, self.image_size, augmenter=aug, seed=seed)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, dict[str, Any]]:
        import torch

        index, seed = key if isinstance(key, tuple) else (key, None)
        image, masks, boxes, labels = self.sample_arrays(int(index), seed)
        img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        target = {
            "boxes": torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "masks": torch.from_numpy(masks.astype(np.uint8)),
            "image_id": int(self.records[int(index)].image_id),
        }
        return img_t, target
