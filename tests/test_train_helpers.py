"""Tiny hermetic COCO datasets for the training tests (numpy + pycocotools-free RLE)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from flakefinder.coco import decode_segmentation, encode_rle, rle_string_to_counts

MATERIALS = ("graphene", "WTe2")
CATEGORIES = [
    {"id": i + 1, "name": f"{m}_{c}"}
    for i, (m, c) in enumerate((m, c) for m in MATERIALS for c in ("mono", "few", "thick"))
]
COLOURS = {1: (150, 90, 160), 2: (110, 60, 130), 3: (70, 40, 90), 4: (170, 140, 60)}


def make_dataset(
    root: Path, n_images: int = 6, *, width: int = 128, height: int = 96, seed: int = 0
) -> Path:
    """Images with 1-2 rectangular/elliptic 'flakes'; the last image has no annotation.

    Segmentations alternate between polygons, compressed RLE and uncompressed RLE.
    Returns the dataset folder (annotations.json + images/).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n_images):
        img = np.empty((height, width, 3), np.uint8)
        img[:] = (190, 170, 200)
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        n_obj = 0 if i == n_images - 1 else 1 + i % 2
        for k in range(n_obj):
            cat = int(rng.choice([1, 2, 4]))
            w, h = int(rng.integers(28, 50)), int(rng.integers(24, 40))
            x0 = int(rng.integers(2, width - w - 2)) if k == 0 else 2
            y0 = int(rng.integers(2, height - h - 2))
            kind = (i + k) % 3
            if kind == 0:
                poly = [x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
                seg: object = [[float(v) for v in poly]]
                mask = decode_segmentation(seg, height, width, what="test")
            else:
                cx, cy = x0 + w / 2, y0 + h / 2
                mask = ((xx + 0.5 - cx) / (w / 2)) ** 2 + ((yy + 0.5 - cy) / (h / 2)) ** 2 <= 1
                rle = encode_rle(mask)
                seg = (
                    rle
                    if kind == 1
                    else {"size": rle["size"], "counts": rle_string_to_counts(rle["counts"])}
                )
            img[mask] = COLOURS[cat]
            ys, xs = np.nonzero(mask)
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "segmentation": seg,
                "area": int(mask.sum()), "iscrowd": 0,
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                "attributes": {"material": CATEGORIES[cat - 1]["name"].split("_")[0]},
            })  # fmt: skip
        name = f"img_{i:03d}.png"
        Image.fromarray(img).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
    coco = {"images": images, "annotations": anns, "categories": CATEGORIES}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def test_rle_roundtrip_matches_pycocotools() -> None:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    m = rng.random((37, 23)) > 0.6
    ours = encode_rle(m)
    theirs = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert ours["counts"] == theirs["counts"].decode()
    back = decode_segmentation(ours, 37, 23, what="t")
    assert np.array_equal(back, m)
    assert np.array_equal(
        decode_segmentation(theirs | {"counts": theirs["counts"]}, 37, 23, what="t"), m
    )


def test_make_dataset(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    coco = json.loads((root / "annotations.json").read_text())
    assert len(coco["images"]) == 6 and len(coco["annotations"]) == 7
