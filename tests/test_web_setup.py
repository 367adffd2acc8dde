"""Setup page API: upload rendered images, click flakes, calibrate (proposed and typed layers),
download the profile; bad input gets one clear 4xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flakefinder.calibration import SetupProfile
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from setup_helpers import UM_PER_PX, centre, png, rendered


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(ServerSettings(detector="none", database_url=f"sqlite:///{tmp_path / 'f.db'}"))
    with TestClient(app) as c:
        yield c


def test_setup_session_calibrates_from_clicks(client: TestClient, tmp_path: Path) -> None:
    images, truth = rendered()
    assert client.get("/setup").status_code == 200
    sid = client.post("/api/setup/sessions").json()["session"]
    base = f"/api/setup/sessions/{sid}"
    for k, im in enumerate(images):
        r = client.post(f"{base}/images", files={"image": (f"v{k}.png", png(im), "image/png")})
        assert r.status_code == 201 and r.json()["index"] == k and r.json()["width_px"] == 240
    assert client.get(f"{base}/images/1.png").headers["content-type"] == "image/png"
    ids = []
    for k, mask, _ in truth:
        x, y = centre(mask)
        r = client.post(f"{base}/regions", json={"image_index": k, "x_px": x, "y_px": y})
        assert r.status_code == 201, r.text
        assert abs(r.json()["area_px"] - int(mask.sum())) < 0.05 * mask.sum()
        assert len(r.json()["outline_px"]) >= 4
        ids.append(r.json()["id"])
    # no layer numbers: the optics fit proposes them, and they are the true ones
    body = {"material": "graphene", "oxide_nm": 90, "um_per_px": UM_PER_PX, "name": "bench 1"}
    rep = client.post(f"{base}/calibrate", json=body).json()
    assert rep["mode"] == "masks"
    assert [rep["proposed_layers"][str(i)] for i in ids] == [n for _, _, n in truth]
    assert rep["optics_curve"] and rep["clusters"]
    # accept them: typed layers calibrate in labels mode, measured 1-3, the rest predicted
    layers = {str(i): n for i, (_, _, n) in zip(ids, truth, strict=True)}
    rep = client.post(f"{base}/calibrate", json={**body, "layers": layers}).json()
    assert rep["mode"] == "labels"
    assert [e["n_layers"] for e in rep["table"] if e["source"] == "measured"] == [1, 2, 3]
    assert any(e["source"] == "predicted" for e in rep["table"])
    saved = client.get(f"{base}/profile.json")
    assert 'filename="bench_1.json"' in saved.headers["content-disposition"]
    path = tmp_path / "setup.json"
    path.write_bytes(saved.content)
    profile = SetupProfile.load(path)  # checks its own sha256
    assert profile.sha256 == rep["sha256"] and profile.name == "bench 1"
    assert profile.table("graphene").layer(1).source == "measured"
    # forgetting a region
    assert client.delete(f"{base}/regions/{ids[0]}").status_code == 204
    assert client.delete(f"{base}/regions/{ids[0]}").status_code == 404


def test_setup_flakes_without_layer_numbers_are_left_out(client: TestClient) -> None:
    """Some flakes numbered, some not (e.g. proposals accepted where there were some): the
    calibration uses the numbered ones and says which were left out."""
    images, truth = rendered()
    base = f"/api/setup/sessions/{client.post('/api/setup/sessions').json()['session']}"
    for k, im in enumerate(images):
        client.post(f"{base}/images", files={"image": (f"v{k}.png", png(im), "image/png")})
    ids = []
    for k, mask, _ in truth:
        x, y = centre(mask)
        ids.append(
            client.post(f"{base}/regions", json={"image_index": k, "x_px": x, "y_px": y}).json()[
                "id"
            ]
        )
    body = {"material": "graphene", "oxide_nm": 90, "um_per_px": UM_PER_PX}
    layers = {str(i): n for i, (_, _, n) in zip(ids, truth, strict=True)}
    del layers[str(ids[0])], layers[str(ids[2])]
    r = client.post(f"{base}/calibrate", json={**body, "layers": layers})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["mode"] == "labels"
    assert rep["skipped_regions"] == [ids[0], ids[2]]
    assert rep["notes"] == [
        f"flakes #{ids[0]}, #{ids[2]} have no layer number: left out of the calibration"
    ]
    assert sorted(int(k) for k in rep["proposed_layers"]) == sorted(int(k) for k in layers)
    # all numbered again: nothing left out
    layers = {str(i): n for i, (_, _, n) in zip(ids, truth, strict=True)}
    rep = client.post(f"{base}/calibrate", json={**body, "layers": layers}).json()
    assert rep["skipped_regions"] == [] and rep["notes"] == []


def test_setup_bad_input(client: TestClient) -> None:
    images, truth = rendered()
    assert client.post("/api/setup/sessions/nope/images").status_code in (404, 422)
    assert client.get("/api/setup/sessions/nope/profile.json").status_code == 404
    sid = client.post("/api/setup/sessions").json()["session"]
    base = f"/api/setup/sessions/{sid}"
    body = {"material": "graphene", "oxide_nm": 90, "um_per_px": UM_PER_PX}
    assert client.post(f"{base}/calibrate", json=body).status_code == 400  # no image yet
    r = client.post(f"{base}/images", files={"image": ("bad.png", b"not an image", "image/png")})
    assert r.status_code == 400 and "bad.png" in r.json()["detail"]
    client.post(f"{base}/images", files={"image": ("a.png", png(images[0]), "image/png")})
    small = png(images[0][:100, :100])
    r = client.post(f"{base}/images", files={"image": ("b.png", small, "image/png")})
    assert r.status_code == 400 and "one camera setup" in r.json()["detail"]
    r = client.post(f"{base}/regions", json={"image_index": 0, "x_px": 70, "y_px": 90})
    assert r.status_code == 400 and "substrate" in r.json()["detail"]
    assert (
        client.post(f"{base}/regions", json={"image_index": 5, "x_px": 1, "y_px": 1}).status_code
        == 404
    )
    assert client.post(f"{base}/regions", json={"image_index": 0}).status_code == 400
    outline = {"image_index": 0, "polygon_px": [[10, 10], [40, 10], [40, 40]]}
    rid = client.post(f"{base}/regions", json=outline).json()["id"]
    x, y = centre(truth[0][1])
    rid2 = client.post(f"{base}/regions", json={"image_index": 0, "x_px": x, "y_px": y}).json()[
        "id"
    ]
    for bad, word in [
        ({**body, "material": "unobtainium"}, "unobtainium"),
        ({**body, "layers": {"999": 1}}, "no region 999"),
        ({**body, "layers": {str(rid): 0, str(rid2): 1}}, "1 to 100"),
    ]:
        r = client.post(f"{base}/calibrate", json=bad)
        assert r.status_code == 400 and word in r.json()["detail"], r.text
    assert client.post(f"{base}/calibrate", json={**body, "oxide_nm": -1}).status_code == 422
    assert client.post(f"{base}/calibrate", json={**body, "um_per_px": "nan"}).status_code == 422
    assert client.post(f"{base}/calibrate", json={**body, "extra": 1}).status_code == 422
    assert json.loads(client.get(f"{base}/profile.json").text)["detail"].startswith("nothing")


def test_setup_changes_need_the_api_key(tmp_path: Path) -> None:
    """The server's access rules cover the Setup routes: no key, no session, no calibration."""
    app = create_app(
        ServerSettings(
            detector="none", database_url=f"sqlite:///{tmp_path / 'f.db'}", api_key="s3cret-key"
        )
    )
    with TestClient(app) as c:
        assert c.post("/api/setup/sessions").status_code == 401
        r = c.post("/api/setup/sessions", headers={"X-API-Key": "s3cret-key"})
        assert r.status_code == 201
        sid = r.json()["session"]
        body = {"material": "graphene", "oxide_nm": 90, "um_per_px": UM_PER_PX}
        assert c.post(f"/api/setup/sessions/{sid}/calibrate", json=body).status_code == 401
