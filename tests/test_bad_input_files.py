"""User-supplied JSON files that are too deep, hold absurd numbers or are not strict JSON, and
COCO exports naming images by absolute paths: one clear line, no traceback, nothing written.

Runs the console-script entry point in-process (the ``cli`` fixture of test_bad_input_cli).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flakefinder.artifacts import FILE_JSON_LIMITS, JsonLimits, load_json_file, parse_json
from flakefinder.calibration import SetupProfile
from flakefinder.calibration.gmm import read_gmm
from flakefinder.coco import load_coco
from flakefinder.errors import CalibrationError, DatasetError, JsonInputError, ProfileError
from test_bad_input_cli import cli, one_error  # noqa: F401  (the fixture)

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = '{"name": "setup", "version": ' + "9" * 5000 + "}"
BAD_TEXTS = {
    "deep": (DEEP, "nested 100000 levels deep"),
    "huge int": (HUGE_INT, "a number of 5000 characters"),
    "NaN": ('{"a": NaN}', "NaN is not a JSON number"),
    "Infinity": ('{"a": [1, -Infinity]}', "-Infinity is not a JSON number"),
    "overflow": ('{"a": 1e999}', "out of range"),
    "surrogate": ('{"a": "\\ud800"}', "lone UTF-16 surrogate"),
    "not utf-8": ('{"a": "\xff"}'.encode("latin-1"), "not UTF-8"),
    "truncated": ('{"a": [1, 2', "not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_TEXTS))
def test_parse_json_refuses_with_one_line(name: str) -> None:
    text, needle = BAD_TEXTS[name]
    with pytest.raises(JsonInputError, match=needle) as info:
        parse_json(text, what="x.json")
    assert str(info.value).startswith("x.json: ") and "\n" not in str(info.value)


def test_parse_json_accepts_strict_json() -> None:
    text = '{"a": [1, 2.5e3, -0.0, "\\ud83d\\ude00", "[{\\"]"], "b": {"c": null}}'
    assert parse_json(text) == json.loads(text)
    assert parse_json("[" * 64 + "]" * 64) is not None  # the depth limit itself
    with pytest.raises(JsonInputError, match="exceed the limit"):
        parse_json("[1]" + " " * 100, limits=JsonLimits(max_bytes=50))


def test_file_loaders_refuse_before_reading_too_much(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(FILE_JSON_LIMITS.max_bytes + 1)  # sparse: no disk used
    with pytest.raises(DatasetError, match="larger than"):
        load_json_file(big, error=DatasetError)
    for name, (text, needle) in BAD_TEXTS.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ProfileError, match=needle):
            SetupProfile.load(path)
        with pytest.raises(DatasetError, match=needle):
            load_coco(path)
        with pytest.raises(CalibrationError, match=needle):
            read_gmm(path)


@pytest.mark.parametrize("name", ["deep", "huge int"])
def test_detect_with_a_hostile_setup_profile(cli, tmp_path: Path, name: str) -> None:  # noqa: F811
    profile = tmp_path / "setup.json"
    profile.write_text(BAD_TEXTS[name][0])
    image = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(image)
    out = tmp_path / "out"
    res = cli("detect", str(image), "--setup", str(profile), "--out", str(out))
    one_error(res, f"setup profile {profile}", BAD_TEXTS[name][1])
    assert not out.exists()


@pytest.mark.parametrize("name", ["deep", "huge int", "NaN"])
def test_train_and_import_with_hostile_coco(cli, tmp_path: Path, name: str) -> None:  # noqa: F811
    coco = tmp_path / "bad.json"
    coco.write_text(BAD_TEXTS[name][0])
    res = cli("annotate", "import", str(coco), "--format", "coco", "--out", str(tmp_path / "o"))
    one_error(res, str(coco), BAD_TEXTS[name][1])
    assert not (tmp_path / "o").exists()


def _coco_naming(path: str) -> dict[str, object]:
    return {
        "images": [{"id": 1, "file_name": path, "width": 32, "height": 32}],
        "categories": [{"id": 1, "name": "graphene_mono"}],
        "annotations": [
            {
                "id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 324.0,
                "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]], "bbox": [2, 2, 18, 18],
            }
        ],
    }  # fmt: skip


def test_coco_with_absolute_file_names_reads_images_from_images_folder(
    cli, tmp_path: Path  # noqa: F811
) -> None:
    """The export names /…/original/img.png; --images points elsewhere: look there by name."""
    original, elsewhere, empty = tmp_path / "original", tmp_path / "elsewhere", tmp_path / "empty"
    for folder in (original, elsewhere, empty):
        folder.mkdir()
    pixels = np.full((32, 32, 3), 100, np.uint8)
    Image.fromarray(pixels).save(original / "img.png")
    coco = tmp_path / "export.json"
    coco.write_text(json.dumps(_coco_naming(str(original / "img.png"))))
    # the folder does not hold it (empty, or other images): one line, nothing written
    Image.fromarray(pixels).save(elsewhere / "other.png")
    for folder in (empty, elsewhere):
        out = tmp_path / f"out_{folder.name}"
        res = cli("annotate", "import", str(coco), "--format", "coco", "--out", str(out),
                  "--images", str(folder))  # fmt: skip
        one_error(res, "not in", str(folder), "img.png")
        assert not out.exists()
    assert (original / "img.png").is_file()  # never touched
    # the folder holds it: the dataset copies it from there, under its base name
    pixels[0, 0] = 7
    Image.fromarray(pixels).save(elsewhere / "img.png")
    out = tmp_path / "out"
    res = cli("annotate", "import", str(coco), "--format", "coco", "--out", str(out),
              "--images", str(elsewhere))  # fmt: skip
    assert res.code == 0, res.err
    data = json.loads((out / "annotations.json").read_text())
    assert [im["file_name"] for im in data["images"]] == ["img.png"]
    assert np.asarray(Image.open(out / "images" / "img.png"))[0, 0, 0] == 7
