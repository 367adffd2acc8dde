"""Self-training data (issue 16): recipes, held-out split, tiles, the pseudo-labelled dataset.

No torch here; the training chunks are in ``test_selftrain_train.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flakefinder.detect.tiling import (
    Piece,
    crop_of,
    cut_tile,
    merge_pieces,
    piece_to_full,
    rescale_crop,
    scale_for,
    tile_windows,
)
from flakefinder.errors import FlakefinderError
from flakefinder.imaging import save_image
from flakefinder.train.recipe import RecipeError, TrainRecipe, load_recipe
from flakefinder.train.selftrain.dataset import build_dataset, read_manifest, reusable
from flakefinder.train.selftrain.pseudo import Labelled, pseudo_labelled
from flakefinder.train.selftrain.sources import folder_sets, holdout_split
from flakefinder.train.selftrain_spec import SelfTrainSpec, SelfTrainSpecError
from terrace_helpers import scene


def test_cpu_and_gpu_recipes_share_the_data() -> None:
    cpu, gpu = load_recipe("cpu_selftrain"), load_recipe("gpu_selftrain")
    assert cpu.selftrain is not None and gpu.selftrain is not None
    assert cpu.selftrain == gpu.selftrain and cpu.tile_um_per_px == gpu.tile_um_per_px
    assert cpu.class_agnostic and gpu.class_agnostic
    assert gpu.image_size > cpu.image_size and gpu.batch_size > cpu.batch_size
    # a 30 um^2 one-layer terrace covers at least 200 px of a tile
    assert 30.0 / cpu.tile_um_per_px**2 >= 200
    assert cpu.selftrain.min_confidence == 0.7 and cpu.selftrain.holdout_fraction == 0.3
    assert cpu.to_dict()["selftrain"]["real_sets"][0] == "nbse2_2025"
    assert "selftrain" not in load_recipe("cpu_small").to_dict()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"colour": 1}, "unknown \\[selftrain\\] key"),
        ({"real_sets": ["mine"]}, "unknown real set"),
        ({"real_sets": "hbn"}, "list of names"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"min_confidence": float("nan")}, "min_confidence"),
        ({"synth_images": -1}, "synth_images"),
    ],
)
def test_bad_selftrain_tables_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(SelfTrainSpecError, match=message):
        SelfTrainSpec.from_dict(table)


def test_a_selftrain_recipe_must_be_class_agnostic_and_tiled() -> None:
    base = load_recipe("cpu_selftrain").to_dict()
    for change in ({"class_agnostic": False}, {"tile_um_per_px": 0.0}):
        with pytest.raises(RecipeError, match="needs class_agnostic"):
            TrainRecipe.from_dict({**base, **change})
    with pytest.raises(RecipeError, match="tile_um_per_px"):
        TrainRecipe.from_dict({**base, "tile_um_per_px": -1.0})


def test_holdout_split_is_seeded_per_set() -> None:
    names = [f"img{i:02d}.jpg" for i in range(10)]
    train, held = holdout_split(names, 0.3, 0, "a")
    assert len(held) == 3 and len(train) == 7 and set(train) | set(held) == set(names)
    assert holdout_split(list(reversed(names)), 0.3, 0, "a") == (train, held)
    others = [holdout_split(names, 0.3, s, "a")[1] for s in range(1, 6)]
    assert any(o != held for o in others)
    assert holdout_split(["x.jpg"], 0.3, 0, "a") == (["x.jpg"], [])
    assert holdout_split(["x.jpg", "y.jpg"], 0.3, 0, "a")[1] in (["x.jpg"], ["y.jpg"])
    assert holdout_split(names, 0.0, 0, "a") == (sorted(names), [])


def test_tiles_cover_the_image_and_merge_cut_flakes() -> None:
    wins = tile_windows(300, 500, 128, 16)
    assert wins[0] == (0, 0) and (372, 172) in wins  # last windows end at the edges
    assert all(x + 128 <= 500 and y + 128 <= 300 for x, y in wins)
    assert tile_windows(50, 60, 128, 16) == [(0, 0)]
    assert cut_tile(np.ones((50, 60, 3), np.uint8), 0, 0, 128).sum() == 50 * 60 * 3
    assert scale_for(0.1, 0.375) == pytest.approx(0.26667, rel=1e-4)
    with pytest.raises(ValueError, match="um_per_px"):
        scale_for(float("nan"), 0.375)
    # a flake across two tiles, seen in part by each: one instance
    flake = np.zeros((100, 200), bool)
    flake[20:60, 50:150] = True
    left = Piece(50, 20, flake[20:60, 50:110], 0.8, tile=0)
    right = Piece(90, 20, flake[20:60, 90:150], 0.9, tile=1)
    separate = Piece(160, 70, np.ones((10, 10), bool), 0.7, tile=1)
    same_tile = Piece(120, 25, np.ones((5, 5), bool), 0.6, tile=1)  # inside right, same tile
    merged = merge_pieces([left, right, separate, same_tile])
    assert [(p.score, p.area) for p in merged] == [(0.9, 4000), (0.7, 100), (0.6, 25)]
    # the tiles were cut from the picture enlarged 2x: back to the picture's pixels
    full = piece_to_full(merged[0], 2.0, (50, 100))
    assert full.sum() == 1000 and full[10, 25] and not full[9, 25]
    x0, y0, m = crop_of(flake) or (0, 0, flake)
    assert (x0, y0, m.shape) == (50, 20, (40, 100))
    got = rescale_crop(m, x0, y0, 2.0, (200, 400))
    assert got is not None and got[:2] == (100, 40) and got[2].sum() == 16000
    # a pixel size equal to the tiles' but for rounding (7.688 / 20.5 x 20.5) changes nothing
    same = rescale_crop(m, x0, y0, 0.9999999999999999, (100, 200))
    assert same is not None and same[:2] == (50, 20) and np.array_equal(same[2], m)


def _labelled(key: str, image: np.ndarray, labels: list[np.ndarray], unsure: list[np.ndarray],
              source_set: str = "s") -> Labelled:  # fmt: skip
    crops = [c for c in (crop_of(m) for m in labels) if c is not None]
    rest = [c for c in (crop_of(m) for m in unsure) if c is not None]
    return Labelled(key, image, 0.375, crops, rest, "terrace", source_set, f"{key}.jpg")


def test_dataset_keeps_labelled_tiles_and_marks_unsure_regions(tmp_path: Path) -> None:
    img = np.full((200, 300, 3), 128, np.uint8)
    flake = np.zeros((200, 300), bool)
    flake[20:60, 20:70] = True
    unsure = np.zeros((200, 300), bool)
    unsure[30:40, 80:90] = True
    empty = _labelled("b", img, [], [unsure])
    key = {"k": 1}
    man = build_dataset(tmp_path / "data", [_labelled("a", img, [flake], [unsure]), empty],
                        key=key, info={"sets": {}}, tile_px=128, overlap_px=16,
                        tile_um_per_px=0.375, min_px=16, say=lambda _m: None)  # fmt: skip
    coco = __import__("json").loads((tmp_path / "data" / "annotations.json").read_text())
    # windows (0,0),(112,0),(172,0),(0,72),... : the flake lies in the first only, whole
    assert [im["window_px"] for im in coco["images"]] == [[0, 0]]
    assert [(a["iscrowd"], a["area"]) for a in coco["annotations"]] == [(0, 2000), (1, 100)]
    assert man["counts"]["s"] == {"pictures": 2, "tiles": 1, "labels": 1, "unsure": 1}
    assert man["tiles"] == 1 and man["labels"] == 1 and len(man["sha256"]) == 64
    assert reusable(read_manifest(tmp_path / "data"), key)
    assert not reusable(read_manifest(tmp_path / "data"), {"k": 2})
    assert read_manifest(tmp_path / "nothing") is None
    with pytest.raises(FlakefinderError, match="nothing to learn"):
        build_dataset(tmp_path / "d2", [empty], key=key, info={}, tile_px=128, overlap_px=16,
                      tile_um_per_px=0.375, min_px=16, say=lambda _m: None)  # fmt: skip
    assert not (tmp_path / "d2").exists() and not (tmp_path / ".d2.partial").exists()


def test_every_synthetic_tile_keeps_its_exact_labels(tmp_path: Path) -> None:
    from flakefinder.train.selftrain.pseudo import synthetic

    spec = SelfTrainSpec(synth_images=3)
    items = list(synthetic(spec, 128, 0.375))
    assert all(it.um_per_px == pytest.approx(0.375) and it.image.shape == (128, 128, 3)
               for it in items)  # fmt: skip
    n_labels = sum(len(it.labels) for it in items)
    man = build_dataset(tmp_path / "d", items, key={}, info={}, tile_px=128, overlap_px=16,
                        tile_um_per_px=0.375, min_px=16, say=lambda _m: None)  # fmt: skip
    assert man["counts"]["synth"]["tiles"] == sum(1 for it in items if it.labels)
    assert man["labels"] == n_labels > 0


def test_pseudo_labels_are_the_confident_terraces_of_training_pictures(tmp_path: Path) -> None:
    for seed in range(3):
        save_image(tmp_path / "pics" / f"p{seed}.png", scene(seed=seed).image)
    (s,) = folder_sets([tmp_path / "pics"], um_per_px=0.2, oxide_nm=90.0, material="graphene",
                       max_images=None)  # fmt: skip
    said: list[str] = []
    spec = SelfTrainSpec(min_confidence=0.7)
    got = list(pseudo_labelled(s, ["p0.png", "p2.png"], spec, said.append))
    assert [g.source_file for g in got] == ["p0.png", "p2.png"]  # p1 held out: never read
    truth = scene(seed=0).terraces
    labels = got[0].labels
    assert len(labels) == 3  # the three terraces; bulk, residue and dust are no labels
    areas = sorted(int(m.sum()) for _, _, m in labels)
    want = sorted(int(m.sum()) for m, _ in truth)
    assert all(abs(a - b) <= 0.05 * b for a, b in zip(areas, want, strict=True))
    assert got[0].key == "real-pics-p0" and got[0].um_per_px == 0.2
    assert any("self-calibrated" in m for m in said)
    with pytest.raises(FlakefinderError, match="no image files"):
        (tmp_path / "none").mkdir()
        folder_sets([tmp_path / "none"], um_per_px=0.2, oxide_nm=90.0, material="graphene",
                    max_images=None)  # fmt: skip
