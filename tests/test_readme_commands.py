"""Every command line of the README's bash blocks runs as written (issue 17, "Done when").

The README's ```bash blocks are parsed (comments dropped, ``\\`` continuations joined,
whitespace normalised). Each line must be in exactly one of two tables:

* :data:`RUN`: the line is run, in README order, in one temporary folder (a fresh clone's
  working directory), by ``bash -c`` with a ``flakefinder`` on ``PATH`` that runs this
  checkout. :class:`Run` says how: as written (``Run()``), or with an explicit substitute
  command (fewer images, steps or views; a real value for a placeholder) and why, and what
  files its placeholders need first (``before``, e.g. ``images/`` or ``export.json``);
  ``server=True`` for a command that serves until stopped (started, asked for
  ``/api/health``, stopped). A line fails the test when it exits with an error.
* :data:`SKIP`: lines that cannot run here (hardware, a GPU, a remote server, PostgreSQL,
  the network, the test suite itself), each with the reason.

A README line in neither table fails :func:`test_every_readme_command_is_in_a_table`, so a
new README command needs one entry (``"flakefinder revisit ...": Run(),``), and a table entry
whose line left the README fails it too.

Lines marked ``slow=True`` (training, the Mask R-CNN sweep and evaluation, the 81-tile demo)
run only in :func:`test_readme_commands_run_all` (``-m slow``); the default run walks the
others. Measured on the 2-core development machine with other jobs running: the quick walk
67 s (load average 7), the full walk 243 s (load about 5) to 369 s (load 8); ``pytest -s``
prints each line's time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHIPPED = REPO / "src" / "flakefinder" / "data" / "real"
LINE_TIMEOUT_S = 900
SERVER_START_S = 120.0


def readme_commands(text: str) -> list[str]:
    """The command lines of the ```bash blocks of ``text``, normalised (see module docstring)."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        pending = ""
        for raw in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = " ".join((pending + line).split())
            pending = ""
            if line:
                commands.append(line)
    return commands


@dataclass(frozen=True)
class Run:
    """How the test runs one README line (see the module docstring)."""

    command: str | None = None  # None: exactly as written
    why: str = ""  # why the command differs from the README's
    before: Callable[[Path], None] | None = None  # creates the files the line's placeholders name
    server: bool = False  # serves until stopped
    slow: bool = False  # run only by the slow walk (training, Mask R-CNN sweeps, the demo chip)


# -- what placeholders stand for (each makes files in the working folder) ------------------------


def _images(cwd: Path) -> None:
    """``images/``: your micrographs; here the synthetic ones of ``data/``."""
    if not (cwd / "images").exists():
        shutil.copytree(cwd / "data" / "images", cwd / "images")


def _wte2(cwd: Path) -> None:
    """``wte2/``: a WTe2 dataset for transfer learning (4 small synthetic images)."""
    from flakefinder.synth.coco import export_coco

    export_coco(cwd / "wte2", n_images=4, materials=["WTe2"], width_px=256, height_px=256, seed=1)


def _label_studio_export(cwd: Path) -> None:
    """``export.json``: a Label Studio JSON export of labelled ``images/`` (the contrast
    detector's outlines, accepted as annotations), as Label Studio exports it."""
    from flakefinder.annotate.labelstudio import local_files_prefix, to_tasks
    from flakefinder.annotate.roundtrip import predict_images
    from flakefinder.detect.registry import create_detector
    from flakefinder.domain import ImagingContext
    from flakefinder.imaging import iter_image_files

    _images(cwd)
    files = iter_image_files([cwd / "images"])
    found = predict_images(files, create_detector("contrast"),
                           ImagingContext(materials=("graphene", "hBN")), root=cwd / "images")  # fmt: skip
    tasks = to_tasks(found.images, image_url_prefix=local_files_prefix("images"))
    for i, task in enumerate(tasks, start=1):
        task["id"] = i
        task["annotations"] = [{"id": 100 + i, "result": task.pop("predictions")[0]["result"],
                                "was_cancelled": False}]  # fmt: skip
    (cwd / "export.json").write_text(json.dumps(tasks))


def _real_pictures(cwd: Path) -> None:
    """``A.jpg B.jpg``, ``imgs/*.jpg``, ``DIR`` (instance masks), ``coco.json`` (layer labels),
    ``IMAGES``: the shipped 2DMatGMM pictures, outlined and labelled by the calibrated contrast
    detector with the shipped 2DMatGMM graphene table."""
    import numpy as np
    from PIL import Image

    from flakefinder.calibration.gmm import import_gmm
    from flakefinder.detect.registry import create_detector
    from flakefinder.domain import ImagingContext
    from flakefinder.imaging import load_image

    profile = import_gmm(SHIPPED / "gmm_graphene_90nm.json", material="graphene", oxide_nm=90.0,
                         um_per_px=0.3844, name="shipped")  # fmt: skip
    det = create_detector("contrast", setup=profile)
    ctx = ImagingContext(um_per_px=0.3844, oxide_thickness_nm=90.0, materials=("graphene",))
    (cwd / "DIR").mkdir(exist_ok=True)
    (cwd / "imgs").mkdir(exist_ok=True)
    coco: dict[str, list[dict[str, object]]] = {"images": [], "annotations": [],
                                                "categories": [{"id": 1, "name": "graphene"}]}  # fmt: skip
    for k, letter in enumerate("abc", start=1):
        src = SHIPPED / f"graphene_90nm_{letter}.jpg"
        shutil.copy(src, cwd / f"{letter.upper()}.jpg")
        image = load_image(src)
        masks = np.zeros(image.shape[:2], np.uint8)
        for i, d in enumerate(det.detect(image, ctx), start=1):
            assert d.mask is not None
            masks[d.mask] = i
            if letter != "c" and d.layer_count is not None:
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": k, "category_id": 1,
                    "segmentation": [[v for p in d.polygon_px for v in p]],
                    "attributes": {"n_layers": d.layer_count}, "iscrowd": 0,
                })  # fmt: skip
        Image.fromarray(masks).save(cwd / "DIR" / f"{letter.upper()}.png")
        if letter != "c":  # imgs/: the pair of one camera setting (c was taken at others)
            shutil.copy(src, cwd / "imgs" / src.name)
            h, w = image.shape[:2]
            coco["images"].append({"id": k, "file_name": src.name, "width": w, "height": h})
    (cwd / "coco.json").write_text(json.dumps(coco))


def _gmm_table(cwd: Path) -> None:
    """``graphene_90nm.json``: a 2DMatGMM colour table (the shipped one)."""
    shutil.copy(SHIPPED / "gmm_graphene_90nm.json", cwd / "graphene_90nm.json")


def _interrupt_last_scan(cwd: Path) -> None:
    """``scan ... --resume`` continues an interrupted scan: mark the scan above interrupted."""
    from flakefinder.db import Database

    db = Database(f"sqlite:///{cwd / 'flakes.db'}")
    try:
        scans = db.list_scans()
        db.mark_interrupted(max(s.id for s in scans))
    finally:
        db.close()


# -- the tables -------------------------------------------------------------------------------

SCAN = "flakefinder scan --simulated --chip-size-mm 0.6 --frame-px 256 --materials graphene"

RUN: dict[str, Run] = {
    # "Using it"
    "flakefinder demo": Run(slow=True),
    "flakefinder synth data/ --images 200 --materials graphene,hBN --seed 0": Run(
        "flakefinder synth data/ --images 6 --frame-px 256 --materials graphene,hBN --seed 0",
        "6 images of 256 px instead of 200 of 1024 px"),
    "flakefinder scan --simulated --chip-size-mm 2 --materials graphene --db sqlite:///flakes.db --out tiles/": Run(
        f"{SCAN} --db sqlite:///flakes.db --out tiles/",
        "a 0.6 mm chip at 256 px (169 tiles) instead of 2 mm at 1024 px"),
    "flakefinder scan ... --resume": Run(
        f"{SCAN} --db sqlite:///flakes.db --out tiles/ --resume",
        "'...' are the interrupted scan's own options", before=_interrupt_last_scan),
    "flakefinder scan --simulated --chip-size-mm 2 --db sqlite:///hunt.db --out tiles/ --overview 5x --objective 20x --stop-after-overview": Run(slow=True),
    "flakefinder scan --simulated --chip-size-mm 2 --db sqlite:///hunt.db --out tiles/ --overview 5x --objective 20x --resume": Run(slow=True),
    'flakefinder revisit --scan 1 --objective 50x --filter "layers<=3,area_um2>=100" --db sqlite:///hunt.db': Run(slow=True),
    "flakefinder flakes list --db sqlite:///flakes.db --materials graphene --layer-class mono --min-area 50": Run(),
    "flakefinder flakes export --db sqlite:///flakes.db --format json --out flakes.json": Run(),
    'flakefinder flakes locate 42 --db ... --corners "x,y;x,y"': Run(
        'flakefinder flakes locate 1 --db sqlite:///flakes.db --corners "0,0;600,0"',
        "a flake id, the database and corners for the placeholders"),
    "flakefinder detect images/ --out results/": Run(before=_images),
    "flakefinder detect ../shared/data/real/2dmatgmm/images --um-per-px 0.3844 --oxide-nm 90 --out real-out": Run(
        command="flakefinder detect imgs --um-per-px 0.3844 --oxide-nm 90 --out real-out",
        why="the shipped copies of three 2DMatGMM pictures stand in for ../shared (a clone may "
        "not have it beside it)",
        before=_real_pictures,
    ),
    "flakefinder train data/ --out models/mine --epochs 1 --iterations 10": Run(
        "flakefinder train data/ --out models/mine --stages 1 --epochs 1 --iterations 2"
        " --batch-size 1", "2 steps instead of 40 (about 9 min on a 2-core CPU)", slow=True),
    "flakefinder train data/ --out models/long --max-minutes 10": Run(
        "flakefinder train data/ --out models/long --max-minutes 0.01 --batch-size 1",
        "stops at a checkpoint after its first step instead of after 10 minutes", slow=True),
    "flakefinder train wte2/ --out models/wte2 --init-from models/mine --materials WTe2 --stages 1 --epochs 1 --iterations 10": Run(
        "flakefinder train wte2/ --out models/wte2 --init-from models/mine --materials WTe2"
        " --stages 1 --epochs 1 --iterations 2 --batch-size 1", "2 steps instead of 10",
        before=_wte2, slow=True),
    "flakefinder train export.json --images images/ --out models/lab --init-from default --max-minutes 10": Run(
        "flakefinder train export.json --images images/ --out models/lab --init-from default"
        " --max-minutes 0.01 --batch-size 1", "one step instead of 10 minutes",
        before=_label_studio_export, slow=True),
    "flakefinder train --recipe cpu_selftrain --out models/selftrain --max-minutes 20": Run(
        "flakefinder train --recipe cpu_selftrain --out models/selftrain --unlabelled images/"
        " --max-minutes 0", "one step, on the README's images/ instead of the shared real sets",
        before=_images, slow=True),
    "flakefinder train --recipe cpu_selftrain --out models/mylab --unlabelled images/ --um-per-px 0.35 --max-minutes 20": Run(
        "flakefinder train --recipe cpu_selftrain --out models/mylab --unlabelled images/"
        " --um-per-px 0.35 --max-minutes 0", "one step instead of 20 minutes", before=_images,
        slow=True),
    "flakefinder detect images/ --detector maskrcnn --model models/selftrain --out learned/": Run(slow=True),
    "flakefinder detect images/ --detector union --model models/selftrain --out union/": Run(slow=True),
    "flakefinder evaluate data/ --detector maskrcnn --model models/mine --out eval/": Run(slow=True),
    "flakefinder evaluate illumination --out sweep/": Run(
        "flakefinder evaluate illumination --out sweep/ --views 2 --levels 1.0,0.5"
        " --frame-px 256", "2 views at 2 levels of 256 px instead of 8 at 7 of 512 px",
        slow=True),
    "FLAKEFINDER_API_KEY=... flakefinder serve --host 0.0.0.0 --db sqlite:///flakes.db": Run(
        "FLAKEFINDER_API_KEY=readme-test-key flakefinder serve --host 0.0.0.0 --port {port}"
        " --db sqlite:///flakes.db", "a key for '...', and a free port instead of 8000",
        server=True),
    "flakefinder annotate export images/ --out pre/": Run(before=_images),
    "flakefinder annotate import export.json --format labelstudio --images images/ --out corrected/": Run(
        before=_label_studio_export),
    "flakefinder batch-detect images/ --out results/ --workers 4": Run(
        "flakefinder batch-detect images/ --out results/ --workers 1",
        "one local Dask worker instead of 4 (a 2-core machine)"),
    "flakefinder calibrate A.jpg B.jpg --masks DIR --material graphene --oxide-nm 90 --um-per-px 0.3844 --out setup.json": Run(
        before=_real_pictures),
    "flakefinder calibrate imgs/*.jpg --labels coco.json --material graphene --oxide-nm 90 --um-per-px 0.3844 --out setup.json": Run(),
    "flakefinder calibrate imgs/*.jpg --material graphene --oxide-nm 90 --um-per-px 0.3844 --out setup.json": Run(),
    "flakefinder calibrate --from-gmm graphene_90nm.json --material graphene --oxide-nm 90 --um-per-px 0.3844 --out setup.json": Run(
        before=_gmm_table),
    "flakefinder setup show setup.json --plot clusters.png": Run(),
    "flakefinder setup export setup.json --format gmm --out graphene_90nm.json": Run(),
    # "Detecting flakes in real micrographs"
    "flakefinder detect IMAGES --detector contrast --setup setup.json --materials graphene --out OUT": Run(
        "flakefinder detect imgs/ --detector contrast --setup setup.json --materials graphene"
        " --out out/", "imgs/ and out/ for IMAGES and OUT"),
    "flakefinder detect IMAGES --detector contrast --setup auto --oxide-nm 90 --um-per-px 0.3844 --out OUT": Run(
        "flakefinder detect imgs/ --detector contrast --setup auto --oxide-nm 90"
        " --um-per-px 0.3844 --out out-auto/", "imgs/ and out-auto/ for IMAGES and OUT"),
    "flakefinder evaluate IMAGES --masks DIR --setup setup.json --out EVAL": Run(
        "flakefinder evaluate A.jpg B.jpg C.jpg --masks DIR --setup setup.json --out eval-real/",
        "the three shipped pictures and their outlines for IMAGES and DIR"),
    "flakefinder evaluate IMAGES --masks DIR --calibrate-on 2 --splits 3 --oxide-nm 90 --um-per-px 0.3844 --out EVAL": Run(
        "flakefinder evaluate A.jpg B.jpg C.jpg --masks DIR --calibrate-on 2 --splits 3"
        " --oxide-nm 90 --um-per-px 0.3844 --out eval-fewshot/",
        "the three shipped pictures and their outlines for IMAGES and DIR"),
    "flakefinder demo --real --out demo-real": Run(),
}  # fmt: skip

SKIP: dict[str, str] = {
    "make demo": "creates .venv, then runs `flakefinder demo` (run below)",
    "make test": "runs this test suite",
    "make lint": "ruff, mypy and import-linter, run by CI on their own",
    "make bench": "every benchmark (minutes to hours); benchmarks/ are run by hand",
    "bash .ci/run": "CI itself (installs PostgreSQL and chromium)",
    "source .venv/bin/activate": "the tests already run inside the virtualenv",
    'flakefinder scan --mm-config scope.cfg --corners "0,0;10000,0;10000,10000;0,10000"'
    " --detector maskrcnn --db postgresql+psycopg://lab@db/flakes": "needs a Micro-Manager"
    " microscope (scope.cfg) and the lab's PostgreSQL server",
    "flakefinder train data/ --out models/mine --recipe paper --download-weights": "the paper's"
    " recipe needs a GPU, and --download-weights the network",
    "flakefinder scan --simulated --server http://gpu-box:8000 ...": "needs the GPU box's"
    " inference server (tests/test_scan_cli.py scans through a local one)",
    "dask scheduler --port 8786 &": "a multi-GPU Dask cluster",
    "for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i dask worker tcp://127.0.0.1:8786 --nworkers 1"
    " --nthreads 1 & done": "a multi-GPU Dask cluster (four GPUs)",
    "flakefinder batch-detect images/ --out results/ --detector maskrcnn --scheduler"
    " tcp://127.0.0.1:8786": "needs the Dask scheduler and GPU workers started above",
}


def _readme_lines() -> list[str]:
    return readme_commands(README.read_text(encoding="utf-8"))


def test_readme_parser_joins_continuations_and_drops_comments() -> None:
    text = "x\n```bash\na --b 1 \\\n    --c 2   # note\n# only a comment\nd  e # x\n```\n"
    assert readme_commands(text) == ["a --b 1 --c 2", "d e"]


