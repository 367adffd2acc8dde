"""COCO export and the ``flakefinder synth`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from flakefinder.domain import ClassMap
from flakefinder.errors import UnknownMaterialError
from flakefinder.imaging import load_image
from flakefinder.synth import export_coco, load_chip, render_view, view_instances


def _export(out):
    return export_coco(
        out,
        n_images=6,
        materials=["graphene", "hBN"],
        width_px=256,
        height_px=256,
        um_per_px=0.2,
        seed=0,
        flakes_per_mm2=80.0,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, _export(out)


def test_coco_loads_in_pycocotools(dataset):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out, path = dataset
    coco = COCO(str(path))
    names = ClassMap.for_materials(["graphene", "hBN"]).names
    cats = coco.loadCats(coco.getCatIds())
    assert [c["name"] for c in cats] == list(names)
    assert [c["id"] for c in cats] == list(range(1, 7))
    assert {c["supercategory"] for c in cats} == {"graphene", "hBN"}
    assert len(coco.getImgIds()) == 6
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) > 0
    for ann in anns:
        m = coco.annToMask(ann)
        assert m.sum() == ann["area"] >= 20
        assert ann["iscrowd"] == 0
        assert mask_utils.toBbox(ann["segmentation"]).tolist() == ann["bbox"]
        attrs = ann["attributes"]
        assert names[ann["category_id"] - 1] == f"{attrs['material']}_{attrs['layer_class']}"
        assert 1 <= attrs["n_layers"] <= 40
    for img in coco.loadImgs(coco.getImgIds()):
        assert load_image(out / img["file_name"]).shape == (256, 256, 3)


def test_coco_images_can_be_re_rendered_from_chip_files(dataset):
    out, path = dataset
    data = json.loads(path.read_text())
    img = data["images"][0]
    chip = load_chip(out / img["chip_file"])
    inst = view_instances(chip, img["center_x_um"], img["center_y_um"], 256, 256, img["um_per_px"])
    assert len(inst) == sum(a["image_id"] == img["id"] for a in data["annotations"])
    pixels = render_view(chip, img["center_x_um"], img["center_y_um"], 256, 256, 0.2, seed=0)
    assert pixels.shape == (256, 256, 3)


def test_export_is_deterministic(tmp_path, dataset):
    _, first = dataset
    again = _export(tmp_path)
    assert again.read_text() == first.read_text()
    for i in range(6):
        a = (first.parent / f"images/{i:06d}.png").read_bytes()
        assert (tmp_path / f"images/{i:06d}.png").read_bytes() == a


def test_export_unknown_material(tmp_path):
    with pytest.raises(UnknownMaterialError):
        export_coco(tmp_path, n_images=1, materials=["unobtainium"], seed=0)


def _app():
    from flakefinder.cli.main import create_app

    return create_app()


def test_cli_synth(tmp_path):
    out = tmp_path / "ds"
    res = CliRunner().invoke(
        _app(),
        [
            "synth",
            str(out),
            "--images",
            "3",
            "--materials",
            "graphene,MoS2",
            "--frame-px",
            "128",
            "--um-per-px",
            "0.4",
            "--seed",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "annotations.json").read_text())
    assert len(data["images"]) == 3
    assert len(list((out / "images").glob("*.png"))) == 3
    assert [c["name"] for c in data["categories"]][:3] == [
        "graphene_mono",
        "graphene_few",
        "graphene_thick",
    ]


def test_cli_synth_unknown_material(tmp_path):
    res = CliRunner().invoke(
        _app(), ["synth", str(tmp_path), "--materials", "graphene,unobtainium"]
    )
    assert res.exit_code == 2
    assert "unobtainium" in res.output
    assert not (tmp_path / "annotations.json").exists()


def test_cli_synth_help():
    res = CliRunner().invoke(_app(), ["synth", "--help"])
    assert res.exit_code == 0
    assert "COCO" in res.output and "--materials" in res.output


def test_rle_masks_match_view_instances(dataset):
    from pycocotools import mask as mask_utils

    out, path = dataset
    data = json.loads(path.read_text())
    img = next(
        i for i in data["images"] if any(a["image_id"] == i["id"] for a in data["annotations"])
    )
    chip = load_chip(out / img["chip_file"])
    inst = view_instances(chip, img["center_x_um"], img["center_y_um"], 256, 256, 0.2)
    anns = [a for a in data["annotations"] if a["image_id"] == img["id"]]
    for a, i in zip(anns, inst, strict=True):
        np.testing.assert_array_equal(mask_utils.decode(a["segmentation"]).astype(bool), i.mask)
