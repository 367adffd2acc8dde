"""The one COCO writer of both synth styles: unchanged bytes, shared layout, exact RLE."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from flakefinder.coco import decode_segmentation, encode_rle
from flakefinder.domain import ClassMap
from flakefinder.errors import UnknownMaterialError
from flakefinder.synth.coco import export_coco
from flakefinder.synth.coco_writer import CocoDatasetWriter, instance_annotation
from flakefinder.synth.realistic_coco import export_realistic_coco

# sha256 of annotations.json written by the two exporters before they shared one writer
# (commit e7a84fd), for the seeded datasets below. The writer must not change a byte; a change
# of the renderers themselves (chip geometry, camera model) would also show here: then check that
# the writer is not the cause before updating the value.
PLAIN_SHA256 = "a48082ec110a94ec82470cb6804a34f4821bb7e8964f0f5deed90384d9192697"
REALISTIC_SHA256 = "4a4b2c4225b7384b246bfd1c7b0164884b379b7f3296451a1178eb3889389cb6"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    return export_coco(
        out,
        n_images=4,
        materials=["graphene", "hBN"],
        width_px=128,
        height_px=96,
        um_per_px=0.6,
        seed=11,
        flakes_per_mm2=250.0,
    )


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic")
    return export_realistic_coco(
        out, n_images=3, materials=["graphene", "MoS2"], width_px=128, height_px=96, seed=3
    )


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plain_export_bytes_unchanged(plain):
    assert len(json.loads(plain.read_text())["annotations"]) == 8
    assert _sha(plain) == PLAIN_SHA256


def test_realistic_export_bytes_unchanged(realistic):
    assert len(json.loads(realistic.read_text())["annotations"]) == 3
    assert _sha(realistic) == REALISTIC_SHA256


def test_both_styles_share_the_layout(plain, realistic):
    for path, suffix in ((plain, ".png"), (realistic, ".jpg")):
        data = json.loads(path.read_text())
        assert list(data) == ["info", "licenses", "categories", "images", "annotations"]
        assert [c["id"] for c in data["categories"]] == list(range(1, 7))
        assert [im["id"] for im in data["images"]] == list(range(1, len(data["images"]) + 1))
        for i, im in enumerate(data["images"]):
            assert list(im)[:4] == ["id", "file_name", "width", "height"]
            assert im["file_name"] == f"images/{i:06d}{suffix}"
            assert (path.parent / im["file_name"]).is_file()
        ids = [a["id"] for a in data["annotations"]]
        assert ids == list(range(1, len(ids) + 1))
        for ann in data["annotations"]:
            mask = decode_segmentation(ann["segmentation"], 96, 128)
            assert mask.sum() == ann["area"]
            ys, xs = np.nonzero(mask)
            x0, y0, w, h = ann["bbox"]
            assert (xs.min(), ys.min(), xs.max() + 1 - x0, ys.max() + 1 - y0) == (x0, y0, w, h)
        assert not path.with_suffix(".json.tmp").exists()


def test_rle_matches_pycocotools():
    from pycocotools import mask as mask_utils

    from flakefinder.synth.realistic import render_realistic

    sample = render_realistic(96, 64, ["graphene", "hBN"], seed=3)
    corners = np.zeros((64, 96), bool)
    corners[0, 0] = corners[63, 95] = True  # runs that start at the first and end at the last pixel
    masks = [inst.mask for inst in sample.instances] + [corners, ~corners]
    assert len(masks) >= 3
    for m in masks:
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert encode_rle(m) == {"size": list(ref["size"]), "counts": ref["counts"].decode()}
    inst = sample.instances[0]
    ann = instance_annotation(
        inst, annotation_id=5, image_id=2, class_map=ClassMap.for_materials(["graphene", "hBN"])
    )
    assert (ann["id"], ann["image_id"], ann["attributes"]["n_layers"]) == (5, 2, inst.n_layers)
    assert ann["segmentation"] == encode_rle(inst.mask)


def test_writer_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_images must be >= 0"):
        CocoDatasetWriter(tmp_path / "a", materials=["graphene"], n_images=-1)
    with pytest.raises(UnknownMaterialError):
        CocoDatasetWriter(tmp_path / "b", materials=["unobtainium"], n_images=1)
    assert not (tmp_path / "b").exists()


def test_writer_numbers_images_reports_progress_and_writes_last(tmp_path):
    calls: list[tuple[int, int]] = []
    writer = CocoDatasetWriter(
        tmp_path, materials=["hBN"], n_images=2, progress=lambda d, n: calls.append((d, n))
    )
    name, path = writer.image_path(1, ".png")
    assert (name, path) == ("images/000001.png", tmp_path / "images" / "000001.png")
    assert writer.add_image("a.png", width_px=4, height_px=3, instances=[], fields={"x": 1}) == 1
    assert writer.add_image("b.png", width_px=4, height_px=3, instances=[], fields={}) == 2
    assert calls == [(1, 2), (2, 2)]
    assert not (tmp_path / "annotations.json").exists()
    data = json.loads(writer.write({"seed": 9}).read_text())
    assert data["info"] == {"seed": 9} and data["annotations"] == []
    assert data["images"][0] == {"id": 1, "file_name": "a.png", "width": 4, "height": 3, "x": 1}
    assert [c["name"] for c in data["categories"]] == ["hBN_mono", "hBN_few", "hBN_thick"]
