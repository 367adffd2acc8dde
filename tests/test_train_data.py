"""Dataset reading, splitting, statistics and augmentation alignment (no torch model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flakefinder.domain import ClassMap
from flakefinder.errors import DatasetError
from flakefinder.train.augment import Augmenter, masks_to_boxes, prepare_sample
from flakefinder.train.data import (
    CocoDetectionDataset,
    dataset_statistics,
    plot_statistics,
    resolve_dataset,
    split_dataset,
)
from test_train_helpers import make_dataset

CMAP = ClassMap.for_materials(["graphene", "WTe2"])


def test_dataset_reads_polygons_and_rle_into_torchvision_format(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ann, images = resolve_dataset(make_dataset(tmp_path))
    ds = CocoDetectionDataset(ann, images, CMAP, image_size=64)
    assert len(ds) == 6
    coco = json.loads(ann.read_text())
    for i in range(len(ds)):
        img, tgt = ds[i]
        assert img.dtype == torch.float32 and tuple(img.shape) == (3, 64, 64)
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        n = sum(a["image_id"] == tgt["image_id"] for a in coco["annotations"])
        assert tgt["boxes"].shape == (n, 4) and tgt["masks"].shape == (n, 64, 64)
        assert tgt["masks"].dtype == torch.uint8 and tgt["labels"].dtype == torch.int64
        boxes = masks_to_boxes(tgt["masks"].numpy())
        assert np.array_equal(boxes, tgt["boxes"].numpy())
    assert ds[5][1]["boxes"].shape == (0, 4)  # the negative image is kept
    # unscaled masks reproduce the COCO bbox exactly (pixel-edge convention)
    _, masks, labels = ds.load_raw(0)
    first = [a for a in coco["annotations"] if a["image_id"] == 1]
    x, y, w, h = first[0]["bbox"]
    assert masks_to_boxes(masks)[0].tolist() == [x, y, x + w, y + h]
    assert labels[0] == first[0]["category_id"]


def test_missing_images_error_or_skip(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    for i in (1, 3):
        (root / "images" / f"img_{i:03d}.png").unlink()
    ann, images = resolve_dataset(root)
    with pytest.raises(DatasetError, match=r"2 image file\(s\) missing.*img_001.png, img_003.png"):
        CocoDetectionDataset(ann, images, CMAP)
    with pytest.warns(UserWarning, match="skipped"):
        ds = CocoDetectionDataset(ann, images, CMAP, skip_missing=True)
    assert ds.ids == [1, 3, 5, 6]


def test_unknown_categories_are_named_or_mapped(tmp_path: Path) -> None:
    ann, images = resolve_dataset(make_dataset(tmp_path))
    only_graphene = ClassMap.for_materials(["graphene"])
    with pytest.raises(DatasetError, match=r"\['WTe2_mono'\] are not in the class map"):
        CocoDetectionDataset(ann, images, only_graphene)
    ds = CocoDetectionDataset(ann, images, only_graphene, unknown_categories="drop")
    assert all(cls <= 3 for r in ds.records for cls, _ in r.annotations)
    renamed = CocoDetectionDataset(
        ann, images, only_graphene, category_mapping={"WTe2_mono": "graphene_thick"}
    )
    assert sum(len(r.annotations) for r in renamed.records) == 7


def test_empty_masks_dropped_and_bad_files(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    coco = json.loads((root / "annotations.json").read_text())
    coco["annotations"][0]["segmentation"] = [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]  # zero area
    (root / "annotations.json").write_text(json.dumps(coco))
    ann, images = resolve_dataset(root)
    ds = CocoDetectionDataset(ann, images, CMAP)
    assert len(ds.load_raw(0)[1]) == 0
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        CocoDetectionDataset(tmp_path / "bad.json", images, CMAP)


def test_split_is_deterministic_8_to_2() -> None:
    ids = list(range(1, 51))
    train, test = split_dataset(ids, 0.8, seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert sorted(train + test) == ids
    assert split_dataset(list(reversed(ids)), 0.8, seed=3) == (train, test)
    assert split_dataset(ids, 0.8, seed=4) != (train, test)
    assert split_dataset([7, 9], 0.8, seed=0)[1] != []


def test_statistics_table_and_plot(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    stats = dataset_statistics(root / "annotations.json")
    coco = json.loads((root / "annotations.json").read_text())
    n_g = sum(a["category_id"] <= 3 for a in coco["annotations"])
    assert stats.n_images == 6 and stats.n_objects == 7 and stats.n_negatives == 1
    assert stats.per_material["graphene"][1] == n_g
    assert stats.per_material["WTe2"][1] == 7 - n_g
    assert sum(o for _, o in stats.per_class.values()) == 7
    table = stats.format_table()
    assert "graphene" in table and "  graphene_mono" in table and "total" in table
    assert plot_statistics(stats, tmp_path / "s.png").stat().st_size > 1000


@pytest.mark.parametrize("backend", ["albumentations", "numpy"])
def test_augmentation_keeps_boxes_equal_to_mask_bboxes(backend: str) -> None:
    if backend == "albumentations":
        pytest.importorskip("albumentations")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    masks = np.zeros((3, 90, 120), np.uint8)
    masks[0, 10:40, 20:70] = 1
    masks[1, 50:85, 80:118] = 1
    masks[2, 0:3, 0:3] = 1  # a corner flake that rotations/shifts often remove
    aug = Augmenter(p=0.9, backend=backend)
    dropped = 0
    for seed in range(12):
        img, m, boxes, labels = prepare_sample(
            image, masks, np.array([1, 2, 3]), 64, augmenter=aug, seed=seed
        )
        assert img.shape == (64, 64, 3) and m.shape[1:] == (64, 64)
        assert len(boxes) == len(m) == len(labels)
        assert all(mk.any() for mk in m)
        for mk, box in zip(m, boxes, strict=True):
            ys, xs = np.nonzero(mk)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        dropped += 3 - len(m)
        again = prepare_sample(image, masks, np.array([1, 2, 3]), 64, augmenter=aug, seed=seed)
        assert np.array_equal(again[0], img) and np.array_equal(again[1], m)
    assert dropped > 0  # empty masks are dropped, their labels with them


@pytest.mark.parametrize("backend", ["albumentations", "numpy"])
def test_flips_map_a_known_mask_exactly(backend: str) -> None:
    if backend == "albumentations":
        pytest.importorskip("albumentations")
    image = np.zeros((8, 10, 3), np.uint8)
    image[1:3, 2:5] = (200, 100, 50)
    mask = np.zeros((1, 8, 10), np.uint8)
    mask[0, 1:3, 2:5] = 1
    flips_only = Augmenter(
        p=1.0, rotate_deg=0.0, shift_fraction=0.0, gain=(1.0, 1.0), backend=backend
    )
    out_img, out_mask = flips_only(image, mask, seed=0)
    expected = np.zeros((8, 10), np.uint8)
    expected[5:7, 5:8] = 1  # rows 1..2 -> 5..6, columns 2..4 -> 5..7
    assert np.array_equal(out_mask[0], expected)
    assert np.array_equal(out_img[:, :, 0] > 0, expected.astype(bool))


def test_colour_gain_is_per_channel_and_spatially_uniform() -> None:
    image = np.full((16, 16, 3), 100, np.uint8)
    aug = Augmenter(p=1.0, rotate_deg=0.0, shift_fraction=0.0, backend="numpy")
    out, _ = aug._numpy(image, np.zeros((0, 16, 16), np.uint8), np.random.default_rng(5))
    flipped_free = out.reshape(-1, 3)
    assert (flipped_free == flipped_free[0]).all()  # same gain everywhere
    assert len(set(flipped_free[0].tolist())) == 3  # a different gain per channel


def test_empty_segmentations_are_dropped_with_a_warning(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", 3)
    ann_file = root / "annotations.json"
    coco = json.loads(ann_file.read_text())
    n_before = len(coco["annotations"])
    extra = dict(coco["annotations"][0], id=999, segmentation=[])
    coco["annotations"].append(extra)
    coco["annotations"].append(dict(extra, id=1000, segmentation=[[1.0, 2.0, 3.0, 4.0]]))
    ann_file.write_text(json.dumps(coco))
    with pytest.warns(UserWarning, match="2 annotation\\(s\\) with an empty segmentation"):
        ds = CocoDetectionDataset(ann_file, root / "images", CMAP)
    assert sum(len(r.annotations) for r in ds.records) == n_before
