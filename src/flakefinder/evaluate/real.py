"""Scoring detections on real micrographs with outlined flakes (class-agnostic, numpy + cv2).

Ground truth comes as instance-mask PNGs (``DIR/<image stem>.png``, pixel = instance id,
0 = background, no layer numbers) or as a COCO file (polygons or RLE; the layer number from an
``n_layers`` attribute or a category name such as ``graphene_2`` / ``2L``).

A detection counts when it reports 1..``max_layers`` layers (thin flakes: what the outlines
mark); it is correct when matched one-to-one (greedy, highest confidence first) to an outlined
flake with mask IoU >= ``iou_threshold``, whatever its material or layer number
(class-agnostic). Recall = matched flakes / flakes, precision = correct / counted detections.
Where the truth carries layer numbers, matched pairs fill a layer confusion table. Image level
(the paper's definition): an image is TP when it holds a correct detection, FP when it has
detections and none is correct, FN when it holds flakes and none is found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.artifacts import load_json_file
from flakefinder.errors import DatasetError
from flakefinder.evaluate.matching import match_masks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flakefinder.domain import Detection


@dataclass(frozen=True, eq=False)
class TruthImage:
    """One image's outlined flakes.

    Attributes
    ----------
    path : Path
        The image file.
    masks : tuple of numpy.ndarray
        (H, W) bool mask per flake.
    layers : tuple of int or None
        Layer number per flake when the labels give one.
    """

    path: Path
    masks: tuple[np.ndarray, ...]
    layers: tuple[int | None, ...]


def instance_masks(label_image: np.ndarray) -> list[np.ndarray]:
    """Split an instance-id image (0 = background) into one bool mask per id, in id order."""
    ids = np.unique(label_image)
    return [label_image == i for i in ids if i != 0]


def load_mask_truth(images: Sequence[Path], masks_dir: Path) -> list[TruthImage]:
    """Ground truth from ``masks_dir/<stem>.png`` per image (pixel = instance id).

    Raises
    ------
    DatasetError
        When a mask file is missing, unreadable, not single-channel, or of another size than
        its image.
    """
    import cv2

    from flakefinder.imaging import load_image

    if not masks_dir.is_dir():
        raise DatasetError(f"mask folder not found: {masks_dir}")
    out: list[TruthImage] = []
    for img_path in images:
        mp = masks_dir / f"{img_path.stem}.png"
        if not mp.is_file():
            raise DatasetError(
                f"no instance mask {mp.name} in {masks_dir} for image {img_path.name}"
            )
        lab = cv2.imread(str(mp), cv2.IMREAD_UNCHANGED)
        if lab is None:
            raise DatasetError(f"instance mask {mp} is not a readable PNG")
        if lab.ndim == 3:
            if not (np.all(lab[..., 0] == lab[..., 1]) and np.all(lab[..., 1] == lab[..., 2])):
                raise DatasetError(f"instance mask {mp} must be single-channel (pixel = id)")
            lab = lab[..., 0]
        h, w = load_image(img_path).shape[:2]
        if lab.shape != (h, w):
            raise DatasetError(
                f"instance mask {mp.name} is {lab.shape[1]} x {lab.shape[0]} px but its image is "
                f"{w} x {h} px"
            )
        masks = instance_masks(lab)
        out.append(TruthImage(img_path, tuple(masks), (None,) * len(masks)))
    return out


_LAYER_RE = re.compile(r"(?:^|[_\s-])(\d{1,3})\s*(?:l|layers?)?$", re.IGNORECASE)


def layer_from_label(name: str) -> int | None:
    """Layer number in a label such as ``2``, ``2L``, ``graphene_3`` (None when absent)."""
    m = _LAYER_RE.search(name.strip())
    return int(m.group(1)) if m else None


def load_coco_truth(images: Sequence[Path], coco_file: Path) -> list[TruthImage]:
    """Ground truth for ``images`` from a COCO file (images matched by file name).

    Raises
    ------
    DatasetError
        For an unreadable file or an image the file does not describe.
    """
    from flakefinder.coco import decode_segmentation

    try:
        data = load_json_file(coco_file, error=DatasetError)
        by_name = {Path(str(im["file_name"])).name: im for im in data["images"]}
        cats = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
        anns = list(data["annotations"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"cannot read COCO ground truth {coco_file}: {exc}") from None
    out: list[TruthImage] = []
    for p in images:
        entry = by_name.get(p.name)
        if entry is None:
            raise DatasetError(f"{coco_file.name} has no entry for image {p.name}")
        h, w = int(entry["height"]), int(entry["width"])
        masks: list[np.ndarray] = []
        layers: list[int | None] = []
        for a in anns:
            if a.get("image_id") != entry["id"]:
                continue
            masks.append(decode_segmentation(a["segmentation"], h, w).astype(bool))
            n = a.get("n_layers", (a.get("attributes") or {}).get("n_layers"))
            if n is None:
                n = layer_from_label(cats.get(int(a.get("category_id", 0)), ""))
            layers.append(None if n is None else int(n))
        out.append(TruthImage(p, tuple(masks), tuple(layers)))
    return out


@dataclass
class RealScore:
    """Class-agnostic counts over a set of images (see the module docstring)."""

    n_images: int = 0
    n_truth: int = 0
    n_detections: int = 0
    n_correct: int = 0
    n_found: int = 0
    image_tp: int = 0
    image_fp: int = 0
    image_fn: int = 0
    layer_pairs: dict[str, int] = field(default_factory=dict)  # "gt->pred": count

    @property
    def recall(self) -> float:
        """Outlined flakes found / outlined flakes (NaN without flakes)."""
        return self.n_found / self.n_truth if self.n_truth else math.nan

    @property
    def precision(self) -> float:
        """Correct / counted detections (NaN without detections)."""
        return self.n_correct / self.n_detections if self.n_detections else math.nan

    @property
    def image_precision(self) -> float:
        """Paper's image-level precision."""
        d = self.image_tp + self.image_fp
        return self.image_tp / d if d else math.nan

    @property
    def image_recall(self) -> float:
        """Paper's image-level recall."""
        d = self.image_tp + self.image_fn
        return self.image_tp / d if d else math.nan

    def add(self, truth: TruthImage, dets: Sequence[Detection], **kw: Any) -> None:
        """Score one image's detections against its truth and add the counts."""
        one = score_image(truth, dets, **kw)
        for name in ("n_images", "n_truth", "n_detections", "n_correct", "n_found"):
            setattr(self, name, getattr(self, name) + getattr(one, name))
        self.image_tp += one.image_tp
        self.image_fp += one.image_fp
        self.image_fn += one.image_fn
        for k, v in one.layer_pairs.items():
            self.layer_pairs[k] = self.layer_pairs.get(k, 0) + v

    def to_json(self) -> dict[str, Any]:
        """Counts and rates (NaN as null)."""

        def f(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 4)

        return {
            "images": self.n_images,
            "flakes": self.n_truth,
            "detections": self.n_detections,
            "correct": self.n_correct,
            "found": self.n_found,
            "recall": f(self.recall),
            "precision": f(self.precision),
            "image_precision": f(self.image_precision),
            "image_recall": f(self.image_recall),
            "layer_confusion": dict(sorted(self.layer_pairs.items())),
        }


