"""Training loop: loss falls, stage freezing, exact resume, transfer learning, CLI (CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from test_train_helpers import make_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from flakefinder.detect.maskrcnn_model import ModelConfig, build_model  # noqa: E402
from flakefinder.train.loop import train  # noqa: E402
from flakefinder.train.recipe import Stage, TrainRecipe, freeze_for_stage  # noqa: E402
from flakefinder.train.transfer import map_predictor_rows  # noqa: E402

TINY = {
    "backbone": "mobilenet_v3_fpn",
    "weights": "none",
    "image_size": 128,
    "batch_size": 2,
    "num_workers": 0,
    "materials": ("graphene", "WTe2"),
    "rois_per_image": 32,
    "rpn_post_nms_train": 100,
    "train_fraction": 0.67,
}


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


def _recipe(stages: tuple[Stage, ...], iterations: int, **kw: object) -> TrainRecipe:
    return TrainRecipe(
        name="tiny", stages=stages, iterations_per_epoch=iterations, **{**TINY, **kw}
    )  # type: ignore[arg-type]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_freeze_for_stage_trainable_sets() -> None:
    mobile = build_model(
        ModelConfig(class_names=("graphene_mono",), backbone="mobilenet_v3_fpn", image_size=128)
    )
    heads = freeze_for_stage(mobile, "heads")
    assert heads and all(n.startswith(("rpn.", "roi_heads.", "backbone.fpn.")) for n in heads)
    assert any(n.startswith("roi_heads.mask_predictor") for n in heads)
    four = freeze_for_stage(mobile, "4+")
    body4 = {n.split(".")[2] for n in four if n.startswith("backbone.body.")}
    assert body4 and "0" not in body4 and set(heads) < set(four)
    everything = freeze_for_stage(mobile, "all")
    assert everything == [n for n, _ in mobile.named_parameters()]

    resnet = build_model(
        ModelConfig(class_names=("graphene_mono",), backbone="resnet50_fpn", image_size=128)
    )
    four = freeze_for_stage(resnet, "4+")
    layers = {n.split(".")[2] for n in four if n.startswith("backbone.body.")}
    assert layers == {"layer3", "layer4"}  # ResNet conv4_x and conv5_x
    assert sum(p.requires_grad for p in resnet.parameters()) == len(four)


def test_loss_falls_when_overfitting_two_images(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_images=3)
    rec = _recipe((Stage("all", "all", 0.02, 4),), 4, augment=False, clip_grad_norm=10.0)
    out = train(rec, data, tmp_path / "model", device="cpu", progress=False, log=None)
    rows = _rows(out / "history.csv")
    assert len(rows) == 4 and rows[-1]["iteration"] == "16"
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    assert last < 0.7 * first, (first, last)
    assert all(r["test_loss"] != "" for r in rows)
    assert (out / "loss.png").stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["completed"] is True and metrics["iterations"] == 16
    assert "training data sha256: `" in (out / "model_card.md").read_text()
    from flakefinder.detect.model_folder import load_model_folder

    model, config = load_model_folder(out)
    assert config.class_names == ("graphene_mono", "graphene_few", "graphene_thick",
                                  "WTe2_mono", "WTe2_few", "WTe2_thick")  # fmt: skip


def test_resume_gives_identical_weights(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_images=4)
    stages = (Stage("heads", "heads", 0.01, 1), Stage("all", "all", 0.005, 2))
    rec = _recipe(stages, 2)
    full = train(rec, data, tmp_path / "full", device="cpu", progress=False, log=None)
    part = tmp_path / "part"
    train(rec, data, part, device="cpu", progress=False, log=None, max_epochs=2)
    ck = torch.load(part / "checkpoint.pt", weights_only=False)
    assert (ck["next_stage"], ck["next_epoch"], ck["step"]) == (1, 1, 4)
    assert json.loads((part / "metrics.json").read_text())["completed"] is False
    log: list[str] = []
    train(rec, data, part, device="cpu", progress=False, log=log.append)
    assert any("resuming" in m and "stage 2, epoch 2, step 4" in m for m in log)
    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(part / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ra, rb = _rows(full / "history.csv"), _rows(part / "history.csv")
    assert [r["train_loss"] for r in ra] == [r["train_loss"] for r in rb]
    assert [r["test_loss"] for r in ra] == [r["test_loss"] for r in rb]
    assert [r["stage"] for r in ra] == ["1", "2", "2"]


def test_transfer_maps_predictor_rows_of_kept_classes() -> None:
    names = (
        "graphene_mono",
        "graphene_few",
        "graphene_thick",
        "WTe2_mono",
        "WTe2_few",
        "WTe2_thick",
    )
    source = build_model(
        ModelConfig(class_names=names, backbone="mobilenet_v3_fpn", image_size=128)
    )
    target_names = ("WTe2_mono", "WTe2_few", "WTe2_thick", "hBN_mono")
    target = build_model(
        ModelConfig(class_names=target_names, backbone="mobilenet_v3_fpn", image_size=128)
    )
    copied, new = map_predictor_rows(target, source.state_dict(), names, target_names)
    assert copied == ["WTe2_mono", "WTe2_few", "WTe2_thick"] and new == ["hBN_mono"]
    s, t = source.state_dict(), target.state_dict()
    w = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(t[w][0], s[w][0]) and torch.equal(t[w][1:4], s[w][4:7])
    b = "roi_heads.box_predictor.bbox_pred.weight"
    assert torch.equal(t[b][4:16], s[b][16:28])
    m = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    assert torch.equal(t[m][3], s[m][6]) and not torch.equal(t[m][4], s[m][0])


@pytest.mark.slow
def test_cli_two_step_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flakefinder.cli.main import create_app

    data = make_dataset(tmp_path / "data", n_images=5)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        'backbone = "mobilenet_v3_fpn"\nweights = "none"\nimage_size = 128\nnum_workers = 0\n'
        'materials = ["graphene", "WTe2"]\nrois_per_image = 32\nrpn_post_nms_train = 100\n'
        '[[stages]]\nlayers = "heads"\nlr = 0.01\nepochs = 1\n'
    )
    app = create_app()
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "m1"), "--recipe",
                                str(recipe), "--iterations", "2", "--device", "cpu"])  # fmt: skip
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "m2"), "--recipe",
                                 str(recipe), "--iterations", "1", "--init-from", str(tmp_path / "m1"),
                                 "--materials", "WTe2", "--device", "cpu"])  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "head rows copied for 3 class(es): WTe2_mono, WTe2_few, WTe2_thick" in second.output
    cfg = json.loads((tmp_path / "m2" / "config.json").read_text())
    assert cfg["class_names"] == ["WTe2_mono", "WTe2_few", "WTe2_thick"]


def test_cli_dataset_stats_and_help(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flakefinder.cli.main import create_app

    data = make_dataset(tmp_path / "data")
    runner = CliRunner()
    res = runner.invoke(
        create_app(), ["dataset-stats", str(data), "--plot", str(tmp_path / "s.png")]
    )
    assert res.exit_code == 0, res.output
    assert "WTe2_mono" in res.output and (tmp_path / "s.png").is_file()
    res = runner.invoke(create_app(), ["train", "--help"])
    assert res.exit_code == 0 and "--init-from" in res.output