def test_every_readme_command_is_in_a_table() -> None:
    lines = _readme_lines()
    missing = [line for line in lines if line not in RUN and line not in SKIP]
    assert not missing, (
        "README commands in neither RUN nor SKIP of tests/test_readme_commands.py (add one"
        f" entry each): {missing}"
    )
    assert not set(RUN) & set(SKIP)
    stale = [line for line in [*RUN, *SKIP] if line not in lines]
    assert not stale, f"table entries whose line is no longer in the README: {stale}"


# -- running them ------------------------------------------------------------------------------


def _environment(bin_dir: Path) -> dict[str, str]:
    """PATH with a ``flakefinder`` that runs this checkout's sources; no lab settings leak in."""
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "flakefinder"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m flakefinder.cli.main "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAKEFINDER_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["MPLBACKEND"] = "Agg"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(command: str, cwd: Path, env: dict[str, str]) -> str:
    """Start a serving command, wait for ``/api/health``, stop it; '' or what went wrong."""
    port = _free_port()
    with subprocess.Popen(["bash", "-c", command.format(port=port)], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as proc:  # fmt: skip
        deadline = time.monotonic() + SERVER_START_S
        problem = f"no answer from /api/health within {SERVER_START_S:.0f} s"
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    problem = "" if r.status == 200 else f"/api/health answered {r.status}"
                    break
            except OSError:
                try:
                    proc.wait(timeout=0.25)  # up to 0.25 s for the server to come up
                except subprocess.TimeoutExpired:
                    pass
        exited = proc.poll()
        if exited is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the shell and the server it started
        output, _ = proc.communicate(timeout=60)
    if exited is not None:
        return f"exited with {exited} before answering:\n{output[-4000:]}"
    return problem and f"{problem}:\n{output[-4000:]}"


def _walk(tmp_path: Path, *, with_slow: bool) -> None:
    """Run the README's lines in order in one folder (the slow ones only ``with_slow``)."""
    env = _environment(tmp_path / "bin")
    cwd = tmp_path / "clone"
    cwd.mkdir()
    timings: list[str] = []
    for line in _readme_lines():
        if line in SKIP:
            continue
        spec = RUN[line]
        if spec.slow and not with_slow:
            continue
        if spec.before is not None:
            spec.before(cwd)
        command = spec.command or line
        t0 = time.monotonic()
        if spec.server:
            problem = _serve(command, cwd, env)
            assert not problem, f"README line `{line}` (ran `{command}`): {problem}"
        else:
            done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=LINE_TIMEOUT_S)  # fmt: skip
            assert done.returncode == 0, (
                f"README line `{line}` (ran `{command}`) exited with {done.returncode}:\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        timings.append(f"{time.monotonic() - t0:6.1f} s  {command}")
        print(timings[-1], flush=True)  # shown with -s: where the time goes


def test_readme_commands_run_quick(tmp_path: Path) -> None:
    """Every README line without ``slow=True``: no training, no Mask R-CNN sweep."""
    _walk(tmp_path, with_slow=False)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_readme_commands_run_all(tmp_path: Path) -> None:
    """Every README line of :data:`RUN`, training included."""
    _walk(tmp_path, with_slow=True)
