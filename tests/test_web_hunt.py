"""The hunt's web routes: scan page, region API (under the API key), close-ups, overview."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flakefinder.db import Database, ScanStatus
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from hunt_helpers import populate_hunt

KEY = "hunt-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    populate_hunt(url, tmp_path).close()
    app = create_app(ServerSettings(detector="none", database_url=url, api_key=KEY))
    with TestClient(app, follow_redirects=False) as c:
        yield c


def url_of(client: TestClient) -> str:
    return str(client.app.state.web_db.url)  # type: ignore[attr-defined]


def test_region_api_edits_before_the_search_only(client: TestClient) -> None:
    r = client.get("/api/scans/2/region", headers=AUTH)
    assert r.status_code == 200
    view = r.json()
    assert view["editable"] and view["n_tiles"] == len(view["tiles_um"]) == 8  # 4 x 2 tiles
    assert view["mosaic_url"] == "/passes/3/mosaic.png" and view["search_objective"] == "20x"
    body = {"rect_um": [60, 60, 300, 200], "exclusions": [{"kind": "user", "rect_um": [60, 60, 130, 130]}]}
    assert client.put("/api/scans/2/region", json=body).status_code == 401  # the API key
    r = client.put("/api/scans/2/region", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["edited"] and saved["region"]["rect_um"] == [60, 60, 300, 200]
    assert saved["n_tiles"] == 15 - 1  # 5 x 3 tiles, one wholly inside the drawn exclusion
    assert client.get("/api/scans", headers=AUTH).json()[0]["n_tiles_planned"] == 14
    assert client.get("/api/scans/2/region", headers=AUTH).json()["n_tiles"] == 14
    for bad, status, message in (
        ({"rect_um": [300, 60, 60, 200]}, 422, "x_min < x_max"),
        ({"rect_um": [60, 60, 900, 200]}, 422, "inside the area the overview imaged"),
        ({"rect_um": [60, 60, 1e12, 200]}, 422, ""),
        ({"rect_um": [60, 60, 300]}, 422, ""),
        ({"rect_um": [60, 60, 300, 200], "exclusions": [{"kind": "dust", "rect_um": [0, 0, 1, 1]}]}, 422, ""),
        ({"rect_um": [60, 60, 300, 200], "extra": 1}, 422, ""),
    ):
        r = client.put("/api/scans/2/region", json=bad, headers=AUTH)
        assert r.status_code == status and message in r.text, (bad, r.text)
    r = client.put("/api/scans/1/region", json=body, headers=AUTH)  # tiles stored: too late
    assert r.status_code == 409 and "can no longer change" in r.json()["detail"]
    assert client.put("/api/scans/99/region", json=body, headers=AUTH).status_code == 404
    db = Database(url_of(client))
    db._set_scan_status(2, ScanStatus.RUNNING)  # its search started (no tile stored yet)
    db.close()
    r = client.put("/api/scans/2/region", json=body, headers=AUTH)
    assert r.status_code == 409 and "scan 2 is running" in r.json()["detail"]
    assert client.get("/api/scans/99/region", headers=AUTH).status_code == 404


def test_pages_show_passes_closeups_and_the_overview(client: TestClient) -> None:
    page = client.get("/scans/1", headers=AUTH).text
    assert 'class="pass-row pass-overview"' in page and 'class="pass-row pass-revisit"' in page
    assert "The search has started: the region can no longer change." in page
    assert "Drag the corners" in client.get("/scans/2", headers=AUTH).text
    scans = client.get("/scans", headers=AUTH).text
    assert scans.count('class="pass-row"') == 3 and "revisit pass" in scans
    flake = client.get("/flakes/2", headers=AUTH).text
    assert 'id="closeups"' in flake and "2 layers" in flake and "(search: 3)" in flake
    assert flake.count('class="closeup"') == 2
    assert 'id="closeups"' not in client.get("/flakes/1", headers=AUTH).text
    assert 'id="overview-layer"' in client.get("/chips/1", headers=AUTH).text
    [visit] = client.get("/api/flakes/2/closeups", headers=AUTH).json()
    assert visit["status"] == "ok" and visit["layer_count"] == 2 and len(visit["closeups"]) == 2
    for url in (visit["closeups"][0]["url"], f"/closeups/{visit['closeups'][0]['id']}/crop.png?size=64",
                "/passes/1/mosaic.png"):  # fmt: skip
        r = client.get(url, headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", url
    passes = client.get("/api/scans/1/passes", headers=AUTH).json()
    assert [(p["kind"], p["n_done"], p["n_planned"]) for p in passes] == [
        ("overview", 1, 1), ("revisit", 1, 1)
    ]  # fmt: skip
    assert client.get("/closeups/99.png", headers=AUTH).status_code == 404
    assert client.get("/passes/2/mosaic.png", headers=AUTH).status_code == 404  # not an overview


def test_missing_files_are_404_not_500(client: TestClient, tmp_path: Path) -> None:
    for p in (tmp_path / "tiles").glob("flake_2_*.png"):
        p.unlink()
    (tmp_path / "tiles" / "overview_1.png").unlink()
    assert client.get("/closeups/1.png", headers=AUTH).status_code == 404
    r = client.get("/closeups/1/crop.png", headers=AUTH)
    assert r.status_code == 404 and "close-up file is missing" in r.json()["detail"]
    assert client.get("/passes/1/mosaic.png", headers=AUTH).status_code == 404
    assert client.get("/flakes/2", headers=AUTH).status_code == 200
