"""detect / evaluate with --setup on hand-built scenes: outputs, exact scores, bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrated_helpers import ctx, profile, scene
from cli_helpers import run_cli
from flakefinder.detect.calibrated import CalibratedContrastDetector
from flakefinder.imaging import save_image


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(monkeypatch, capsys, *args)

    return run


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """Two scene images, their instance masks (thin flakes: 1L, 2L, 4L) and a profile file."""
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for k in range(2):
        img, m = scene(seed=k)
        save_image(imgs / f"s{k}.png", img)
        lab = np.zeros(img.shape[:2], np.uint8)
        for i, name in enumerate(("mono", "bi", "four"), start=1):
            lab[m[name]] = i
        cv2.imwrite(str(masks / f"s{k}.png"), lab)
    prof = profile().save(tmp_path / "setup.json")
    return {"images": imgs, "masks": masks, "setup": prof, "root": tmp_path}


def test_detect_with_setup_records_the_profile(cli, data):
    out = data["root"] / "out"
    code, stdout, err = cli(
        "detect", str(data["images"]), "--out", str(out), "--detector", "contrast",
        "--setup", str(data["setup"]), "--no-overlays",
    )  # fmt: skip
    assert code == 0, err
    assert "6 flakes in 2 images" in stdout  # 1L, 2L, 4L per image; residue dropped
    meta = json.loads((out / "images.json").read_text())
    assert meta["setup"]["sha256"] == profile().sha256
    assert meta["detector"]["name"] == "contrast-calibrated"
    res = json.loads((out / "detections.json").read_text())
    assert sorted(r["layer_count"] for r in res) == [1, 1, 2, 2, 4, 4]


def test_detect_bad_setup_writes_nothing(cli, data):
    bad = data["root"] / "bad.json"
    bad.write_text('{"schema": "flakefinder.setup-profile", "schema_version": 99}')
    out = data["root"] / "out"
    code, _, err = cli(
        "detect", str(data["images"]), "--out", str(out), "--detector", "contrast",
        "--setup", str(bad),
    )  # fmt: skip
    assert code == 2 and "schema version 99" in err and not out.exists()
    code, _, err = cli(
        "detect", str(data["images"]), "--out", str(out), "--detector", "contrast",
        "--setup", str(data["setup"]), "--oxide-nm", "285",
    )  # fmt: skip
    assert code == 2 and "285 nm" in err and not out.exists()
    code, _, err = cli(
        "detect", str(data["images"]), "--out", str(out), "--detector", "rulebased",
        "--setup", str(data["setup"]),
    )  # fmt: skip
    assert code == 2 and "--detector terrace" in err and not out.exists()


def test_evaluate_masks_with_setup_exact(cli, data):
    out = data["root"] / "eval"
    code, stdout, err = cli(
        "evaluate", str(data["images"]), "--masks", str(data["masks"]),
        "--setup", str(data["setup"]), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert (m["flakes"], m["detections"], m["correct"]) == (6, 6, 6)
    assert m["recall"] == 1.0 and m["precision"] == 1.0
    assert m["image_precision"] == 1.0 and m["image_recall"] == 1.0
    assert m["setup"]["sha256"] == profile().sha256
    assert "recall 1.000, precision 1.000" in stdout


def test_evaluate_mask_of_wrong_size_is_refused(cli, data):
    cv2.imwrite(str(data["masks"] / "s1.png"), np.zeros((10, 10), np.uint8))
    out = data["root"] / "eval"
    code, _, err = cli(
        "evaluate", str(data["images"]), "--masks", str(data["masks"]),
        "--setup", str(data["setup"]), "--out", str(out),
    )  # fmt: skip
    assert code == 2 and "s1.png is 10 x 10 px" in err and not out.exists()


def test_real_scores_count_only_thin_detections():
    from flakefinder.evaluate.real import TruthImage, score_image

    img, m = scene()

    dets = CalibratedContrastDetector(profile()).detect(img, ctx())
    truth = TruthImage(Path("s.png"), (m["mono"], m["bi"]), (1, 3))
    s = score_image(truth, dets, max_layers=2)  # the 4L detection is not counted
    assert (s.n_truth, s.n_detections, s.n_correct) == (2, 2, 2)
    assert s.layer_pairs == {"1->1": 1, "3->2": 1}


def test_split_indices_distinct_and_complete():
    from flakefinder.errors import DatasetError
    from flakefinder.evaluate.real import split_indices

    splits = split_indices(4, 2, 3, seed=0)
    assert len({tuple(c) for c, _ in splits}) == 3
    for cal, test in splits:
        assert len(cal) == 2 and sorted(cal + test) == [0, 1, 2, 3]
    with pytest.raises(DatasetError, match="at least 3 images"):
        split_indices(2, 2, 1, seed=0)


def test_evaluate_few_shot_protocol(cli, data):
    """Calibrate on one image's outlines (masks mode, no layer numbers), score the other."""
    out = data["root"] / "fewshot"
    code, stdout, err = cli(
        "evaluate", str(data["images"]), "--masks", str(data["masks"]), "--calibrate-on", "1",
        "--splits", "1", "--oxide-nm", "90", "--um-per-px", "0.5", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "few-shot, calibrate on 1" and len(m["splits"]) == 1
    assert m["splits"][0]["flakes"] == 3 and m["recall"]["mean"] == 1.0
    assert "over 1 splits" in stdout


def test_batch_spec_builds_the_calibrated_detector_from_a_file(data):
    from calibrated_helpers import ctx
    from flakefinder.cluster.batch import DetectorRecipe, detect_chunk

    spec = DetectorRecipe("contrast", setup=str(data["setup"]))
    paths = sorted(str(p) for p in data["images"].iterdir())
    res = detect_chunk(paths, spec, ctx())
    assert [sorted(d.layer_count for d in r.detections) for r in res] == [[1, 2, 4], [1, 2, 4]]
