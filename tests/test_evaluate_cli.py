"""`flakefinder evaluate` on a tiny synthetic COCO dataset (contrast detector / results file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flakefinder.synth as synth
from flakefinder.cli.main import create_app
from flakefinder.errors import DatasetError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    synth.export_coco(
        out,
        n_images=3,
        materials=["graphene"],
        width_px=160,
        height_px=160,
        seed=3,
        empty_fraction=0.0,
    )
    return out


def perfect_results(dataset: Path) -> list[dict]:
    gt = json.loads((dataset / "annotations.json").read_text())
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": a["segmentation"],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]


def test_evaluate_results_file_perfect(dataset: Path, tmp_path: Path) -> None:
    res = tmp_path / "res.json"
    res.write_text(json.dumps(perfect_results(dataset)))
    r = CliRunner().invoke(
        create_app(),
        ["evaluate", str(dataset), "--results", str(res), "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["coco"]["mask_ap"] == pytest.approx(1.0)
    assert m["coco"]["ap50_per_material"]["graphene"] == pytest.approx(1.0)
    il = m["image_level"]
    assert il["fp"] == 0 and il["fn"] == 0 and il["precision"] == 1.0 and il["recall"] == 1.0
    cm = m["confusion_layer_class"]
    assert sum(map(sum, cm["counts"])) == m["coco"]["n_ground_truth"]
    assert (tmp_path / "o" / "metrics.md").is_file()
    assert (tmp_path / "o" / "confusion_class.png").is_file()


def test_evaluate_contrast_detector(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = CliRunner().invoke(
        create_app(), ["evaluate", str(dataset), "--detector", "contrast", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    for f in ("results.json", "metrics.json", "metrics.md", "confusion_layers.png"):
        assert (out / f).is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["detector"] == "contrast"
    assert m["image_level"]["n_images"] == 3
    assert 0.0 <= m["coco"]["mask_ap50"] <= 1.0
    assert "## COCO mAP" in r.output


def test_results_with_unknown_image(dataset: Path, tmp_path: Path) -> None:
    bad = perfect_results(dataset)[:1]
    bad[0]["image_id"] = 999
    res = tmp_path / "bad.json"
    res.write_text(json.dumps(bad))
    r = CliRunner().invoke(
        create_app(),
        ["evaluate", "dataset", str(dataset), "--results", str(res), "--out", str(tmp_path)],
    )
    assert isinstance(r.exception, DatasetError)
    assert "image id 999" in str(r.exception)


def test_missing_annotations(tmp_path: Path) -> None:
    r = CliRunner().invoke(create_app(), ["evaluate", str(tmp_path), "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, DatasetError)


def test_help() -> None:
    r = CliRunner().invoke(create_app(), ["evaluate", "--help"])
    assert r.exit_code == 0 and "illumination" in r.output
    r = CliRunner().invoke(create_app(), ["evaluate", "illumination", "--help"])
    assert r.exit_code == 0 and "--detectors" in r.output


def test_illumination_cli(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        create_app(),
        ["evaluate", "illumination", "--out", str(tmp_path), "--detectors", "contrast",
         "--views", "2", "--levels", "1.0,0.5", "--frame-px", "160"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "illumination.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith("contrast,1.0,2,")
