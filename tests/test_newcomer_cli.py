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
