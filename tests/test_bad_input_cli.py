"""Bad input on the real command line: exit code 2, one clear line, no traceback, nothing half-done.

Each case runs ``flakefinder.cli.main.main`` (the console-script entry point, with its
``FlakefinderError`` handler) in-process with a patched ``sys.argv``. Bad HTTP requests to
``flakefinder serve`` are covered in ``test_server_api.py``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli

TINY_SCAN = ["--chip-size-mm", "0.2", "--frame-px", "128", "--um-per-px", "0.5", "--no-progress"]
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "src/flakefinder/models/default"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def run(*args: str) -> Result:
        return Result(*run_cli(monkeypatch, capsys, *args))

    return run


def one_error(res: Result, *needles: str) -> str:
    """The single 'error: ...' line of a failed command, checked for ``needles``."""
    assert res.code == 2, (res.code, res.out, res.err)
    assert len(res.errors) == 1, res.err
    line = res.errors[0]
    for needle in needles:
        assert needle in line, line
    return line


# -- unknown material, unreachable database, stage limits ------------------------------------


def test_synth_unknown_material(cli, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    res = cli("synth", str(out), "--materials", "graphene,unobtainium", "--images", "1")
    one_error(res, "unknown material 'unobtainium'", "graphene", "hBN")
    assert not out.exists()


def test_scan_unknown_material_stores_nothing(cli, tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    res = cli(
        "scan", "--simulated", *TINY_SCAN, "--materials", "unobtainium", "--db", f"sqlite:///{db}"
    )
    one_error(res, "unknown material 'unobtainium'", "known materials")
    assert not db.exists()


def test_scan_unreachable_database_masks_password(cli) -> None:
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:9/x"
    res = cli("scan", "--simulated", *TINY_SCAN, "--db", url)
    line = one_error(res, "cannot connect", "127.0.0.1:9")
    assert "secret" not in res.out + res.err and "***" in line


@pytest.mark.parametrize("corners", ["100000,100000;200000,200000", "-1e9,-1e9;1e9,1e9"])
def test_scan_outside_stage_limits_refused_before_anything(cli, tmp_path: Path, corners) -> None:
    db = tmp_path / "f.db"
    res = cli("scan", "--simulated", *TINY_SCAN, "--db", f"sqlite:///{db}", "--corners", corners)
    one_error(res, "outside the stage limits", "stage travel", "check the chip corners")
    assert not db.exists()  # refused before the database (and the stage) is touched


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--corners", "0,0;nan,300"], "finite"),
        (["--overlap", "1.5"], "--overlap"),
        (["--detector", "bogus"], "unknown detector 'bogus'"),
    ],
)
def test_scan_bad_options(cli, tmp_path: Path, args: list[str], needle: str) -> None:
    db = tmp_path / "f.db"
    res = cli("scan", "--simulated", *TINY_SCAN, "--db", f"sqlite:///{db}", *args)
    assert res.code == 2 and needle in res.err, res.err
    assert not db.exists()


def test_flakes_list_unopenable_sqlite(cli, tmp_path: Path) -> None:
    # issue 11 #11: a mistyped SQLite path is refused instead of creating an empty database
    res = cli("flakes", "list", "--db", "sqlite:///nonexistent/dir/x.db")
    one_error(res, "no database file nonexistent/dir/x.db", "db upgrade")
    typo = tmp_path / "flkes.db"
    for args in (["flakes", "list"], ["db", "info"], ["flakes", "export"]):
        one_error(cli(*args, "--db", f"sqlite:///{typo}"), "no database file", "flkes.db")
    assert not typo.exists()
    res = cli("db", "upgrade", "--db", f"sqlite:///{typo}")  # creating one stays possible
    assert res.code == 0 and typo.is_file()


# -- images ------------------------------------------------------------------------------------


def test_detect_skips_corrupt_images_and_reads_16bit_grey_tiff(cli, tmp_path: Path) -> None:
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (images / "empty.png").write_bytes(b"")
    grey16 = (np.random.default_rng(0).random((48, 72)) * 65535).astype(np.uint16)
    assert cv2.imwrite(str(images / "grey16.tif"), grey16)  # LZW, as OpenCV writes TIFFs
    out = tmp_path / "out"
    res = cli("detect", str(images), "--out", str(out), "--detector", "contrast")
    assert res.code == 0, res.err
    skipped = [line for line in res.err.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2, res.err
    assert any("corrupt.png" in s for s in skipped) and any("empty.png" in s for s in skipped)
    assert "2 images could not be read" in res.err
    recorded = json.loads((out / "images.json").read_text())["images"]
    assert [(Path(r["file_name"]).name, r["width"], r["height"]) for r in recorded] == [
        ("grey16.tif", 72, 48)
    ]


def test_detect_missing_input(cli, tmp_path: Path) -> None:
    res = cli(
        "detect", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--detector", "contrast"
    )
    one_error(res, "no such file or folder", "nope")


# -- model folders -----------------------------------------------------------------------------


def _model_copy(tmp_path: Path, n_classes: int, *, edit_config: bool) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("weights.pt", "config.json", "class_map.json"):
        shutil.copy(SHIPPED_MODEL / name, folder / name)
    cmap = json.loads((folder / "class_map.json").read_text())
    cmap["names"] = cmap["names"][:n_classes]
    cmap["categories"] = cmap["categories"][:n_classes]
    (folder / "class_map.json").write_text(json.dumps(cmap))
    if edit_config:
        cfg = json.loads((folder / "config.json").read_text())
        cfg["class_names"] = cfg["class_names"][:n_classes]
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.skipif(not (SHIPPED_MODEL / "weights.pt").is_file(), reason="no shipped model")
@pytest.mark.parametrize(
    ("edit_config", "needles"),
    [
        (True, ("class map has 9 classes but weights have 12",)),
        (False, ("class_map.json (9 classes", "disagrees with config.json (12 classes")),
    ],
)
def test_detect_model_class_map_mismatch(cli, tmp_path: Path, edit_config, needles) -> None:
    pytest.importorskip("torch")
    model = _model_copy(tmp_path, 9, edit_config=edit_config)
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    out = tmp_path / "out"
    res = cli("detect", str(image), "--out", str(out), "--detector", "maskrcnn",
              "--model", str(model), "--device", "cpu")  # fmt: skip
    one_error(res, *needles)
    assert not out.exists()


# -- datasets: train, evaluate, annotate -------------------------------------------------------


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flakefinder.synth.coco import export_coco

    root = tmp_path_factory.mktemp("coco")
    export_coco(root, n_images=2, materials=["graphene"], width_px=64, height_px=64, seed=0)
    return root


def _edited(coco: Path, tmp_path: Path, edit) -> Path:
    target = tmp_path / "ds"
    shutil.copytree(coco, target)
    data = json.loads((target / "annotations.json").read_text())
    edit(data)
    (target / "annotations.json").write_text(json.dumps(data))
    return target


def _add_missing_image(d: dict) -> None:
    d["images"].append(dict(d["images"][0], id=99, file_name="images/nothere.png"))


def _unknown_category_id(d: dict) -> None:
    d["annotations"][0]["category_id"] = 77


def _unknown_category_name(d: dict) -> None:
    used = d["annotations"][0]["category_id"]
    next(c for c in d["categories"] if c["id"] == used)["name"] = "graphene_1L"


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (_add_missing_image, ("1 image file(s) missing", "nothere.png", "--skip-missing")),
        (_unknown_category_id, ("annotation #0", "category_id 77", "not in its 'categories'")),
        (_unknown_category_name, ("['graphene_1L']", "not in the class map", "--label-map")),
    ],
)
def test_train_bad_coco(cli, coco: Path, tmp_path: Path, edit, needles) -> None:
    dataset = _edited(coco, tmp_path, edit)
    out = tmp_path / "model"
    res = cli("train", str(dataset), "--out", str(out), "--recipe", "cpu_small", "--device", "cpu")
    one_error(res, *needles)
    assert not out.exists()  # nothing written for a dataset that cannot be used


def test_evaluate_results_with_unknown_images(cli, coco: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    rle = {"size": [64, 64], "counts": "PPYo1"}
    results.write_text(json.dumps([{"image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5],
                                    "score": 0.9, "segmentation": rle}]))  # fmt: skip
    out = tmp_path / "eval"
    res = cli("evaluate", str(coco), "--results", str(results), "--out", str(out))
    one_error(res, "image id 12345", "not in the ground truth")
    assert not out.exists()


def test_annotate_import_unknown_format(cli, tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text("[]")
    out = tmp_path / "corrected"
    res = cli("annotate", "import", str(export), "--format", "foo", "--out", str(out))
    one_error(res, "unknown annotation format 'foo'", "labelstudio")
    assert not out.exists()
