"""Issue 17, "Second newcomer pass": the command-line trip-ups, each as the user ran it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from flakefinder.annotate import labelstudio

UUID_NAMES = (
    "14f99233-cc7c-42ea-b7e3-316f5158e0f7.png",
    "28f74d1c-31f9-4b18-b721-7563245faee1.png",
)


def run(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, *args)


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


# -- 2. pixel size, oxide, materials: option > profile > default, in every command; 8. defaults --

SHIPPED = Path(__file__).parents[1] / "src/flakefinder/data/real"


def _gmm_profile(
    tmp_path: Path, monkeypatch, capsys, um_per_px: str = "0.3844", oxide_nm: str = "90"
) -> Path:
    setup = tmp_path / f"setup_{um_per_px}_{oxide_nm}.json"
    code, _, err = run(monkeypatch, capsys, "calibrate", "--from-gmm",
                       str(SHIPPED / "gmm_graphene_90nm.json"), "--material", "graphene",
                       "--oxide-nm", oxide_nm, "--um-per-px", um_per_px, "--out", str(setup))  # fmt: skip
    assert code == 0, err
    return setup


def test_resolve_context_option_then_profile_then_default(tmp_path, monkeypatch, capsys) -> None:
    from flakefinder.calibration import SetupProfile
    from flakefinder.cli.options import (
        DEFAULT_MATERIALS,
        DEFAULT_OXIDE_NM,
        DEFAULT_UM_PER_PX,
        resolve_context,
    )
    from flakefinder.errors import ProfileError

    profile = SetupProfile.load(_gmm_profile(tmp_path, monkeypatch, capsys))
    none = {"um_per_px": None, "oxide_nm": None, "materials": None}
    ctx = resolve_context(**none)
    assert (ctx.um_per_px, ctx.oxide_thickness_nm, ctx.materials) == (
        DEFAULT_UM_PER_PX, DEFAULT_OXIDE_NM, (DEFAULT_MATERIALS,))  # fmt: skip
    ctx = resolve_context(**none, profile=profile)
    assert (ctx.um_per_px, ctx.oxide_thickness_nm, ctx.materials) == (0.3844, 90.0, ("graphene",))
    assert ctx.profile_id == profile.profile_id
    ctx = resolve_context(um_per_px=0.5, oxide_nm=92.0, materials="Graphene", profile=profile)
    assert (ctx.um_per_px, ctx.oxide_thickness_nm, ctx.materials) == (0.5, 92.0, ("graphene",))
    with pytest.raises(ProfileError, match="hBN"):
        resolve_context(um_per_px=None, oxide_nm=None, materials="hBN", profile=profile)
    with pytest.raises(ProfileError, match="285"):
        resolve_context(um_per_px=None, oxide_nm=285.0, materials=None, profile=profile)


def test_every_command_with_a_setup_resolves_by_the_rule() -> None:
    commands = _leaf_commands()
    for name in ("detect", "batch-detect", "annotate export", "evaluate dataset", "scan", "serve"):
        params = {p.name: p for p in commands[name].params}  # type: ignore[attr-defined]
        assert "setup" in params, name
        for concept in ("um_per_px", "oxide_nm", "materials"):
            # None = not given: the profile's value, else the shared default
            assert params[concept].default is None, (name, concept)


def test_annotate_export_uses_the_profile_pixel_size_like_detect(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    setup = _gmm_profile(tmp_path, monkeypatch, capsys)
    images = [str(p) for p in sorted(SHIPPED.glob("*.jpg"))]
    code, out, err = run(monkeypatch, capsys, "detect", *images, "--setup", str(setup),
                         "--out", str(tmp_path / "det"), "--no-overlays")  # fmt: skip
    assert code == 0, err
    found = out.strip().splitlines()[-1].split(" flake")[0]
    code, out, err = run(monkeypatch, capsys, "annotate", "export", *images, "--setup",
                         str(setup), "--out", str(tmp_path / "pre"))  # fmt: skip
    assert code == 0, err
    assert f"{found} flakes in 3 images exported" in out, (found, out)
    assert int(found) > 3


def test_scan_takes_pixel_size_and_oxide_from_the_profile(tmp_path, monkeypatch, capsys) -> None:
    from flakefinder.db import Database

    setup = _gmm_profile(tmp_path, monkeypatch, capsys, um_per_px="0.5", oxide_nm="93")
    db = f"sqlite:///{tmp_path / 'f.db'}"
    code, _, err = run(monkeypatch, capsys, "scan", "--simulated", "--chip-size-mm", "0.12",
                       "--frame-px", "128", "--no-progress", "--setup", str(setup), "--db", db)  # fmt: skip
    assert code == 0, err
    database = Database(db)
    try:
        scan = database.get_scan(1)
        assert scan is not None and scan.um_per_px == 0.5
        chip = database.get_chip(scan.chip_id)
        assert chip is not None and chip.oxide_thickness_nm == 93.0
    finally:
        database.close()


def test_serve_defaults_come_from_the_first_profile(tmp_path, monkeypatch, capsys) -> None:
    import flakefinder.cli.serve as serve_cli

    setup = _gmm_profile(tmp_path, monkeypatch, capsys)
    seen: list = []
    monkeypatch.setattr(serve_cli, "_run_server", lambda settings, host, port: seen.append(settings))
    code, _, err = run(monkeypatch, capsys, "serve", "--setup", str(setup))
    assert code == 0, err
    code, _, err = run(monkeypatch, capsys, "serve", "--setup", str(setup), "--um-per-px", "0.25")
    assert code == 0, err
    code, _, err = run(monkeypatch, capsys, "serve")
    assert code == 0, err
    got = [(s.um_per_px, s.oxide_thickness_nm, s.materials) for s in seen]
    assert got == [(0.3844, 90.0, ("graphene",)), (0.25, 90.0, ("graphene",)),
                   (0.2, 90.0, ("graphene",))]  # fmt: skip


def test_setup_auto_and_calibrate_share_the_defaults(tmp_path, monkeypatch, capsys) -> None:
    from flakefinder.calibration import SetupProfile
    from flakefinder.cli.options import DEFAULT_OXIDE_NM, DEFAULT_UM_PER_PX

    pair = [str(SHIPPED / "graphene_90nm_a.jpg"), str(SHIPPED / "graphene_90nm_b.jpg")]
    code, out, err = run(monkeypatch, capsys, "detect", *pair, "--setup", "auto", "--out",
                         str(tmp_path / "det"), "--no-overlays")  # fmt: skip
    assert code == 0, err
    assert "assumes the defaults --oxide-nm 90 and --um-per-px 0.2" in err
    auto = SetupProfile.load(tmp_path / "det" / "setup_profile.json")
    code, out, err = run(monkeypatch, capsys, "calibrate", *pair, "--out", str(tmp_path / "c.json"))
    assert code == 0, err
    assert "assumes the defaults" in err
    calibrated = SetupProfile.load(tmp_path / "c.json")
    for p in (auto, calibrated):
        assert (p.um_per_px, p.oxide_nm) == (DEFAULT_UM_PER_PX, DEFAULT_OXIDE_NM)


# -- 3. the README's `evaluate illumination --out sweep/` with its default detectors -----------


def test_illumination_sweep_default_detectors_run(tmp_path, monkeypatch, capsys) -> None:
    import flakefinder.detect.registry as registry

    # the default list minus maskrcnn (slow on a CPU; the README test runs the full line)
    monkeypatch.setattr(registry, "available_detectors", lambda: ("contrast", "union"))
    code, out, err = run(monkeypatch, capsys, "evaluate", "illumination", "--out",
                         str(tmp_path / "sweep"), "--views", "1", "--levels", "1.0",
                         "--frame-px", "128")  # fmt: skip
    assert code == 0, err
    assert "skipping" not in err  # union self-calibrates without a profile (issue 16)
    assert "| union |" in out
    assert "| contrast | 1.000 |" in out and (tmp_path / "sweep" / "illumination.csv").is_file()


# -- 6. detect shows a progress bar on a terminal (stderr), like batch-detect -------------------


def test_detect_shows_progress_on_a_terminal(tmp_path, monkeypatch, capsys, synth_images) -> None:
    import flakefinder.cli.progress as progress

    args = ("detect", str(synth_images), "--no-overlays")
    code, out, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 0 and "detecting" not in err  # not a terminal: no bar
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    code, out, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert "detecting" in err and "2/2" in err and "detecting" not in out
    code, out, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "c"), "--no-progress")
    assert code == 0 and "detecting" not in err


# -- 13. a finished, interrupted or failed scan leaves no *.db.scan-N.lock file -----------------


def test_scan_lock_files_are_removed_however_the_scan_ends(tmp_path, monkeypatch, capsys) -> None:
    import fcntl
    import os

    from flakefinder.db import Database
    from flakefinder.db.locks import _is_current, lock_path, scan_lock

    db_file = tmp_path / "f.db"
    url = f"sqlite:///{db_file}"
    code, _, err = run(monkeypatch, capsys, "scan", "--simulated", "--chip-size-mm", "0.12",
                       "--frame-px", "128", "--um-per-px", "0.5", "--no-progress", "--db", url)  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.db"]
    db = Database(url)
    try:
        for exc in (KeyboardInterrupt, RuntimeError):
            with pytest.raises(exc), scan_lock(db, 5):
                assert lock_path(db_file, 5).is_file()
                raise exc()
            assert not lock_path(db_file, 5).exists()
        # a process that opened the file just before its holder deleted it gets the lock on a
        # file that no longer is the lock: the check makes it take the new one instead
        with scan_lock(db, 6):
            stale = os.open(lock_path(db_file, 6), os.O_RDWR)
        try:
            with scan_lock(db, 6):
                fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the orphan locks freely...
                assert not _is_current(stale, lock_path(db_file, 6))  # ...and is recognised
        finally:
            os.close(stale)
    finally:
        db.close()


# -- 9. contrast: C = I/I_substrate - 1 in detections, flakes.csv, the database and its exports --


def test_contrast_sign_is_the_profiles_everywhere(tmp_path, monkeypatch, capsys, synth_images):
    import csv


    # detect (contrast detector, no profile): graphene on 90 nm SiO2 is darker, so C < 0
    code, _, err = run(monkeypatch, capsys, "detect", str(synth_images), "--out",
                       str(tmp_path / "det"), "--no-overlays")  # fmt: skip
    assert code == 0, err
    with (tmp_path / "det" / "flakes.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["layer_count"] and int(r["layer_count"]) <= 4]
    assert rows and all(float(r["contrast_r"]) < 0 and float(r["contrast_g"]) < 0 for r in rows)
    # with a profile (calibrated detector): the profile's own sign, as `setup show` prints it
    setup = _gmm_profile(tmp_path, monkeypatch, capsys)
    code, _, err = run(monkeypatch, capsys, "detect", str(SHIPPED / "graphene_90nm_a.jpg"),
                       "--setup", str(setup), "--out", str(tmp_path / "real"), "--no-overlays")  # fmt: skip
    assert code == 0, err
    with (tmp_path / "real" / "flakes.csv").open() as f:
        mono = [r for r in csv.DictReader(f) if r["layer_count"] == "1"]
    assert mono and all(-0.2 < float(r["contrast_g"]) < -0.08 for r in mono)  # profile: -0.139
    # scan -> database -> JSON export
    url = f"sqlite:///{tmp_path / 'f.db'}"
    code, _, err = run(monkeypatch, capsys, "scan", "--simulated", "--chip-size-mm", "0.4",
                       "--frame-px", "256", "--no-progress", "--db", url)  # fmt: skip
    assert code == 0, err
    code, _, err = run(monkeypatch, capsys, "flakes", "export", "--db", url, "--format", "json",
                       "--out", str(tmp_path / "flakes.json"))  # fmt: skip
    assert code == 0, err
    stored = json.loads((tmp_path / "flakes.json").read_text())
    assert stored and all(f["contrast_rgb"][1] < 0 for f in stored)  # graphene darkens green


def test_migration_0004_negates_contrast_stored_before(tmp_path: Path) -> None:
    from flakefinder.db import Database
    from flakefinder.domain import FlakeRecord, LayerClass, TileRecord

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        db.migrate("0003")  # a database written with the old sign (1 - I/I_substrate)
        chip = db.add_chip("c", ["graphene"], 90.0)
        scan = db.start_scan(chip, settings={}, objective="sim", um_per_px=0.2,
                             detector="contrast", detector_version="1", n_tiles_planned=1)  # fmt: skip
        square = ((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0))
        old = FlakeRecord("graphene", LayerClass.MONO, 0.9, square, (0, 0, 4, 4), 16.0, square,
                          (0, 0, 4, 4), "contrast", "1", 1, (0.125, 0.25, 0.0625), 0)  # fmt: skip
        db.record_tile(scan, TileRecord(0, 0.0, 0.0, 0.0, 8, 8, 0.2, None), [old])
        db.migrate()
        [flake] = db.query_flakes()
        assert flake.contrast_rgb == (-0.125, -0.25, -0.0625)
    finally:
        db.close()


# -- 4. detect --setup warns about images whose substrate does not fit the profile -------------


def test_detect_names_images_of_another_substrate(tmp_path, monkeypatch, capsys) -> None:
    import dataclasses

    import numpy as np
    from PIL import Image

    from flakefinder.calibration import SetupProfile

    gmm = SetupProfile.load(_gmm_profile(tmp_path, monkeypatch, capsys))
    violet = dataclasses.replace(gmm, substrate_rgb=(117.0, 106.0, 173.0))  # as calibrated
    violet.save(tmp_path / "violet.json")
    images = tmp_path / "images"
    images.mkdir()
    a = np.asarray(Image.open(SHIPPED / "graphene_90nm_a.jpg").convert("RGB"), dtype=np.float64)
    Image.fromarray(a.astype(np.uint8)).save(images / "violet_a.png")
    teal = a * np.array([43 / 117, 110 / 106, 95 / 173])  # the same view on a teal substrate
    Image.fromarray(np.clip(teal, 0, 255).astype(np.uint8)).save(images / "teal_a.png")
    code, out, err = run(monkeypatch, capsys, "detect", str(images), "--setup",
                         str(tmp_path / "violet.json"), "--out", str(tmp_path / "det"),
                         "--no-overlays")  # fmt: skip
    assert code == 0, err
    assert "warning: 1 of 2 images do not look like the substrate" in err, err
    assert "teal_a.png" in err and "violet_a.png" not in err


# -- 11. evaluate after train on the same folder scores the held-out images only ----------------


def test_evaluate_after_train_scores_the_held_out_images(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("torch")
    from flakefinder.evaluate.heldout import read_split
    from flakefinder.train.loop import train
    from flakefinder.train.recipe import Stage, TrainRecipe
    from test_train_helpers import make_dataset

    def dataset(root: Path, **kw: int) -> Path:  # file names relative to the folder, as synth's
        folder = make_dataset(root, **kw)
        coco = json.loads((folder / "annotations.json").read_text())
        for im in coco["images"]:
            im["file_name"] = f"images/{im['file_name']}"
        (folder / "annotations.json").write_text(json.dumps(coco))
        return folder

    data = dataset(tmp_path / "data", n_images=4)
    rec = TrainRecipe(name="tiny", stages=(Stage("heads", "heads", 0.01, 1),),
                      iterations_per_epoch=1, backbone="mobilenet_v3_fpn", weights="none",
                      image_size=128, batch_size=1, num_workers=0, materials=("graphene", "WTe2"),
                      rois_per_image=32, rpn_post_nms_train=100, train_fraction=0.5)  # fmt: skip
    model = train(rec, data, tmp_path / "model", device="cpu", progress=False, log=None)
    split = read_split(model)
    assert split is not None and len(split.train_images) == 2 and len(split.test_images) == 2
    # --score 0.99: the untrained model's many weak detections would only cost time here
    args = ("evaluate", str(data), "--detector", "maskrcnn", "--model", str(model), "--device",
            "cpu", "--score", "0.99")  # fmt: skip
    code, out, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "eval"))
    assert code == 0, err
    assert "scoring the 2 images the model's split held out (2 training images" in err, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["image_level"]["n_images"] == 2 and "held out" in metrics["images_scored"]
    code, out, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "all"), "--all-images")
    assert code == 0, err
    assert "not a held-out score" in err
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["image_level"]["n_images"] == 4
    # another dataset (other annotations) is scored whole, without a note
    other = dataset(tmp_path / "other", n_images=3, seed=5)
    code, out, err = run(monkeypatch, capsys, "evaluate", str(other), "--detector", "maskrcnn",
                         "--model", str(model), "--device", "cpu", "--score", "0.99", "--out",
                         str(tmp_path / "o"))  # fmt: skip
    assert code == 0, err
    assert "held out" not in err and "images_scored" not in json.loads(
        (tmp_path / "o" / "metrics.json").read_text())  # fmt: skip
