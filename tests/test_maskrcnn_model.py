"""Mask R-CNN builder and model folders: hermetic (no pretrained weights), tiny inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from flakefinder.artifacts import dataset_hash  # noqa: E402
from flakefinder.detect.maskrcnn_model import (  # noqa: E402
    ModelConfig,
    build_model,
    count_parameters,
    set_trainable_stage,
    weighted_loss,
)
from flakefinder.detect.model_folder import (  # noqa: E402
    load_model_folder,
    load_weights_file,
    read_model_config,
    save_model_folder,
)
from flakefinder.errors import ModelError  # noqa: E402

MATS = ["graphene", "hBN"]


def tiny_config(**kw: object) -> ModelConfig:
    base: dict = {"backbone": "mobilenet_v3_fpn", "image_size": 128, "box_detections_per_img": 10}
    base.update(kw)
    return ModelConfig.for_materials(MATS, **base)


@pytest.fixture(scope="module")
def tiny_model() -> tuple:
    torch.manual_seed(0)
    cfg = tiny_config(box_score_thresh=0.0)
    return build_model(cfg, weights="none").eval(), cfg


def fixed_input() -> list:
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 128, 128, generator=g), torch.rand(3, 128, 128, generator=g)]


def test_config_defaults_and_round_trip() -> None:
    cfg = tiny_config()
    assert cfg.class_names[:3] == ("graphene_mono", "graphene_few", "graphene_thick")
    assert cfg.num_classes == 7
    assert cfg.min_size == cfg.max_size == 128
    assert cfg.box_representation_size == 256 and cfg.mask_head_channels == (128, 128)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    paper = ModelConfig.for_materials(MATS)
    assert paper.backbone == "resnet101_fpn" and paper.image_size == 1024
    assert paper.box_representation_size == 1024


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "vgg"}, "unknown backbone"),
        ({"image_size": 100}, "multiple of 32"),
        ({"class_names": ("graphene_huge",)}, "thickness class"),
        ({"class_names": ()}, "at least one"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    args: dict = {"class_names": ("graphene_mono",)}
    args.update(kwargs)
    with pytest.raises(ModelError, match=message):
        ModelConfig(**args)


def test_forward_batch_eval_outputs(tiny_model: tuple) -> None:
    model, cfg = tiny_model
    with torch.inference_mode():
        outs = model(fixed_input())
    assert len(outs) == 2
    for o in outs:
        n = o["boxes"].shape[0]
        assert o["boxes"].shape == (n, 4) and o["scores"].shape == (n,)
        assert o["masks"].shape == (n, 1, 128, 128)
        assert n <= cfg.box_detections_per_img
        if n:
            assert int(o["labels"].min()) >= 1 and int(o["labels"].max()) <= 6
            assert float(o["masks"].min()) >= 0.0 and float(o["masks"].max()) <= 1.0


def test_train_mode_losses_and_weighting(tiny_model: tuple) -> None:
    model, cfg = tiny_model
    model.train()
    try:
        mask = torch.zeros(1, 128, 128, dtype=torch.uint8)
        mask[0, 30:60, 40:90] = 1
        target = {
            "boxes": torch.tensor([[40.0, 30.0, 90.0, 60.0]]),
            "labels": torch.tensor([2]),
            "masks": mask,
        }
        losses = model([fixed_input()[0]], [target])
    finally:
        model.eval()
    assert set(losses) == {
        "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"
    }  # fmt: skip
    total = weighted_loss(losses)
    expected = 0.6 * losses["loss_classifier"] + sum(
        v for k, v in losses.items() if k != "loss_classifier"
    )
    assert torch.allclose(total, expected)
    only_mask = weighted_loss(
        losses, {"cls": 0, "box": 0, "loss_objectness": 0, "loss_rpn_box_reg": 0}
    )
    assert torch.allclose(only_mask, losses["loss_mask"])


def test_trainable_stages() -> None:
    model = build_model(tiny_config(), weights="none")
    counts = {}
    for stage in ("heads", "4+", "all"):
        set_trainable_stage(model, stage)
        counts[stage] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        body = sum(p.numel() for p in model.backbone.body.parameters() if p.requires_grad)
        if stage == "heads":
            assert body == 0
    assert counts["heads"] < counts["4+"] < counts["all"] == count_parameters(model)
    with pytest.raises(ValueError):
        set_trainable_stage(model, "5+")


def test_resnet50_builds_with_paper_heads() -> None:
    cfg = ModelConfig.for_materials(MATS, backbone="resnet50_fpn", image_size=128)
    model = build_model(cfg, weights="none")
    assert model.roi_heads.box_predictor.cls_score.out_features == 7
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 7
    assert 43_000_000 < count_parameters(model) < 45_000_000


@pytest.mark.slow
def test_resnet101_builds() -> None:
    cfg = ModelConfig.for_materials(MATS, backbone="resnet101_fpn", image_size=128)
    assert count_parameters(build_model(cfg, weights="none")) > 60_000_000


def test_coco_weights_missing_is_reported_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with caplog.at_level(logging.WARNING):
        build_model(tiny_config(), weights="coco")
    assert "COCO-pretrained weights for mobilenet_v3_fpn not found in" in caplog.text
    assert not (tmp_path / "hub").exists()


def test_transfer_from_folder_skips_predictors(tiny_model: tuple, tmp_path: Path) -> None:
    model, _ = tiny_model
    save_model_folder(tmp_path / "src", model, tiny_model[1], dtype="float32")
    other = ModelConfig.for_materials(["WTe2"], backbone="mobilenet_v3_fpn", image_size=128)
    new = build_model(other, weights=tmp_path / "src")
    a, b = model.state_dict(), new.state_dict()
    assert torch.equal(a["backbone.body.0.0.weight"], b["backbone.body.0.0.weight"])
    assert b["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4


def test_save_load_fp32_identical(tiny_model: tuple, tmp_path: Path) -> None:
    model, cfg = tiny_model
    folder = save_model_folder(
        tmp_path / "m", model, cfg, metrics={"mAP50": 0.5}, training_data_hash="abc123",
        recipe={"stages": 4}, dtype="float32",
    )  # fmt: skip
    names = {p.name for p in folder.iterdir()}
    assert names == {"weights.pt", "config.json", "class_map.json", "metrics.json", "model_card.md"}
    card = (folder / "model_card.md").read_text()
    assert "abc123" in card and "mAP50" in card and "stages" in card
    loaded, cfg2 = load_model_folder(folder)
    assert cfg2 == cfg and not loaded.training
    x = fixed_input()
    with torch.inference_mode():
        ref, got = model(x), loaded(x)
    for r, g in zip(ref, got, strict=True):
        for key in ("boxes", "scores", "labels", "masks"):
            assert torch.equal(r[key], g[key])
    bare = load_weights_file(folder / "weights.pt", cfg)
    with torch.inference_mode():
        assert torch.equal(bare(x)[0]["scores"], ref[0]["scores"])


def test_save_load_fp16_close(tiny_model: tuple, tmp_path: Path) -> None:
    model, cfg = tiny_model
    folder = save_model_folder(tmp_path / "m16", model, cfg, dtype="float16")
    loaded, _ = load_model_folder(folder)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), k
    fp32 = save_model_folder(tmp_path / "m32", model, cfg, dtype="float32")
    size16 = (folder / "weights.pt").stat().st_size
    assert size16 < 0.55 * (fp32 / "weights.pt").stat().st_size


def test_model_folder_errors(tiny_model: tuple, tmp_path: Path) -> None:
    model, cfg = tiny_model
    with pytest.raises(ModelError, match="model folder not found"):
        load_model_folder(tmp_path / "nope")
    folder = save_model_folder(tmp_path / "m", model, cfg, dtype="float16")
    (folder / "weights.pt").unlink()
    with pytest.raises(ModelError, match="weights.pt"):
        load_model_folder(folder)
    folder = save_model_folder(tmp_path / "m", model, cfg, dtype="float16")
    (folder / "class_map.json").unlink()
    with pytest.raises(ModelError, match="class_map.json"):
        load_model_folder(folder)


def test_class_map_mismatch(tiny_model: tuple, tmp_path: Path) -> None:
    model, cfg = tiny_model
    folder = save_model_folder(tmp_path / "m", model, cfg, dtype="float16")
    three = ModelConfig.for_materials(["graphene"], backbone="mobilenet_v3_fpn", image_size=128)
    data = three.to_dict()
    (folder / "config.json").write_text(json.dumps(data))
    (folder / "class_map.json").write_text(json.dumps({"names": data["class_names"]}))
    with pytest.raises(ModelError, match="class map has 3 classes but weights have 6"):
        load_model_folder(folder)
    (folder / "class_map.json").write_text(json.dumps({"names": ["graphene_mono"]}))
    with pytest.raises(ModelError, match="disagrees"):
        read_model_config(folder)
    with pytest.raises(ModelError, match="class map has 3 classes but weights have 6"):
        save_model_folder(tmp_path / "bad", model, three)


def test_dataset_hash_stable(tmp_path: Path) -> None:
    for root in (tmp_path / "a", tmp_path / "b"):
        (root / "images").mkdir(parents=True)
        (root / "annotations.json").write_text("{}")
        (root / "images" / "1.png").write_bytes(b"one")
        (root / "images" / "2.png").write_bytes(b"two")
    ha = dataset_hash([tmp_path / "a" / "annotations.json", tmp_path / "a" / "images"])
    hb = dataset_hash([tmp_path / "b" / "images", tmp_path / "b" / "annotations.json"])
    assert ha == hb and len(ha) == 64
    (tmp_path / "b" / "images" / "2.png").write_bytes(b"TWO")
    assert dataset_hash([tmp_path / "b" / "annotations.json", tmp_path / "b" / "images"]) != ha
    with pytest.raises(FileNotFoundError):
        dataset_hash([tmp_path / "missing"])


def test_download_pretrained_fills_the_hub_cache_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flakefinder.detect import maskrcnn_model
    from flakefinder.errors import ModelError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fetched: list[str] = []

    def fake_download(url: str, dst: str, progress: bool = True) -> None:
        fetched.append(url)
        Path(dst).write_bytes(b"x")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    paths = maskrcnn_model.download_pretrained("resnet50_fpn", "coco")
    assert [p.parent for p in paths] == [tmp_path / "checkpoints"] * 2  # COCO Mask R-CNN + ImageNet
    assert all(p.is_file() for p in paths) and len(fetched) == 2
    maskrcnn_model.download_pretrained("resnet50_fpn", "coco")
    assert len(fetched) == 2  # cached: nothing fetched again

    def offline(url: str, dst: str, progress: bool = True) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError, match="cannot download"):
        maskrcnn_model.download_pretrained("mobilenet_v3_fpn", "coco")
