"""Issue 17, "Second newcomer pass": the command-line trip-ups, each as the user ran it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from flakefinder.annotate import labelstudio
from flakefinder.cli.main import main

UUID_NAMES = (
    "14f99233-cc7c-42ea-b7e3-316f5158e0f7.png",
    "28f74d1c-31f9-4b18-b721-7563245faee1.png",
)


def run(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str, str]:
    """``flakefinder ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["flakefinder", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture(scope="module")
def synth_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 256 px synthetic graphene views (with flakes the contrast detector finds)."""
    from flakefinder.synth.coco import export_coco

    root = tmp_path_factory.mktemp("synth")
    export_coco(root, n_images=2, materials=["graphene"], width_px=256, height_px=256, seed=3)
    return root / "images"


# -- 1. Label Studio import of images whose own names look like an upload prefix -------------


def test_upload_prefix_is_stripped_only_when_the_rest_names_a_file() -> None:
    name = UUID_NAMES[0]
    url = f"/data/local-files/?d=images/{name}"
    assert labelstudio._file_name(url, {name: (1, 1)}) == name
    assert labelstudio._file_name(url) == name  # local files are never renamed by Label Studio
    # an uploaded copy of the same file: prefix added by Label Studio, removed again
    assert labelstudio._file_name(f"/data/upload/4/0123abcd-{name}", {name: (1, 1)}) == name
    # an exact match wins over a stripped one
    both = {"0123abcd-x.png": (1, 1), "x.png": (1, 1)}
    assert labelstudio._file_name("/data/upload/4/0123abcd-x.png", both) == "0123abcd-x.png"
    assert labelstudio._file_name("/data/upload/4/0123abcd-x.png", {"x.png": (1, 1)}) == "x.png"


def test_annotate_round_trip_keeps_uuid_file_names(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path, synth_images: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for src, name in zip(sorted(synth_images.iterdir()), UUID_NAMES, strict=True):
        shutil.copy(src, images / name)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(monkeypatch, capsys, "annotate", "export", "images/", "--out", "pre/")
    assert code == 0, err
    tasks = "pre/labelstudio_tasks.json"
    common = ("annotate", "import", tasks, "--format", "labelstudio", "--images", "images/")
    code, out, err = run(monkeypatch, capsys, *common, "--accept-predictions", "--out", "ok/")
    assert code == 0, err
    written = json.loads((tmp_path / "ok" / "annotations.json").read_text())
    assert sorted(im["file_name"] for im in written["images"]) == sorted(UUID_NAMES)
    assert sorted(p.name for p in (tmp_path / "ok" / "images").iterdir()) == sorted(UUID_NAMES)
    # without --accept-predictions nothing is labelled: an error, and nothing written
    code, out, err = run(monkeypatch, capsys, *common, "--out", "empty/")
    assert code == 2
    assert "no labelled image" in err and "2 task(s) without an annotation" in err
    assert "--accept-predictions" in err
    assert not (tmp_path / "empty").exists()


# -- 5. calibrate names images by file, 10. train's plan, 12. synth help, 14. setup show -------


def _solid(path: Path, rgb: tuple[int, int, int], size: int = 64) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    a = np.clip(np.array(rgb, float) + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path)
    return path


def test_calibrate_messages_name_the_files(monkeypatch, capsys, tmp_path: Path) -> None:
    tiny = _solid(tmp_path / "tiny_chip.png", (120, 110, 170), size=8)
    code, out, err = run(monkeypatch, capsys, "calibrate", str(tiny), "--out", str(tmp_path / "s.json"))
    assert code == 2 and "tiny_chip.png" in err and "image 0" not in err, err
    violet = _solid(tmp_path / "violet_chip.png", (117, 106, 173))
    teal = _solid(tmp_path / "teal_chip.png", (43, 110, 95))
    code, out, err = run(monkeypatch, capsys, "calibrate", str(violet), str(teal), "--out",
                         str(tmp_path / "s.json"))  # fmt: skip
    if code == 2:  # a refused mix names the files, never "image 0 ... image 1"
        assert "image 0" not in err and "image 1" not in err, err
        assert "violet_chip.png" in err and "teal_chip.png" in err, err


def test_train_says_the_plan_that_runs(monkeypatch, capsys) -> None:
    from flakefinder.cli.train import _recipe

    capsys.readouterr()
    rec = _recipe("auto", "cpu", stages=1, epochs=1, iterations=10, batch_size=None)
    line = capsys.readouterr().out
    assert (len(rec.stages), rec.total_epochs, rec.iterations_per_epoch) == (1, 1, 10)
    assert "1 stage(s), 1 epoch(s) x 10 iterations" in line, line
    assert "no GPU found" in line and "recipe cpu_small" in line


def test_synth_help_example_uses_current_options() -> None:
    from flakefinder.cli.synth import HELP

    assert "--size " not in HELP and "--frame-px 512" in HELP


def test_setup_show_says_gamma_once(monkeypatch, capsys, tmp_path: Path) -> None:
    gmm = Path(__file__).parents[1] / "src/flakefinder/data/real/gmm_graphene_90nm.json"
    setup = tmp_path / "setup.json"
    code, _, err = run(monkeypatch, capsys, "calibrate", "--from-gmm", str(gmm), "--material",
                       "graphene", "--oxide-nm", "90", "--um-per-px", "0.3844", "--out", str(setup))  # fmt: skip
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "setup", "show", str(setup))
    assert code == 0, err
    assert "gamma gamma" not in out and "camera gamma 0.97" in out, out


# -- 7. --detector-option help, with no other argument, on every command that takes it ----------


def _leaf_commands() -> dict[str, object]:
    import typer

    from flakefinder.cli.main import create_app

    found: dict[str, object] = {}

    def walk(cmd: object, prefix: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            found[prefix] = cmd

    walk(typer.main.get_command(create_app()), "")
    return found


def test_detector_option_help_alone_lists_the_options(monkeypatch, capsys) -> None:
    from flakefinder.detect.registry import available_detectors

    taking = [
        name
        for name, cmd in _leaf_commands().items()
        if any("--detector-option" in p.opts for p in cmd.params)  # type: ignore[attr-defined]
    ]
    assert {"detect", "batch-detect", "scan", "serve", "demo", "annotate export"} <= set(taking)
    for name in taking:
        code, out, err = run(monkeypatch, capsys, *name.split(), "--detector-option", "help")
        assert code == 0, (name, err)
        assert all(f"{d}:" in out for d in available_detectors()), (name, out)
