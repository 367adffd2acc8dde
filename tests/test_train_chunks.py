"""Training in short chunks, progress, recipe overrides, fine-tuning inputs and bad input (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_train_helpers import make_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cli_helpers import run_cli  # noqa: E402
from flakefinder.errors import DatasetError, ModelError  # noqa: E402
from flakefinder.train import steps  # noqa: E402
from flakefinder.train.budget import StepBudget  # noqa: E402
from flakefinder.train.loop import train  # noqa: E402
from flakefinder.train.progress import TrainProgress, format_duration  # noqa: E402
from flakefinder.train.publish import partial_dir, publish_folder  # noqa: E402
from flakefinder.train.recipe import RecipeError, Stage, TrainRecipe, load_recipe  # noqa: E402

TINY = {
    "backbone": "mobilenet_v3_fpn",
    "weights": "none",
    "image_size": 64,
    "batch_size": 1,
    "num_workers": 0,
    "materials": ("graphene", "WTe2"),
    "rois_per_image": 16,
    "rpn_post_nms_train": 50,
    "train_fraction": 0.67,
    "max_test_images": 1,
}
TINY_TOML = (
    'backbone = "mobilenet_v3_fpn"\nweights = "none"\nimage_size = 64\nbatch_size = 1\n'
    'num_workers = 0\nmaterials = ["graphene", "WTe2"]\nrois_per_image = 16\n'
    "rpn_post_nms_train = 50\nmax_test_images = 1\niterations_per_epoch = 2\n"
    '[[stages]]\nlayers = "heads"\nlr = 0.01\nepochs = 1\n'
    '[[stages]]\nlayers = "all"\nlr = 0.005\nepochs = 3\n'
)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    return run_cli(monkeypatch, capsys, *args)


def test_chunked_runs_give_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_images=4, width=64, height=48)
    rec = TrainRecipe(name="tiny", stages=(Stage("heads", "heads", 0.01, 1),
                      Stage("all", "all", 0.005, 1)), iterations_per_epoch=3, **TINY)  # type: ignore[arg-type]  # fmt: skip
    full = train(rec, data, tmp_path / "full", device="cpu", progress=False, log=None)
    part = tmp_path / "part"
    logs: list[str] = []
    calls = 0
    while True:
        calls += 1
        train(rec, data, part, device="cpu", progress=False, log=logs.append, max_steps=2)
        if json.loads((part / "metrics.json").read_text())["completed"]:
            break
        assert calls < 5
    # steps 1-2 | 3 (epoch end), 4 | 5, 6: stopped mid-epoch twice
    assert calls == 3
    assert any("iteration 2/3 of the epoch" in m for m in logs), logs
    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(part / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ha = (full / "history.csv").read_text().splitlines()
    hb = (part / "history.csv").read_text().splitlines()
    # every column but the last ('seconds') is identical
    assert [r.rsplit(",", 1)[0] for r in ha] == [r.rsplit(",", 1)[0] for r in hb]
    # a finished training says so and leaves the model folder alone
    stamp = (part / "weights.pt").stat().st_mtime_ns
    logs.clear()
    train(rec, data, part, device="cpu", progress=False, log=logs.append)
    assert any("already finished" in m and "2 stage(s)" in m for m in logs), logs
    assert not any("stage 3" in m for m in logs)
    assert (part / "weights.pt").stat().st_mtime_ns == stamp


def test_budget_predicts_the_next_step() -> None:
    now = [0.0]
    b = StepBudget(seconds=10.0, max_steps=None, t_start=0.0, clock=lambda: now[0])
    assert b.allows_step(ends_epoch=True)  # the first step always runs
    now[0] = 4.0
    b.note_step(4.0)
    b.save_s, b.eval_s = 1.0, 3.0
    assert b.allows_step(ends_epoch=False)  # 4 + 4 + 1 + 0 publish <= 10
    b.publish_s = 1.0
    assert not b.allows_step(ends_epoch=True)  # 4 + 4 + 1 + 1 + 3 > 10
    assert b.allows_step(ends_epoch=False)
    limited = StepBudget(seconds=None, max_steps=1, t_start=0.0)
    limited.note_step(0.1)
    assert not limited.allows_step(ends_epoch=False)


def test_progress_lines_show_loss_and_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    with TrainProgress(10, 2, log=lines.append, bar=True, every_s=5.0, clock=lambda: now[0]) as p:
        for _ in range(4):
            now[0] += 2.0
            p.step(label="epoch 1/5 (heads)", loss=1.5)
    # first step, then one line per 5 s: steps 3 and 6 (t = 2, 8)
    assert lines == [
        "step 3/10 (epoch 1/5 (heads)): loss 1.5000, 2.00 s/step, ETA 14 s",
        "step 6/10 (epoch 1/5 (heads)): loss 1.5000, 2.00 s/step, ETA 8 s",
    ]
    assert format_duration(7500) == "2 h 05 min" and format_duration(61) == "1 min 1 s"


def test_workers_never_exceed_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "available_cores", lambda: 2)
    assert steps.loader_workers(4) == 2 and steps.loader_workers(1) == 1
    assert steps.loader_workers(0) == 0


def test_recipe_overrides_and_auto_choice() -> None:
    from flakefinder.cli.train import _recipe

    paper = load_recipe("paper")
    one = paper.with_overrides(n_stages=1, epochs=2, iterations_per_epoch=5)
    assert [(s.name, s.epochs) for s in one.stages] == [("heads", 2)]
    assert one.iterations_per_epoch == 5
    with pytest.raises(RecipeError, match="has 4 stage"):
        paper.with_overrides(n_stages=5)
    rec = _recipe("auto", "cpu", stages=2, epochs=None, iterations=3, batch_size=None)
    assert rec.name == "cpu_small" and len(rec.stages) == 2 and rec.iterations_per_epoch == 3
    assert _recipe("auto", "cuda", stages=None, epochs=None, iterations=None,
                   batch_size=None).name == "paper"  # fmt: skip


def test_publish_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "checkpoint.pt").write_text("ck")
    (out / "weights.pt").write_text("old")

    def broken(folder: Path) -> None:
        (folder / "weights.pt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        publish_folder(out, broken)
    assert (out / "weights.pt").read_text() == "old" and not partial_dir(out).exists()
    publish_folder(out, lambda folder: (folder / "weights.pt").write_text("new"))
    assert (out / "weights.pt").read_text() == "new"
    assert (out / "checkpoint.pt").read_text() == "ck"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_cli_max_minutes_resumes_and_bad_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "data", n_images=4, width=64, height=48)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_TOML)
    out = tmp_path / "m"
    args = ["train", str(data), "--out", str(out), "--recipe", str(recipe), "--device", "cpu",
            "--stages", "1", "--max-minutes", "0.000001"]  # fmt: skip
    code, text, _ = _run(monkeypatch, capsys, *args)
    assert code == 0, text
    assert "stage 1/1 heads" in text and "step 1/2 (epoch 1/1 (heads)): loss" in text
    assert "stopping at step 1" in text and "run the same command to continue" in text
    code, text, _ = _run(monkeypatch, capsys, *args)
    assert code == 0 and "resuming" in text and "epoch 1/1: train" in text, text
    assert json.loads((out / "metrics.json").read_text())["completed"] is True
    code, text, _ = _run(monkeypatch, capsys, *args)
    assert code == 0 and "already finished: 1 epoch(s) of 1 stage(s), 2 steps" in text, text
    # a truncated checkpoint: exit 2, one message, nothing written
    ck = out / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    code, _, err = _run(monkeypatch, capsys, *args)
    assert code == 2 and "truncated or corrupt" in err and "--no-resume" in err, err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before


def _coco(root: Path, categories: list[dict[str, object]], cat_id: int) -> Path:
    data = make_dataset(root, n_images=3, width=64, height=48)
    coco = json.loads((data / "annotations.json").read_text())
    coco["categories"] = categories
    for a in coco["annotations"]:
        a["category_id"] = cat_id
    (data / "annotations.json").write_text(json.dumps(coco))
    return data


def test_finetune_set_with_empty_or_mismatched_class_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _coco(tmp_path / "empty", [], 1)
    coco = json.loads((empty / "annotations.json").read_text())
    coco["annotations"] = []
    (empty / "annotations.json").write_text(json.dumps(coco))
    code, _, err = _run(monkeypatch, capsys, "train", str(empty), "--out", str(tmp_path / "a"),
                        "--init-from", "default", "--device", "cpu")  # fmt: skip
    assert code == 2 and "class map ('categories') is empty" in err, err
    assert not (tmp_path / "a").exists()
    other = _coco(tmp_path / "other", [{"id": 1, "name": "WSe2_mono"}], 1)
    code, _, err = _run(monkeypatch, capsys, "train", str(other), "--out", str(tmp_path / "b"),
                        "--init-from", "default", "--device", "cpu")  # fmt: skip
    assert code == 2 and "WSe2_mono" in err and "not in the class map" in err, err
    assert not (tmp_path / "b").exists()
    with pytest.raises(DatasetError, match="match none"):
        train(TrainRecipe(**TINY), other, tmp_path / "c", materials=["graphene"],  # type: ignore[arg-type]
              device="cpu", log=None)  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_finetune_default_from_labelstudio_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flakefinder.annotate import labelstudio
    from flakefinder.annotate.shapes import LabeledImage, LabeledShape

    data = make_dataset(tmp_path / "data", n_images=3, width=64, height=48)
    coco = json.loads((data / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = []
    for im in coco["images"]:
        shapes = []
        for a in coco["annotations"]:
            if a["image_id"] == im["id"]:
                x, y, w, h = a["bbox"]
                box = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
                shapes.append(LabeledShape(names[a["category_id"]], box))
        images.append(LabeledImage(im["file_name"], 64, 48, tuple(shapes)))
    tasks = labelstudio.to_tasks(images)
    for t in tasks:  # a person accepted every pre-annotation
        t["annotations"] = [{"result": t["predictions"][0]["result"], "was_cancelled": False}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_TOML)
    code, text, err = _run(
        monkeypatch, capsys, "train", str(export), "--images", str(data / "images"), "--out",
        str(tmp_path / "m"), "--init-from", "default", "--recipe", str(recipe), "--stages", "1",
        "--iterations", "1", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "converted to a COCO dataset" in text and "transfer learning from" in text
    assert "step 1/1 (epoch 1/1 (heads))" in text
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert len(cfg["class_names"]) == 12  # the shipped model's class map is kept


def test_checkpoint_errors_are_model_errors(tmp_path: Path) -> None:
    from flakefinder.train.checkpoint import load_checkpoint

    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x80\x04junk")
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_checkpoint(bad)
    torch.save({"model": {}}, bad)
    with pytest.raises(ModelError, match="not a flakefinder training checkpoint"):
        load_checkpoint(bad)
