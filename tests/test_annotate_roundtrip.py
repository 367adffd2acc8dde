"""Annotation round trip: every polygon and label survives export to each tool and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flakefinder.annotate import labelbox, labelme, labelstudio
from flakefinder.annotate.roundtrip import export_preannotations, import_dataset, read_annotations
from flakefinder.annotate.shapes import LabeledImage, LabeledShape, from_coco, to_coco
from flakefinder.domain import ClassMap
from flakefinder.errors import DatasetError

CMAP = ClassMap.for_materials(["graphene", "hBN"])


def _images() -> list[LabeledImage]:
    tri = ((10.0, 12.5), (40.25, 12.0), (25.0, 50.75))
    quad = ((60.0, 60.0), (90.0, 61.0), (91.5, 95.0), (59.0, 94.0))
    return [
        LabeledImage(
            "a.png",
            128,
            96,
            (
                LabeledShape("graphene_mono", tri, 0.91, {"n_layers": 1}),
                LabeledShape("hBN_few", quad, 0.55, {"n_layers": 7}),
            ),
        ),
        LabeledImage("b.png", 128, 96, (LabeledShape("graphene_thick", quad, 0.8),)),
        LabeledImage("empty.png", 128, 96, ()),
    ]


def _same(a: list[LabeledImage], b: list[LabeledImage]) -> None:
    assert [i.file_name for i in a] == [i.file_name for i in b]
    for ia, ib in zip(a, b, strict=True):
        assert (ia.width_px, ia.height_px) == (ib.width_px, ib.height_px)
        assert [s.label for s in ia.shapes] == [s.label for s in ib.shapes]
        for sa, sb in zip(ia.shapes, ib.shapes, strict=True):
            np.testing.assert_allclose(np.array(sa.polygon_px), np.array(sb.polygon_px), atol=1e-9)


def test_labelstudio_round_trip() -> None:
    tasks = labelstudio.to_tasks(_images())
    # a person accepts the predictions: Label Studio exports them as annotations
    for t in tasks:
        t["annotations"] = [{"result": t["predictions"][0]["result"], "was_cancelled": False}]
    back = labelstudio.from_export(json.loads(json.dumps(tasks)))
    _same(_images(), back)


def test_labelstudio_uses_latest_annotation_and_skips_cancelled() -> None:
    tasks = labelstudio.to_tasks(_images()[:1])
    corrected = json.loads(json.dumps(tasks[0]["predictions"][0]["result"][:1]))
    corrected[0]["value"]["polygonlabels"] = ["graphene_few"]
    tasks[0]["annotations"] = [
        {"result": corrected, "was_cancelled": False},
        {"result": [], "was_cancelled": True},
    ]
    back = labelstudio.from_export(tasks)
    assert [s.label for s in back[0].shapes] == ["graphene_few"]


def test_labelstudio_brush_refused() -> None:
    task = {
        "data": {"image": "/data/upload/1/0123abcd-x.png"},
        "annotations": [{"result": [{"type": "brushlabels", "value": {}}]}],
    }
    with pytest.raises(DatasetError, match="brush"):
        labelstudio.from_export([task])


def test_labelstudio_upload_prefix_is_stripped() -> None:
    assert labelstudio._file_name("/data/upload/3/0123abcd-chip_07.png") == "chip_07.png"
    assert labelstudio._file_name("/data/local-files/?d=scan/images/t1.png") == "t1.png"


def test_coco_round_trip_and_categories() -> None:
    coco = to_coco(_images(), CMAP)
    assert [c["name"] for c in coco["categories"]] == list(CMAP.names)
    assert len(coco["annotations"]) == 3
    assert coco["annotations"][0]["bbox"] == [10.0, 12.0, 30.25, 38.75]
    _same(_images(), from_coco(json.loads(json.dumps(coco))))


def test_labelme_round_trip(tmp_path: Path) -> None:
    for im in _images():
        (tmp_path / f"{im.file_name}.json").write_text(json.dumps(labelme.to_file(im)))
    back = sorted(read_annotations([tmp_path], "labelme"), key=lambda i: i.file_name)
    _same(sorted(_images(), key=lambda i: i.file_name), back)


def test_labelbox_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in labelbox.to_ndjson_rows(_images())))
    _same(_images(), labelbox.from_ndjson(path))


def test_labelbox_mask_refused(tmp_path: Path) -> None:
    row = labelbox.to_ndjson_rows(_images()[:1])[0]
    row["projects"]["flakefinder"]["labels"][0]["annotations"]["objects"] = [
        {"name": "x", "mask": {}}
    ]
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps(row))
    with pytest.raises(DatasetError, match="mask"):
        labelbox.from_ndjson(path)


def test_export_then_import_every_format(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for im in _images():
        Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(img_dir / im.file_name)
    written = export_preannotations(_images(), tmp_path / "pre", class_map=CMAP)
    tasks = json.loads(written["labelstudio"].read_text())
    for t in tasks:
        t["annotations"] = [{"result": t["predictions"][0]["result"]}]
    ls_file = tmp_path / "ls_export.json"
    ls_file.write_text(json.dumps(tasks))
    for fmt, src in (
        ("labelstudio", ls_file),
        ("cvat", written["cvat"]),
        ("labelme", written["labelme"]),
    ):
        out = tmp_path / f"ds_{fmt}"
        path = import_dataset([src], fmt, out, image_dir=img_dir, class_map=CMAP)
        coco = json.loads(path.read_text())
        back = sorted(from_coco(coco), key=lambda i: i.file_name)
        _same(sorted(_images(), key=lambda i: i.file_name), back)
        assert sorted(p.name for p in (out / "images").iterdir()) == ["a.png", "b.png", "empty.png"]


def test_import_errors(tmp_path: Path) -> None:
    bad = [LabeledImage("a.png", 10, 10, (LabeledShape("flake", ((0, 0), (1, 0), (1, 1))),))]
    with pytest.raises(DatasetError, match="label-map"):
        to_coco(bad)
    with pytest.raises(DatasetError, match="not in the class map"):
        to_coco(
            [LabeledImage("a.png", 10, 10, (LabeledShape("WTe2_mono", ((0, 0), (1, 0), (1, 1))),))],
            CMAP,
        )
    coco_file = tmp_path / "c.json"
    coco_file.write_text(json.dumps(to_coco(_images(), CMAP)))
    with pytest.raises(DatasetError, match="not in"):
        import_dataset([coco_file], "cvat", tmp_path / "out", image_dir=tmp_path)
    with pytest.raises(DatasetError, match="unknown annotation format"):
        read_annotations([coco_file], "voc")
    with pytest.raises(DatasetError, match="not found"):
        read_annotations([tmp_path / "nope.json"], "cvat")
