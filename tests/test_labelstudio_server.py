"""The annotation round trip against a real Label Studio server (marker ``labelstudio``).

Opt in with ``pytest -m labelstudio tests/test_labelstudio_server.py``. The first run installs
Label Studio (``LABELSTUDIO_SPEC``, needs PyPI) into its own virtual environment under
``.cache/labelstudio-venv`` (gitignored; ``FLAKEFINDER_LABELSTUDIO_VENV`` overrides the place),
later runs reuse it. The server runs on 127.0.0.1 with a throwaway data folder, a legacy API
token and local-file serving from a throwaway document root.

The test exports pre-annotations with ``flakefinder annotate export``, creates a project from
our labelling config, checks that Label Studio serves the exported image URLs, imports the tasks
with their predictions, corrects them through the API (a moved vertex, a deleted region, a
relabelled region, a skipped task, an untouched task), exports JSON, JSON_MIN and COCO, and
imports each with ``flakefinder annotate import``; the corrected polygons come back exactly.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flakefinder.cli.main import main

pytestmark = pytest.mark.labelstudio

LABELSTUDIO_SPEC = "label-studio==1.23.2"
REPO = Path(__file__).resolve().parents[1]
TOKEN = "0123456789abcdef0123456789abcdef01234567"
START_TIMEOUT_S = 900.0


def _venv() -> Path:
    env = os.environ.get("FLAKEFINDER_LABELSTUDIO_VENV")
    return Path(env) if env else REPO / ".cache" / "labelstudio-venv"


def _install(venv: Path) -> Path:
    exe = venv / "bin" / "label-studio"
    if exe.is_file():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", LABELSTUDIO_SPEC], check=True)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    root: Path  # LOCAL_FILES_DOCUMENT_ROOT

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Token {TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as resp:
            raw = resp.read()
            kind = resp.headers.get("Content-Type", "")
        return json.loads(raw) if "json" in kind and raw else raw

    def status(self, path: str) -> int:
        req = urllib.request.Request(self.url + path)
        req.add_header("Authorization", f"Token {TOKEN}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    exe = _install(_venv())
    base = tmp_path_factory.mktemp("labelstudio")
    root, data = base / "root", base / "data"
    root.mkdir()
    port = _free_port()
    env = dict(os.environ, LOCAL_FILES_SERVING_ENABLED="true",
               LOCAL_FILES_DOCUMENT_ROOT=str(root), LABEL_STUDIO_BASE_DATA_DIR=str(data))  # fmt: skip
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "start", "--no-browser", "--data-dir", str(data), "--internal-host",
         "127.0.0.1", "--port", str(port), "--username", "test@example.com", "--password",
         "test-password-123", "--user-token", TOKEN, "--enable-legacy-api-token"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    srv = Server(f"http://127.0.0.1:{port}", root)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while srv.status("/health") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not start; see {base / 'server.log'}")
            time.sleep(2.0)  # polling a subprocess, not timing anything
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["flakefinder", *args])
    capsys.readouterr()
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr()
    return capsys.readouterr().out


def _tasks(srv: Server, project: int) -> list[dict[str, Any]]:
    got = srv.call("GET", f"/api/tasks?project={project}&page_size=100&fields=all")
    tasks = got["tasks"] if isinstance(got, dict) else got
    return sorted(tasks, key=lambda t: t["id"])


def test_round_trip_against_label_studio(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    synth = tmp_path / "synth"
    _cli(monkeypatch, capsys, "synth", str(synth), "--images", "3", "--size", "320",
         "--seed", "2", "--materials", "graphene")  # fmt: skip
    images = server.root / "scan1"
    shutil.copytree(synth / "images", images)
    pre = tmp_path / "pre"
    out = _cli(monkeypatch, capsys, "annotate", "export", str(images), "--out", str(pre),
               "--detector", "contrast", "--materials", "graphene")  # fmt: skip
    assert "/data/local-files/?d=scan1/" in out
    tasks = json.loads((pre / "labelstudio_tasks.json").read_text())
    counts = [len(t["predictions"][0]["result"]) for t in tasks]
    assert max(counts) >= 2, counts  # the corrected task needs a region to delete
    k = counts.index(max(counts))
    name = tasks[k]["data"]["image"].rsplit("/", 1)[-1]

    config = (pre / "labelstudio_config.xml").read_text()
    project = server.call("POST", "/api/projects", {"title": "flakes", "label_config": config})
    pid = int(project["id"])
    server.call("POST", "/api/storages/localfiles", {"project": pid, "title": "scan1",
                "path": str(images), "use_blob_urls": True})  # fmt: skip
    # the exported URLs are served (item 14)
    assert server.status(tasks[0]["data"]["image"]) == 200
    server.call("POST", f"/api/projects/{pid}/import", tasks)
    stored = _tasks(server, pid)
    assert len(stored) == 3

    # task k: move a vertex, delete the other regions, relabel; the next: skip; last: untouched
    first = json.loads(json.dumps(tasks[k]["predictions"][0]["result"]))[:1]
    first[0]["value"]["points"][0] = [5.0, 7.5]
    label = first[0]["value"]["polygonlabels"][0]
    relabel = "graphene_thick" if label != "graphene_thick" else "graphene_few"
    first[0]["value"]["polygonlabels"] = [relabel]
    server.call("POST", f"/api/tasks/{stored[k]['id']}/annotations",
                {"result": first, "was_cancelled": False})  # fmt: skip
    skip = (k + 1) % 3
    server.call("POST", f"/api/tasks/{stored[skip]['id']}/annotations",
                {"result": [], "was_cancelled": True})  # fmt: skip
    expected_first = [
        (float(x) * 320 / 100.0, float(y) * 320 / 100.0) for x, y in first[0]["value"]["points"]
    ]

    for kind in ("JSON", "JSON_MIN", "COCO"):
        # JSON with every task (the untouched one too); the others as Label Studio defaults
        every = "&download_all_tasks=true" if kind == "JSON" else ""
        raw = server.call("GET", f"/api/projects/{pid}/export?exportType={kind}{every}")
        if kind == "COCO":
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                name = next(n for n in z.namelist() if n.endswith(".json"))
                raw = z.read(name)
        export = tmp_path / f"export_{kind}.json"
        export.write_bytes(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
        fmt = "coco" if kind == "COCO" else "labelstudio"
        ds = tmp_path / f"ds_{kind}"
        text = _cli(monkeypatch, capsys, "annotate", "import", str(export), "--format", fmt,
                    "--images", str(images), "--out", str(ds))  # fmt: skip
        coco = json.loads((ds / "annotations.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        by_file = {im["file_name"]: im["id"] for im in coco["images"]}
        assert name in by_file, (kind, by_file)
        anns = [a for a in coco["annotations"] if a["image_id"] == by_file[name]]
        assert len(anns) == 1, (kind, anns)
        assert names[anns[0]["category_id"]] == relabel
        ring = anns[0]["segmentation"][0]
        got = [(ring[i], ring[i + 1]) for i in range(0, len(ring), 2)]
        np.testing.assert_allclose(got, expected_first, atol=1e-3 if kind == "COCO" else 1e-9)
        if kind == "JSON":
            assert sorted(by_file) == [name]  # skipped and unreviewed tasks left out
            assert "skipped in Label Studio" in text and "without an annotation" in text
            assert anns[0]["attributes"]["layer_class"] == relabel.split("_")[1]
    shutil.rmtree(images)
