"""Label Studio's real export shapes: ids for predictions, skipped tasks, JSON_MIN, COCO, URLs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from flakefinder.annotate import labelstudio
from flakefinder.annotate.roundtrip import ReadReport, import_dataset, read_report
from flakefinder.annotate.shapes import LabeledImage, LabeledShape, to_coco
from flakefinder.errors import DatasetError

TRI = ((10.0, 12.5), (40.25, 12.0), (25.0, 50.75))
QUAD = ((60.0, 60.0), (90.0, 61.0), (91.5, 95.0), (59.0, 94.0))


def _images() -> list[LabeledImage]:
    return [
        LabeledImage("a.png", 128, 96, (LabeledShape("graphene_few", TRI, 0.9, {"n_layers": 2}),)),
        LabeledImage("b.png", 128, 96, (LabeledShape("graphene_mono", QUAD, 0.7),)),
        LabeledImage("c.png", 128, 96, (LabeledShape("graphene_thick", QUAD, 0.6),)),
    ]


def _image_dir(root: Path) -> Path:
    d = root / "imgs"
    d.mkdir(parents=True)
    for im in _images():
        Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(d / im.file_name)
    return d


def _default_export() -> list[dict[str, object]]:
    """What Label Studio's JSON export gives: ids, predictions as ids, one task per state."""
    tasks = labelstudio.to_tasks(_images(), image_url_prefix="/data/local-files/?d=imgs/")
    results = [t["predictions"][0]["result"] for t in tasks]
    tasks[0]["annotations"] = [{"id": 11, "result": results[0], "was_cancelled": False}]
    tasks[1]["annotations"] = [{"id": 12, "result": [], "was_cancelled": True}]  # skipped
    for i, t in enumerate(tasks):
        t["id"] = i + 1
        t["predictions"] = [100 + i]  # the default export lists prediction ids only
    tasks[2]["predictions"] = [{"id": 102, "result": results[2]}]  # or in full
    return tasks


def test_default_export_with_prediction_ids_skips_and_unreviewed() -> None:
    tasks = _default_export()
    read = labelstudio.read_export(json.loads(json.dumps(tasks)))
    assert [im.file_name for im in read.images] == ["a.png"]
    assert read.skipped == ["task 2 (b.png)"] and read.unreviewed == ["task 3 (c.png)"]


def test_predictions_only_with_accept_predictions() -> None:
    tasks = labelstudio.to_tasks(_images())
    tasks[1]["annotations"] = [{"result": [], "was_cancelled": True}]
    read = labelstudio.read_export(tasks, accept_predictions=True)
    # unreviewed tasks give their predictions; the skipped one never does
    assert [im.file_name for im in read.images] == ["a.png", "c.png"]
    assert read.from_predictions == ["task a.png (a.png)", "task c.png (c.png)"]
    assert labelstudio.read_export(tasks).images == []


def test_relabelled_region_label_wins_over_stale_meta() -> None:
    tasks = labelstudio.to_tasks(_images()[:1])
    result = json.loads(json.dumps(tasks[0]["predictions"][0]["result"]))
    result[0]["value"]["polygonlabels"] = ["graphene_thick"]  # was few, meta still says few/2
    result[0]["meta"] = {
        "attributes": {"layer_class": "few", "n_layers": 2, "material": "graphene"}
    }
    tasks[0]["annotations"] = [{"result": result}]
    coco = to_coco(labelstudio.from_export(tasks))
    ann = coco["annotations"][0]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert names[ann["category_id"]] == "graphene_thick"
    assert ann["attributes"] == {"material": "graphene", "layer_class": "thick"}
    # a consistent layer count is kept
    result[0]["meta"]["attributes"]["n_layers"] = 12
    ann = to_coco(labelstudio.from_export(tasks))["annotations"][0]
    assert ann["attributes"]["n_layers"] == 12 and ann["attributes"]["layer_class"] == "thick"


def test_missing_original_size_uses_task_or_image_folder() -> None:
    tasks = labelstudio.to_tasks(_images()[:1])
    result = json.loads(json.dumps(tasks[0]["predictions"][0]["result"]))
    for r in result:
        del r["original_width"], r["original_height"]
    tasks[0]["annotations"] = [{"result": result}]
    back = labelstudio.from_export(tasks)
    np.testing.assert_allclose(back[0].shapes[0].polygon_px, TRI, atol=1e-9)
    del tasks[0]["meta"]
    with pytest.raises(DatasetError, match="--images"):
        labelstudio.from_export(tasks)
    back = labelstudio.from_export(tasks, image_sizes={"a.png": (128, 96)})
    np.testing.assert_allclose(back[0].shapes[0].polygon_px, TRI, atol=1e-9)


