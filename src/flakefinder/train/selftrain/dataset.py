"""The self-training dataset: labelled pictures cut into tiles at one pixel size, as COCO.

Every picture is exposed as the detector exposes it (:func:`~flakefinder.detect.maskrcnn.
auto_expose`), resampled to ``tile_um_per_px`` and cut into ``tile_px`` tiles
(:mod:`flakefinder.detect.tiling`, the same cut as tiled inference). A tile is kept when it
holds a label; labels become ``flake`` annotations (COCO RLE), the unsure detections
``iscrowd`` ones. ``manifest.json`` records what went in (sources, trained and held-out file
names, counts, the build's CPU time) and the dataset's sha256; its ``key`` decides whether a
later chunk may reuse the folder.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.detect.tiling import cut_tile, resample, rescale_crop, scale_for, tile_windows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from flakefinder.train.selftrain.pseudo import Crop, Labelled

FORMAT = 1
JPEG_QUALITY = 95


@dataclass
class _Counts:
    pictures: int = 0
    tiles: int = 0
    labels: int = 0
    unsure: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"pictures": self.pictures, "tiles": self.tiles, "labels": self.labels,
                "unsure": self.unsure}  # fmt: skip


@dataclass
class _Writer:
    """Accumulates tiles and annotations of one dataset folder."""

    root: Path
    tile_px: int
    overlap_px: int
    tile_um_per_px: float
    min_px: int
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, _Counts] = field(default_factory=dict)

    def add(self, item: Labelled) -> None:
        from flakefinder.detect.maskrcnn import SUBSTRATE_GREY, auto_expose

        c = self.counts.setdefault(item.source_set, _Counts())
        c.pictures += 1
        scale = scale_for(item.um_per_px, self.tile_um_per_px)
        big = resample(auto_expose(item.image, SUBSTRATE_GREY), scale)
        bh, bw = big.shape[:2]
        sure = _rescaled(item.labels, scale, (bh, bw))
        unsure = _rescaled(item.unsure, scale, (bh, bw))
        for x, y in tile_windows(bh, bw, self.tile_px, self.overlap_px):
            kept = _in_window(sure, x, y, self.tile_px, self.min_px)
            if not kept:
                continue
            self._tile(item, cut_tile(big, x, y, self.tile_px), (x, y), kept,
                       _in_window(unsure, x, y, self.tile_px, self.min_px), c)  # fmt: skip

    def _tile(self, item: Labelled, tile: np.ndarray, at: tuple[int, int],
              sure: list[np.ndarray], unsure: list[np.ndarray], c: _Counts) -> None:  # fmt: skip
        from flakefinder.artifacts import write_atomic
        from flakefinder.coco import encode_rle
        from flakefinder.synth.realistic_camera import jpeg_bytes

        image_id = len(self.images) + 1
        name = f"{item.key}-{at[0]}-{at[1]}.jpg"
        write_atomic(self.root / "images" / name, jpeg_bytes(tile, JPEG_QUALITY))
        self.images.append({
            "id": image_id, "file_name": name, "width": self.tile_px, "height": self.tile_px,
            "source": item.source, "source_set": item.source_set,
            "source_file": item.source_file, "window_px": list(at),
            "um_per_px": self.tile_um_per_px,
        })  # fmt: skip
        for crowd, masks in ((0, sure), (1, unsure)):
            for m in masks:
                ys = np.flatnonzero(m.any(axis=1))
                xs = np.flatnonzero(m.any(axis=0))
                bbox = [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
                self.annotations.append({
                    "id": len(self.annotations) + 1, "image_id": image_id, "category_id": 1,
                    "segmentation": encode_rle(m), "area": int(m.sum()), "bbox": bbox,
                    "iscrowd": crowd, "source": item.source,
                })  # fmt: skip
        c.tiles += 1
        c.labels += len(sure)
        c.unsure += len(unsure)


def _rescaled(crops: list[Crop], scale: float, limit: tuple[int, int]) -> list[Crop]:
    out: list[Crop] = []
    for x0, y0, m in crops:
        got = rescale_crop(m, x0, y0, scale, limit)
        if got is not None:
            out.append(got)
    return out


def _in_window(crops: list[Crop], x: int, y: int, tile: int, min_px: int) -> list[np.ndarray]:
    """Full tile masks of the crops' parts inside the window at (x, y) (>= ``min_px``)."""
    out: list[np.ndarray] = []
    for x0, y0, m in crops:
        ax, ay = max(x, x0), max(y, y0)
        bx, by = min(x + tile, x0 + m.shape[1]), min(y + tile, y0 + m.shape[0])
        if ax >= bx or ay >= by:
            continue
        part = m[ay - y0 : by - y0, ax - x0 : bx - x0]
        if int(part.sum()) < min_px:
            continue
        full = np.zeros((tile, tile), dtype=bool)
        full[ay - y : by - y, ax - x : bx - x] = part
        out.append(full)
    return out


def build_dataset(
    folder: Path,
    items: Iterable[Labelled],
    *,
    key: dict[str, Any],
    info: dict[str, Any],
    tile_px: int,
    overlap_px: int,
    tile_um_per_px: float,
    min_px: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Write the dataset into ``folder`` (atomically: a sibling folder, then renamed).

    ``key`` is what decides reuse (:func:`reusable`); ``info`` more facts for the manifest.
    Returns the manifest.
    """
    from flakefinder.artifacts import dataset_hash, write_json_atomic
    from flakefinder.errors import DatasetError

    t0 = time.process_time()
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    w = _Writer(tmp, tile_px, overlap_px, tile_um_per_px, min_px)
    try:
        for item in items:
            w.add(item)
            c = w.counts[item.source_set]
            if item.source != "synth" or c.pictures % 50 == 0:
                say(f"  {item.source_set} {item.source_file}: {c.tiles} tiles, {c.labels} labels "
                    "so far")  # fmt: skip
        if not w.annotations:
            raise DatasetError("self-training found nothing to learn: no labelled tile")
        coco = {
            "info": {"description": "flakefinder self-training tiles", "version": str(FORMAT)},
            "categories": [{"id": 1, "name": "flake", "supercategory": "flake"}],
            "images": w.images, "annotations": w.annotations,
        }  # fmt: skip
        write_json_atomic(tmp / "annotations.json", coco)
        manifest = {
            "format": FORMAT, "key": key, **info,
            "counts": {k: v.as_dict() for k, v in w.counts.items()},
            "tiles": len(w.images),
            "labels": sum(1 for a in w.annotations if not a["iscrowd"]),
            "build_cpu_s": round(time.process_time() - t0, 1),
            "sha256": dataset_hash([tmp / "annotations.json", tmp / "images"]),
        }  # fmt: skip
        write_json_atomic(tmp / "manifest.json", manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a built dataset folder, or None when there is none (or it is unusable)."""
    from flakefinder.artifacts import load_json_file
    from flakefinder.errors import FlakefinderError

    path = folder / "manifest.json"
    if not (path.is_file() and (folder / "annotations.json").is_file()):
        return None
    try:
        data = load_json_file(path)
    except FlakefinderError:
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def reusable(manifest: dict[str, Any] | None, key: dict[str, Any]) -> bool:
    """Whether a built dataset was made from the same sources and settings as ``key`` asks."""
    from flakefinder.artifacts import canonical_json

    return manifest is not None and canonical_json(manifest.get("key")) == canonical_json(key)
