"""The Setup page on the real 2DMatGMM graphene micrographs shipped with flakefinder (90 nm SiO2,
0.3844 µm/px): clicked flakes get the layer numbers of the lab's own colour table, and accepted
proposals always calibrate (flakes without a proposal are left out, with a note)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flakefinder.calibration.gmm import import_gmm
from flakefinder.cli.demo_real import real_data_folder
from flakefinder.detect.calibrated import classify_instance
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from setup_helpers import png

UM_PER_PX = 0.3844
# (picture, x, y, layers): thin flakes (layers by the lab's table, checked below) and one bulk
# graphite piece (None: no thin layer); pictures a and b share their camera settings
CLICKS = (
    ("a", 1509, 710, 4),
    ("a", 1808, 984, 1),
    ("a", 1680, 1183, 1),
    ("a", 1080, 250, None),
    ("b", 231, 419, 1),
    ("b", 1857, 803, 3),
    ("b", 891, 1156, 3),
)


@pytest.fixture(scope="module")
def pictures() -> dict[str, object]:
    from flakefinder.imaging import load_image

    return {k: load_image(real_data_folder() / f"graphene_90nm_{k}.jpg") for k in "ab"}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(ServerSettings(detector="none", database_url=f"sqlite:///{tmp_path / 'f.db'}"))
    with TestClient(app) as c:
        yield c


def test_real_pictures_proposals_and_accepting_them(client: TestClient, pictures) -> None:
    import numpy as np

    base = f"/api/setup/sessions/{client.post('/api/setup/sessions').json()['session']}"
    for k in "ab":
        r = client.post(f"{base}/images", files={"image": (f"{k}.png", png(pictures[k]), "image/png")})
        assert r.status_code == 201, r.text
    ids = []
    for pic, x, y, _ in CLICKS:
        r = client.post(f"{base}/regions", json={"image_index": "ab".index(pic), "x_px": x, "y_px": y})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    # the reference: the lab's own per-layer colour table classifies each clicked region
    gmm = import_gmm(
        real_data_folder() / "gmm_graphene_90nm.json",
        material="graphene",
        oxide_nm=90.0,
        um_per_px=UM_PER_PX,
    )
    from flakefinder.calibration.regions import grow_region

    for pic, x, y, n in CLICKS:
        if n is not None:
            mask = grow_region(np.asarray(pictures[pic]), x, y)
            assert classify_instance(pictures[pic], mask, gmm, ("graphene",)).n_layers == n
    body = {"material": "graphene", "oxide_nm": 90, "um_per_px": UM_PER_PX, "name": "real"}
    rep = client.post(f"{base}/calibrate", json=body)
    assert rep.status_code == 200, rep.text
    assert rep.json()["mode"] == "masks"
    proposed = rep.json()["proposed_layers"]
    assert [proposed[str(i)] for i in ids] == [n for *_, n in CLICKS]
    # "Accept proposed layers": the flakes with a proposal get it; the bulk piece has none
    layers = {str(i): proposed[str(i)] for i in ids if proposed[str(i)] is not None}
    rep = client.post(f"{base}/calibrate", json={**body, "layers": layers})
    assert rep.status_code == 200, rep.text
    j = rep.json()
    assert j["mode"] == "labels"
    assert j["skipped_regions"] == [ids[3]]
    assert j["notes"] == [f"flake #{ids[3]} has no layer number: left out of the calibration"]
    measured = {e["n_layers"]: e["contrast_rgb"] for e in j["table"] if e["source"] == "measured"}
    assert sorted(measured) == [1, 3, 4]
    for n, c in measured.items():  # within 0.04 of the lab's table (measured: up to 0.034)
        ref = gmm.table("graphene").layer(n).contrast_rgb
        assert max(abs(a - b) for a, b in zip(c, ref, strict=True)) < 0.04, (n, c, ref)
