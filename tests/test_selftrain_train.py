"""Self-training in chunks (issue 16): exact resume, the CPU-hours account, the model card, the
held-out pictures, tiled inference of the result and the command line (tiny CPU runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flakefinder.imaging import save_image
from terrace_helpers import scene

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cli_helpers import run_cli  # noqa: E402
from flakefinder.detect.maskrcnn import MaskRCNNDetector  # noqa: E402
from flakefinder.detect.net_terrace import NetTerraceDetector  # noqa: E402
from flakefinder.detect.registry import create_detector  # noqa: E402
from flakefinder.domain import ImagingContext  # noqa: E402
from flakefinder.errors import DatasetError  # noqa: E402
from flakefinder.evaluate.real_training import training_pictures  # noqa: E402
from flakefinder.train.recipe import load_recipe  # noqa: E402
from flakefinder.train.selftrain.run import run_selftrain  # noqa: E402

TINY = """name = "tiny_selftrain"
backbone = "mobilenet_v3_fpn"
weights = "none"
image_size = 128
tile_um_per_px = 0.375
class_agnostic = true
batch_size = 1
iterations_per_epoch = 2
num_workers = 0
max_test_images = 1
rois_per_image = 16
rpn_post_nms_train = 50
train_fraction = 0.67
materials = ["graphene"]
[selftrain]
synth_images = 2
tile_overlap_px = 16
init_from = ""
[[stages]]
layers = "heads"
lr = 0.01
epochs = 1
[[stages]]
layers = "all"
lr = 0.005
epochs = 1
"""


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pics") / "lab"
    for seed in range(3):
        save_image(root / f"p{seed}.png", scene(seed=seed).image)
    return root


def _recipe(tmp: Path) -> Path:
    path = tmp / "tiny.toml"
    path.write_text(TINY)
    return path


def _chunk(out: Path, pictures: Path, recipe: Path, **kw: object) -> dict:
    return run_selftrain(load_recipe(recipe), out, folders=[pictures], real_root=None,
                         um_per_px=0.2, oxide_nm=90.0, material="graphene", device="cpu",
                         command="flakefinder train ...", log=lambda _m: None, **kw)  # type: ignore[arg-type]  # fmt: skip


def _losses(folder: Path) -> list[tuple[str, str]]:
    import csv

    with (folder / "history.csv").open() as f:
        return [(r["train_loss"], r["test_loss"]) for r in csv.DictReader(f)]


def _state(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def test_chunks_resume_exactly_and_add_up(tmp_path: Path, pictures: Path) -> None:
    recipe = _recipe(tmp_path)
    whole = _chunk(tmp_path / "whole", pictures, recipe)
    assert len(whole["chunks"]) == 1 and whole["chunks"][0]["steps_after"] == 4
    part = tmp_path / "part"
    ledgers = [_chunk(part, pictures, recipe, max_steps=3), _chunk(part, pictures, recipe, max_steps=3)]
    a, b = _state(tmp_path / "whole"), _state(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert _losses(tmp_path / "whole") == _losses(part)
    ledger = ledgers[-1]
    chunks = ledger["chunks"]
    assert [(c["steps_before"], c["steps_after"], c["completed"]) for c in chunks] == [
        (0, 3, False), (3, 4, True)]  # fmt: skip
    assert chunks[1]["data_build_cpu_s"] == 0.0  # the dataset was built once and reused
    assert ledger["cpu_hours"] == pytest.approx(sum(c["cpu_s"] for c in chunks) / 3600, abs=1e-4)
    assert all(c["cpu_s"] > 0 and c["device"] == "cpu" for c in chunks)
    # what it learned from, and what it never saw
    seen = training_pictures(part)
    assert seen is not None
    held = seen.held_out["lab"]
    assert len(held) == 1 and seen.trained["lab"] | held == {"p0.png", "p1.png", "p2.png"}
    coco = json.loads((part / "data" / "annotations.json").read_text())
    files = {im["source_file"] for im in coco["images"] if im["source"] == "terrace"}
    assert files and not files & held
    assert {im["source"] for im in coco["images"]} == {"terrace", "synth"}
    card = (part / "model_card.md").read_text()
    assert card.count("## Self-training") == 1 and "CPU-hours in 2 chunk(s)" in card
    assert "terrace detector" in card and ledger["data"]["sha256"] in card
    config = json.loads((part / "config.json").read_text())
    assert config["class_agnostic"] and config["tile_um_per_px"] == 0.375


def test_a_checkpoint_is_not_continued_on_other_data(tmp_path: Path, pictures: Path) -> None:
    recipe = _recipe(tmp_path)
    out = tmp_path / "m"
    _chunk(out, pictures, recipe, max_steps=1)
    more = tmp_path / "more"
    more.mkdir()
    for p in pictures.iterdir():
        (more / p.name).write_bytes(p.read_bytes())
    save_image(more / "p9.png", scene(seed=9).image)
    with pytest.raises(DatasetError, match="other data"):
        run_selftrain(load_recipe(recipe), out, folders=[more], real_root=None, um_per_px=0.2,
                      oxide_nm=90.0, material="graphene", device="cpu", log=lambda _m: None)  # fmt: skip
    fresh = run_selftrain(load_recipe(recipe), out, folders=[more], real_root=None, um_per_px=0.2,
                          oxide_nm=90.0, material="graphene", device="cpu", resume=False,
                          max_steps=1, log=lambda _m: None)  # fmt: skip
    assert len(fresh["chunks"]) == 1  # a new training: a new account


def test_the_trained_model_runs_tiled_and_classifies_per_terrace(tmp_path: Path, pictures: Path) -> None:
    out = tmp_path / "m"
    _chunk(out, pictures, _recipe(tmp_path), max_steps=1)
    seg = MaskRCNNDetector.from_folder(out, device="cpu", segment_only=True, score_threshold=0.0)
    image = scene(seed=5).image
    ((rgb, segs),) = seg.segment_batch([image], um_per_px=0.2)
    assert rgb.shape == image.shape and 0 < len(segs) <= 100
    assert all(s.mask.shape == image.shape[:2] and s.mask.any() for s in segs)
    det = create_detector("maskrcnn", model=out, options={"device": "cpu"})
    assert isinstance(det, NetTerraceDetector) and det.needs_calibration
    found = det.detect_batch([image], ImagingContext(um_per_px=0.2))[0]
    assert all(d.material == "graphene" and d.mask is not None for d in found)
    union = create_detector("union", model=out, options={"device": "cpu"})
    assert union.name == "union" and isinstance(union.detect(image, ImagingContext(um_per_px=0.2)), list)


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
         ) -> tuple[int, str, str]:  # fmt: skip
    return run_cli(monkeypatch, capsys, *args)


def test_command_line(tmp_path: Path, pictures: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    recipe = str(_recipe(tmp_path))
    out = tmp_path / "cli"
    code, text, err = _cli(monkeypatch, capsys, "train", "--recipe", recipe, "--out", str(out),
                           "--unlabelled", str(pictures), "--um-per-px", "0.2",
                           "--device", "cpu", "--max-minutes", "0")  # fmt: skip
    assert code == 0, err
    assert "pseudo-labelling lab: 2 pictures (held out: 1)" in text
    assert "self-training so far:" in text and "CPU-hours" in text
    ledger = json.loads((out / "selftrain.json").read_text())
    assert ledger["continue_with"] == (f"flakefinder train --recipe {recipe} --out {out} "
                                       f"--unlabelled {pictures} --um-per-px 0.2 --max-minutes 20")  # fmt: skip
    code, _, err = _cli(monkeypatch, capsys, "train", str(pictures), "--recipe", recipe,
                        "--out", str(tmp_path / "x"))  # fmt: skip
    assert code == 2 and "builds its own dataset" in err
    code, _, err = _cli(monkeypatch, capsys, "train", "--out", str(tmp_path / "y"),
                        "--recipe", "cpu_small")  # fmt: skip
    assert code == 2 and "DATASET is missing" in err
    code, _, err = _cli(monkeypatch, capsys, "train", str(pictures), "--out", str(tmp_path / "z"),
                        "--recipe", "cpu_small", "--unlabelled", str(pictures))  # fmt: skip
    assert code == 2 and "need a self-training recipe" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
    assert np.isfinite(ledger["cpu_hours"])
