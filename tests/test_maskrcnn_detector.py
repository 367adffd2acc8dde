"""MaskRCNNDetector, overlays and the `flakefinder detect` CLI on a tiny random model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from typer.testing import CliRunner  # noqa: E402

from flakefinder.cli.main import create_app  # noqa: E402
from flakefinder.detect.maskrcnn import MaskRCNNDetector, mask_to_polygon  # noqa: E402
from flakefinder.detect.maskrcnn_model import ModelConfig, build_model  # noqa: E402
from flakefinder.detect.model_folder import save_model_folder  # noqa: E402
from flakefinder.detect.overlay import draw_detections  # noqa: E402
from flakefinder.domain import Detection, Detector, ImagingContext, LayerClass  # noqa: E402
from flakefinder.errors import ModelError  # noqa: E402
from flakefinder.imaging import save_image  # noqa: E402

CTX = ImagingContext(materials=("graphene",))


@pytest.fixture(scope="module")
def tiny() -> tuple:
    torch.manual_seed(0)
    cfg = ModelConfig.for_materials(
        ["graphene"], backbone="mobilenet_v3_fpn", image_size=128,
        box_score_thresh=0.0, box_detections_per_img=3,
    )  # fmt: skip
    return build_model(cfg, weights="none").eval(), cfg


@pytest.fixture(scope="module")
def folder(tiny: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, cfg = tiny
    return save_model_folder(tmp_path_factory.mktemp("model") / "tiny", model, cfg, dtype="float16")


def test_mask_to_polygon_largest_contour() -> None:
    m = np.zeros((40, 40), dtype=bool)
    m[5:25, 5:25] = True
    m[30:33, 30:33] = True
    poly = mask_to_polygon(m)
    assert poly is not None and sorted(poly) == [(5.0, 5.0), (5.0, 24.0), (24.0, 5.0), (24.0, 24.0)]
    assert mask_to_polygon(np.zeros((10, 10), dtype=bool)) is None


@pytest.mark.parametrize(
    "image",
    [
        np.full((96, 160, 3), 120, dtype=np.uint8),
        np.full((96, 160), 120, dtype=np.uint8),  # grey
        np.full((96, 160, 4), 120, dtype=np.uint8),  # RGBA
        np.full((96, 160, 3), 30000, dtype=np.uint16),  # 16-bit
    ],
    ids=["rgb", "grey", "rgba", "uint16"],
)
def test_detect_any_image_type(tiny: tuple, image: np.ndarray) -> None:
    model, cfg = tiny
    det = MaskRCNNDetector(model, cfg, score_threshold=0.0, refine_layers=False)
    assert isinstance(det, Detector) and det.name == "maskrcnn"
    found = det.detect(image, CTX)
    for d in found:
        assert d.material == "graphene" and isinstance(d.layer_class, LayerClass)
        x0, y0, x1, y1 = d.bbox_px
        assert 0 <= x0 <= x1 <= 160 and 0 <= y0 <= y1 <= 96
        assert d.mask is not None and d.mask.shape == (96, 160)
        assert d.area_px == float(d.mask.sum()) > 0 and len(d.polygon_px) >= 3


def test_batch_matches_single(tiny: tuple) -> None:
    model, cfg = tiny
    det = MaskRCNNDetector(model, cfg, score_threshold=0.0, refine_layers=False)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    batch = det.detect_batch(imgs, CTX)
    assert len(batch) == 2
    single = det.detect(imgs[1], CTX)
    assert [d.category for d in single] == [d.category for d in batch[1]]
    np.testing.assert_allclose(
        [d.confidence for d in single], [d.confidence for d in batch[1]], atol=1e-4
    )


def test_from_folder_and_refine(folder: Path) -> None:
    det = MaskRCNNDetector.from_folder(folder, device="cpu", score_threshold=0.0)
    assert det.version.startswith("mobilenet_v3_fpn-") and len(det.version) == 17 + 12
    img = np.random.default_rng(1).integers(60, 200, (128, 128, 3), dtype=np.uint8)
    found = det.detect(img, CTX)
    assert found, "score threshold 0 keeps the model's detections"
    from flakefinder.detect import refine  # noqa: F401  (refinement is wired when present)

    assert all(d.layer_count is not None for d in found)
    with pytest.raises(ModelError):
        MaskRCNNDetector.from_folder(folder.parent / "missing")


def test_overlay_draws_only_where_expected() -> None:
    img = np.full((60, 80, 3), 128, dtype=np.uint8)
    d = Detection(
        material="graphene", layer_class=LayerClass.MONO, confidence=0.9,
        polygon_px=((20.0, 20.0), (50.0, 20.0), (50.0, 40.0), (20.0, 40.0)),
        bbox_px=(20.0, 20.0, 50.0, 40.0), area_px=600.0,
    )  # fmt: skip
    out = draw_detections(img, [d])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[30, 35], img[30, 35])  # tinted inside
    assert np.array_equal(out[55, 75], img[55, 75])  # untouched far away
    assert np.array_equal(draw_detections(img, []), img)


def test_detect_cli_end_to_end(folder: Path, tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    rng = np.random.default_rng(2)
    save_image(imgs / "a.png", rng.integers(60, 200, (100, 140, 3), dtype=np.uint8))
    save_image(imgs / "sub" / "b.png", rng.integers(60, 200, (128, 128, 3), dtype=np.uint8))
    (imgs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    args = ["detect", str(imgs), "--out", str(out), "--detector", "maskrcnn",
            "--model", str(folder), "--score", "0",
            "--device", "cpu", "--materials", "graphene", "--batch-size", "2"]  # fmt: skip
    result = CliRunner().invoke(create_app(), args)
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output and "skipped" in result.output
    results = json.loads((out / "detections.json").read_text())
    meta = json.loads((out / "images.json").read_text())
    assert [Path(i["file_name"]).name for i in meta["images"]] == ["a.png", "b.png"]
    assert meta["categories"][0] == {"id": 1, "name": "graphene_mono"}
    assert results, "score 0 keeps detections"
    for r in results:
        assert set(r) >= {"image_id", "category_id", "segmentation", "bbox", "score", "layer_count"}
        assert isinstance(r["segmentation"]["counts"], str) and len(r["bbox"]) == 4
    with (out / "flakes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    assert {p.name for p in (out / "overlays").iterdir()} == {"a.png", "b.png"}
    from pycocotools import mask as mask_utils

    seg = results[0]["segmentation"]
    assert mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).sum() > 0


def test_detect_cli_without_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flakefinder.detect.maskrcnn as mr

    monkeypatch.setattr(mr, "default_model_folder", lambda: tmp_path / "absent")
    save_image(tmp_path / "a.png", np.zeros((16, 16, 3), dtype=np.uint8))
    result = CliRunner().invoke(
        create_app(),
        ["detect", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--detector", "maskrcnn"],
    )
    assert result.exit_code != 0
    assert "--detector contrast" in str(result.exception) + result.output


def test_exposure_normalisation_gives_the_network_the_same_picture(tiny: tuple) -> None:
    model, cfg = tiny
    det = MaskRCNNDetector(model, cfg, refine_layers=False, exposure_target_grey=129.0)
    rng = np.random.default_rng(0)
    bright = np.clip(rng.normal((127, 122, 158), 2.0, (64, 64, 3)), 0, 255).astype(np.uint8)
    bright[20:40, 20:40] = (110, 100, 150)  # a flake
    dim = (bright.astype(np.float32) * 0.5).round().astype(np.uint8)  # lamp at half intensity
    a, b = det._exposed(bright), det._exposed(dim)
    for im in (a, b):
        assert abs(np.median(im.mean(axis=2)) - 129.0) <= 1.5
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3  # same picture up to rounding
    off = MaskRCNNDetector(model, cfg, refine_layers=False, exposure_target_grey=None)
    assert off._exposed(dim) is dim