def counted(dets: Sequence[Detection], max_layers: int) -> list[Detection]:
    """Detections reported as 1..max_layers layers."""
    return [d for d in dets if d.layer_count is not None and 1 <= d.layer_count <= max_layers]


def score_image(
    truth: TruthImage,
    dets: Sequence[Detection],
    *,
    iou_threshold: float = 0.5,
    max_layers: int = 4,
) -> RealScore:
    """Counts of one image (masks from ``Detection.mask``, else its polygon)."""
    from flakefinder.evaluate.cocodata import detection_mask

    use = counted(dets, max_layers)
    if truth.masks:
        h, w = truth.masks[0].shape
    else:
        from flakefinder.imaging import load_image

        h, w = load_image(truth.path).shape[:2]
    pm = [detection_mask(d, h, w) for d in use]
    res = match_masks(
        pm, truth.masks, scores=[d.confidence for d in use], iou_threshold=iou_threshold
    )
    s = RealScore(
        n_images=1,
        n_truth=len(truth.masks),
        n_detections=len(use),
        n_correct=res.true_positives,
        n_found=res.true_positives,
    )
    if res.true_positives:
        s.image_tp = 1
    elif use:
        s.image_fp = 1
    if truth.masks and not res.true_positives:
        s.image_fn = 1
    for p, g, _ in res.matches:
        gl = truth.layers[g]
        if gl is not None:
            key = f"{gl}->{use[p].layer_count}"
            s.layer_pairs[key] = s.layer_pairs.get(key, 0) + 1
    return s


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation, ignoring NaN (NaN when nothing is left)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize_splits(scores: Sequence[RealScore]) -> dict[str, Any]:
    """Mean +- sd of recall and precision over the splits of the few-shot protocol."""
    out: dict[str, Any] = {"splits": [s.to_json() for s in scores]}
    for name in ("recall", "precision", "image_precision", "image_recall"):
        m, sd = mean_sd([float(getattr(s, name)) for s in scores])
        out[name] = {
            "mean": None if math.isnan(m) else round(m, 4),
            "sd": None if math.isnan(sd) else round(sd, 4),
        }
    return out


def split_indices(n: int, k: int, n_splits: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """``n_splits`` random (calibration, test) splits of ``n`` items with ``k`` calibration items.

    Calibration sets are distinct while there are enough of them.

    Raises
    ------
    DatasetError
        When fewer than ``k + 1`` items are given.
    """
    from itertools import combinations

    if k < 1 or n < k + 1:
        raise DatasetError(f"--calibrate-on {k} needs at least {k + 1} images, got {n}")
    rng = np.random.default_rng(seed)
    if math.comb(n, k) <= 5000:
        combos = list(combinations(range(n), k))
        order = rng.permutation(len(combos))
        picks = [list(combos[int(i)]) for i in order[:n_splits]]
        while len(picks) < n_splits:  # fewer distinct sets than splits: repeat them
            picks.append(picks[len(picks) % len(combos)])
    else:
        picks = [sorted(int(i) for i in rng.permutation(n)[:k]) for _ in range(n_splits)]
    return [(cal, [i for i in range(n) if i not in cal]) for cal in picks]


def truth_from_mapping(
    images: Sequence[Path], masks: Mapping[str, Sequence[np.ndarray]]
) -> list[TruthImage]:
    """Ground truth from in-memory masks keyed by image stem (for tests and notebooks)."""
    return [TruthImage(p, tuple(masks[p.stem]), (None,) * len(masks[p.stem])) for p in images]