def test_json_min_export(tmp_path: Path) -> None:
    tasks = labelstudio.to_tasks(_images()[:2], image_url_prefix="/data/local-files/?d=imgs/")
    rows = []
    for i, t in enumerate(tasks):
        values = [dict(r["value"], original_width=128, original_height=96)
                  for r in t["predictions"][0]["result"]]  # fmt: skip
        rows.append({"image": t["data"]["image"], "id": i + 5, "label": values,
                     "annotator": 1, "annotation_id": i})  # fmt: skip
    path = tmp_path / "min.json"
    path.write_text(json.dumps(rows))
    read = read_report([path], "labelstudio", image_dir=_image_dir(tmp_path))
    assert [im.file_name for im in read.images] == ["a.png", "b.png"]
    np.testing.assert_allclose(read.images[1].shapes[0].polygon_px, QUAD, atol=1e-9)
    assert [s.label for s in read.images[0].shapes] == ["graphene_few"]


def test_labelstudio_coco_export_paths(tmp_path: Path) -> None:
    coco = to_coco(_images())
    for im in coco["images"]:
        im["file_name"] = f"../../label-studio/media/imgs/images/{im['file_name']}"
    coco["images"][2]["file_name"] = "../../data/upload/1/0123abcd-c.png"
    path = tmp_path / "result.json"
    path.write_text(json.dumps(coco))
    out = tmp_path / "ds"
    import_dataset([path], "coco", out, image_dir=_image_dir(tmp_path))
    written = json.loads((out / "annotations.json").read_text())
    assert [im["file_name"] for im in written["images"]] == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.png", "b.png", "c.png"]
    # without an image folder the names are still made safe
    read = read_report([path], "coco")
    assert [im.file_name for im in read.images] == ["a.png", "b.png", "c.png"]


def test_two_tasks_for_one_image_are_refused(tmp_path: Path) -> None:
    tasks = labelstudio.to_tasks(_images()[:1] * 2)
    for i, t in enumerate(tasks):
        t["id"] = i + 7
        t["annotations"] = [{"result": t["predictions"][0]["result"]}]
    with pytest.raises(DatasetError, match=r"a.png is labelled in two tasks \(7 and 8\)"):
        labelstudio.from_export(tasks)
    # an untouched duplicate is left out rather than refused
    del tasks[1]["annotations"]
    assert len(labelstudio.from_export(tasks)) == 1
    # nothing is written when the import is refused
    tasks[1]["annotations"] = tasks[0]["annotations"]
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(tasks))
    with pytest.raises(DatasetError):
        import_dataset([path], "labelstudio", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_url_prefix_and_nested_names() -> None:
    assert labelstudio.local_files_prefix("run3") == "/data/local-files/?d=run3/"
    known = {"sub/x.png": (1, 1), "x.png": (1, 1)}
    assert labelstudio._file_name("/data/local-files/?d=run3/sub/x.png", known) == "sub/x.png"
    assert labelstudio._file_name("/data/local-files/?d=run3/x.png", known) == "x.png"
    assert labelstudio.file_name_from_path("../../a/images/b/c.png") == "b/c.png"


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    return run_cli(monkeypatch, capsys, *args)


def test_cli_export_skips_corrupt_image_and_import_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    imgs = _image_dir(tmp_path)
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, out, err = _cli(monkeypatch, capsys, "annotate", "export", str(imgs), "--out",
                          str(tmp_path / "pre"), "--detector", "contrast")  # fmt: skip
    assert code == 0, err
    assert "broken.png" in err and "skipped" in err and "1 unreadable image skipped" in out
    tasks = json.loads((tmp_path / "pre" / "labelstudio_tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == [
        f"/data/local-files/?d=imgs/{n}" for n in ("a.png", "b.png", "c.png")
    ]
    code, out, err = _cli(monkeypatch, capsys, "annotate", "export", str(imgs / "a.png"), "--out",
                          str(tmp_path / "pre2"), "--detector", "contrast",
                          "--image-url-prefix", "/data/local-files/?d=lab/run3/")  # fmt: skip
    assert code == 0, err
    task = json.loads((tmp_path / "pre2" / "labelstudio_tasks.json").read_text())[0]
    assert task["data"]["image"] == "/data/local-files/?d=lab/run3/a.png"
    # import the default export: one labelled, one skipped, one unreviewed
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_default_export()))
    code, out, err = _cli(monkeypatch, capsys, "annotate", "import", str(export), "--format",
                          "labelstudio", "--images", str(imgs), "--out", str(tmp_path / "ds"))  # fmt: skip
    assert code == 0, err
    assert "1 task(s) skipped in Label Studio: task 2 (b.png)" in out
    assert "1 task(s) without an annotation" in out and "--accept-predictions" in out
    assert "(1 image(s), 1 flake(s))" in out
    report = ReadReport()
    import_dataset([export], "labelstudio", tmp_path / "ds2", image_dir=imgs, report=report,
                   accept_predictions=True)  # fmt: skip
    assert [im.file_name for im in report.images] == ["a.png", "c.png"]
