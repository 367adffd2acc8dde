"""One CLI vocabulary (issue 11 "CLI consistency", issue 7 registry): names, defaults, messages."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli_helpers import run_cli
from flakefinder.cli.main import create_app
from flakefinder.cli.options import DEFAULTS
from flakefinder.db import Database
from flakefinder.detect.registry import SIMULATED_DETECTOR
from flakefinder.text import plural

TINY = ["--chip-size-mm", "0.12", "--frame-px", "128", "--um-per-px", "0.5", "--no-progress"]


def _commands() -> dict[str, Any]:
    """Every leaf command of the app by its full name ('flakes list', 'evaluate dataset')."""
    root = typer.main.get_command(create_app())
    found: dict[str, Any] = {}

    def walk(cmd: Any, prefix: str) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            found[prefix] = cmd

    walk(root, "")
    return found


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, *args)


# -- names and defaults ---------------------------------------------------------------------------


def test_one_name_and_one_default_per_concept() -> None:
    old_names = {"--chip-mm", "--size", "--size-px", "--material"}
    checked = set()
    for name, cmd in _commands().items():
        for param in cmd.params:
            if param.param_type_name != "option":
                continue
            visible = [o for o in param.opts if o.startswith("--")]
            single = name == "calibrate" or name.startswith("setup ")  # one material per table
            if not param.hidden and not single:
                assert not old_names & set(visible), (name, visible)
            concept = (param.name or "").replace("-", "_")
            resolved = {"materials", "um_per_px", "oxide_nm"}  # option > --setup profile > default
            takes_profile = name == "calibrate" or any(p.name == "setup" for p in cmd.params)
            if concept in resolved and param.default is None and takes_profile:
                checked.add((name, concept))
            elif concept == "detector" and name in ("scan", "revisit") and param.default is None:
                checked.add((name, concept))  # contrast on a simulated chip, terrace on a real one
            elif concept == "detector" and name == "demo":
                assert param.default == SIMULATED_DETECTOR  # the demo's chip is simulated
                checked.add((name, concept))
            elif concept in DEFAULTS and not param.hidden and param.default is not None:
                if name == "serve" and concept == "detector":
                    assert param.default == DEFAULTS["detector"]
                elif concept == "frame_px" and name == "evaluate illumination":
                    continue  # the sweep renders small views on purpose (512 px)
                elif name == "calibrate" or name.startswith(("setup ", "demo-real")):
                    continue  # real micrographs of the 2DMatGMM set: their own pixel size
                else:
                    assert param.default == DEFAULTS[concept], (name, concept, param.default)
                checked.add((name, concept))
    for cmd in ("detect", "batch-detect", "scan", "demo", "serve", "annotate export"):
        assert (cmd, "detector") in checked and (cmd, "materials") in checked
    assert ("detect", "score") in checked and ("batch-detect", "score") in checked
    assert DEFAULTS["detector"] == "terrace"


def test_detector_help_lists_the_registry_everywhere() -> None:
    from flakefinder.detect.registry import detector_help

    for name, cmd in _commands().items():
        for param in cmd.params:
            if param.param_type_name == "option" and param.name == "detector":
                assert detector_help() in (param.help or ""), name


def test_detector_options_help_and_errors(monkeypatch, capsys, tmp_path: Path) -> None:
    import numpy as np

    from flakefinder.imaging import save_image

    image = tmp_path / "x.png"
    save_image(image, np.full((32, 32, 3), 128, np.uint8))
    out = str(tmp_path / "o")
    code, stdout, _ = run_main(
        monkeypatch, capsys, "detect", "x.png", "--out", out, "--detector-option", "help"
    )
    assert code == 0 and "contrast: " in stdout and "min_area_um2 (float, default 1.0)" in stdout
    code, _, err = run_main(
        monkeypatch, capsys, "detect", str(image), "--out", out, "-O", "k_sigmaa=3"
    )
    assert code == 2 and "has no option 'k_sigmaa'" in err and "k_sigma" in err
    code, _, err = run_main(
        monkeypatch, capsys, "detect", str(image), "--out", out, "--model", str(tmp_path)
    )
    assert code == 2 and "takes no model folder" in err


def test_old_spellings_still_work(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        create_app(), ["synth", str(tmp_path / "s"), "--images", "1", "--size", "32"]
    )
    assert r.exit_code == 0, r.output
    assert "--size is deprecated; use --frame-px" in r.output
    data = json.loads((tmp_path / "s" / "annotations.json").read_text())
    assert data["images"][0]["width"] == 32
    assert "wrote 1 image and " in r.output  # singular


# -- detect: the default detector finds flakes on synth's default images (issue 11 #5) ----------


def test_default_detect_finds_flakes_on_default_synth_images(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(create_app(), ["synth", str(tmp_path / "s"), "--images", "2",
                                     "--frame-px", "384", "--seed", "3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        create_app(), ["detect", str(tmp_path / "s" / "images"), "--out", str(tmp_path / "d")]
    )
    assert r.exit_code == 0, r.output
    n = len((tmp_path / "d" / "flakes.csv").read_text().splitlines()) - 1
    assert n > 0 and "(terrace 1.0)" in r.output and "in 2 images" in r.output


# -- flakes list/export: one material parser (issue 11 #3) ---------------------------------------


def test_flakes_materials_are_normalised_and_checked(monkeypatch, capsys, tmp_path: Path) -> None:
    from web_helpers import populate

    url = f"sqlite:///{tmp_path / 'f.db'}"
    populate(url, tmp_path / "tiles").close()
    code, upper, _ = run_main(monkeypatch, capsys, "flakes", "list", "--db", url,
                              "--materials", "Graphene", "--format", "csv")  # fmt: skip
    assert code == 0
    code, lower, _ = run_main(monkeypatch, capsys, "flakes", "list", "--db", url,
                              "--material", "graphene", "--format", "csv")  # fmt: skip
    assert code == 0 and upper == lower and len(upper.splitlines()) > 1
    code, _, err = run_main(monkeypatch, capsys, "flakes", "export", "--db", url,
                            "--materials", "foo")  # fmt: skip
    assert code == 2 and "unknown material 'foo'" in err


# -- scan ----------------------------------------------------------------------------------------


def test_scan_resume_without_unfinished_scan_refuses(monkeypatch, capsys, tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    code, _, err = run_main(
        monkeypatch, capsys, "scan", "--simulated", *TINY, "--db", f"sqlite:///{db}", "--resume"
    )
    assert code == 2 and "nothing to resume" in err and "without --resume" in err
    with Database(f"sqlite:///{db}") as database:
        assert database.list_chips() == [] and database.list_scans() == []


def test_scan_honours_the_database_environment_variable(monkeypatch, tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("FLAKEFINDER_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(create_app(), ["scan", "--simulated", *TINY])
    assert r.exit_code == 0, r.output
    assert db.is_file() and not (tmp_path / "flakefinder.db").exists()
    with Database(f"sqlite:///{db}") as database:
        assert len(database.list_scans()) == 1


def test_scan_says_the_plan_first_and_uses_plurals(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        create_app(),
        ["scan", "--simulated", "--chip-size-mm", "0.06", "--frame-px", "128", "--um-per-px",
         "0.5", "--no-progress", "--db", f"sqlite:///{tmp_path / 'f.db'}"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith("virtual 0.06 x 0.06 mm chip: 1 tile of 64 x 64 µm planned")
    assert "scan 1: 1 tile scanned" in r.output
    assert re.search(r"(?<![\d.])1 (tiles|flakes|images)\b", r.output) is None


def test_random_chip_reports_progress() -> None:
    from flakefinder.synth.chip import random_chip

    calls: list[tuple[int, int]] = []
    chip = random_chip(
        600.0, 600.0, ("graphene",), seed=1, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, calls[0][1]) and calls[-1] == (calls[0][1], calls[0][1])
    assert calls[0][1] >= len(chip.flakes) > 0


def test_sigterm_stops_a_scan_like_ctrl_c(monkeypatch, capsys, tmp_path: Path) -> None:
    import flakefinder.scan.loop as loop

    def killed(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")  # pragma: no cover

    monkeypatch.setattr(loop, "run_scan", killed)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_main(
        monkeypatch, capsys, "scan", "--simulated", *TINY, "--db", f"sqlite:///{tmp_path / 'f.db'}"
    )
    assert code == 143
    assert "scan 1 terminated (SIGTERM); continue with the same command and --resume" in err
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored


def test_bogus_and_missing_mm_config(monkeypatch, capsys, tmp_path: Path) -> None:
    pytest.importorskip("pymmcore_plus")
    code, _, err = run_main(monkeypatch, capsys, "scan", "--mm-config", str(tmp_path / "no.cfg"),
                            "--db", f"sqlite:///{tmp_path / 'f.db'}")  # fmt: skip
    assert code == 2 and "--mm-config" in err and "no such Micro-Manager" in err
    assert "--corners" not in err
    bogus = tmp_path / "bogus.cfg"
    bogus.write_text("# not a configuration\n")
    code, _, err = run_main(monkeypatch, capsys, "scan", "--mm-config", str(bogus),
                            "--corners", "0,0;100,100", "--db", f"sqlite:///{tmp_path / 'f.db'}")  # fmt: skip
    assert code == 2 and "defines no XY stage" in err and "no current XY stage" not in err
    assert not (tmp_path / "f.db").exists()


def test_open_scan_resumes_or_starts(tmp_path: Path) -> None:
    from flakefinder.scan.resume import NewScan, NothingToResumeError, open_scan

    new = NewScan("c1", ("graphene",), 90.0, "50x", 0.2, "contrast", "1.0", 4, {"overlap": 0.1})
    with Database(f"sqlite:///{tmp_path / 'f.db'}") as db:
        db.migrate()
        with pytest.raises(NothingToResumeError, match="'c1' is not in the database"):
            open_scan(db, new, resume=True)
        assert db.list_chips() == []
        first = open_scan(db, new, resume=False)
        assert not first.resumed
        again = open_scan(db, new, resume=True)  # the first scan is still running
        assert again.resumed and again.scan_id == first.scan_id
        db.finish_scan(first.scan_id)
        with pytest.raises(NothingToResumeError, match="has no unfinished scan"):
            open_scan(db, new, resume=True)


# -- serve, evaluate, text -----------------------------------------------------------------------


def test_serve_refuses_a_setup_for_a_detector_without_one(monkeypatch, capsys, tmp_path) -> None:
    from detect_helpers import setup_profile

    path = setup_profile().save(tmp_path / "scope.json")
    code, _, err = run_main(
        monkeypatch, capsys, "serve", "--detector", "rulebased", "--setup", str(path)
    )
    assert code == 2 and "cannot use a setup profile" in err


def test_evaluate_passes_the_dataset_optics_to_the_detector() -> None:
    from flakefinder.cli.evaluate import make_detector
    from flakefinder.evaluate.run import dataset_optics

    optics = dataset_optics({"info": {"gamma": 2.2, "numerical_aperture": 0.3, "um_per_px": 1}})
    assert optics == {"gamma": 2.2, "numerical_aperture": 0.3}
    det = make_detector("contrast", optics=optics, options=["gamma=1.8"])
    assert det.gamma == 1.8 and det.numerical_aperture == 0.3  # type: ignore[attr-defined]


def test_evaluate_without_detections_writes_well_formed_tables(tmp_path: Path) -> None:
    from flakefinder.synth.coco import export_coco

    export_coco(tmp_path / "ds", n_images=2, materials=["graphene"], width_px=64, height_px=64,
                seed=0)  # fmt: skip
    (tmp_path / "r.json").write_text("[]")
    r = CliRunner().invoke(create_app(), ["evaluate", str(tmp_path / "ds"), "--results",
                                          str(tmp_path / "r.json"), "--out", str(tmp_path / "e")])  # fmt: skip
    assert r.exit_code == 0, r.output
    table: list[str] = []
    for line in [*(tmp_path / "e" / "metrics.md").read_text().splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            widths = {row.count("|") for row in table}
            assert len(widths) == 1, table
            assert set(table[1].replace("|", "")) == {"-"}, table
            table = []
    assert "(no matched flakes: nothing to compare)" in r.output


def test_plural() -> None:
    assert plural(1, "image") == "1 image" and plural(0, "image") == "0 images"
    assert plural(2, "category", "categories") == "2 categories"
