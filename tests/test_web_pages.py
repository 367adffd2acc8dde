"""Web UI through the test client and a real uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

import gdstk
import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from server_helpers import running_server
from web_helpers import populate


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> TestClient:
    populate(db_url, tmp_path / "tiles").close()
    app = create_app(ServerSettings(detector="none", database_url=db_url))
    with TestClient(app) as client:
        yield client


def _ids(html: str) -> list[int]:
    import re

    return [int(m) for m in re.findall(r'data-flake-id="(\d+)"', html)]


def test_gallery_filters(web: TestClient) -> None:
    r = web.get("/flakes")
    assert r.status_code == 200
    assert len(_ids(r.text)) == 4 and "4 found" in r.text
    assert len(_ids(web.get("/flakes?material=hBN").text)) == 1
    assert len(_ids(web.get("/flakes?material=graphene&layer_class=few").text)) == 1
    assert len(_ids(web.get("/flakes?min_area=101").text)) == 3  # areas 100, 225, 400, 144 µm²
    assert len(_ids(web.get("/flakes?min_confidence=0.75").text)) == 2
    assert _ids(web.get("/flakes?order=area_um2").text)[0] == 1  # smallest first: 10 µm square
    assert web.get("/flakes?layer_class=huge").status_code == 400
    assert web.get("/flakes?min_area=abc").status_code == 400


def test_flake_page_and_status(web: TestClient) -> None:
    page = web.get("/flakes/2")
    assert page.status_code == 200
    assert "graphene few (3 layers)" in page.text
    assert "x = 105.5 µm, y = 105.5 µm" in page.text.replace("\u202f", " ")
    crop = web.get("/flakes/2/crop.png?size=200")
    assert crop.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(crop.content)).size) == 200
    r = web.post(
        "/flakes/2",
        data={"status": "used", "notes": "picked for device D7"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    again = web.get("/flakes/2").text
    assert "<b>used</b>" in again and "picked for device D7" in again
    assert len(_ids(web.get("/flakes?status=used").text)) == 1
    assert web.post("/flakes/2", data={"status": "lost"}).status_code == 400
    assert web.get("/flakes/999").status_code == 404


def test_chip_map_scans_and_mosaic(web: TestClient) -> None:
    chips = web.get("/chips").text
    assert "chip-A" in chips
    m = web.get("/chips/1")
    assert m.status_code == 200 and m.text.count('class="flake-outline"') == 4
    mosaic = Image.open(io.BytesIO(web.get("/chips/1/mosaic.png").content))
    assert mosaic.size[0] == 1600
    scans = web.get("/scans").text
    assert "finished" in scans and "2 / 2" in scans


def test_design_api_and_exports(web: TestClient, tmp_path: Path) -> None:
    body = {
        "name": "hBN/graphene",
        "layers": [
            {"flake_id": 4, "x_um": 0, "y_um": 0, "rotation_deg": 0, "order": 0},
            {"flake_id": 1, "x_um": 2, "y_um": 0, "rotation_deg": 30, "order": 1},
        ],
    }
    preview = web.post("/api/designs/preview", json={"layers": body["layers"]}).json()
    assert preview["areas_um2"] == pytest.approx([144.0, 100.0])
    created = web.post("/api/designs", json=body)
    assert created.status_code == 201
    design = created.json()
    assert design["summary"]["pairs"][0]["twist_deg"] == pytest.approx(30.0)
    gds = web.get(f"/api/designs/{design['id']}/export.gds")
    assert gds.status_code == 200
    (tmp_path / "d.gds").write_bytes(gds.content)
    cell = gdstk.read_gds(str(tmp_path / "d.gds")).top_level()[0]
    assert sorted({p.layer for p in cell.polygons}) == [1, 2, 100]
    exported = web.get(f"/api/designs/{design['id']}/export.json").json()
    assert [lay["flake_id"] for lay in exported["layers"]] == [4, 1]
    assert (
        web.post("/api/designs", json={"name": "x", "layers": [{"flake_id": 77}]}).status_code
        == 400
    )
    assert web.post("/api/designs", json={"name": "", "layers": []}).status_code == 422
    assert web.delete(f"/api/designs/{design['id']}").status_code == 204
    assert web.get(f"/api/designs/{design['id']}").status_code == 404


def test_api_flakes_json_over_real_uvicorn(db_url: str, tmp_path: Path) -> None:
    populate(db_url, tmp_path / "tiles").close()
    app = create_app(ServerSettings(detector="none", database_url=db_url))
    with running_server(app) as url:
        r = httpx.get(f"{url}/api/flakes", params={"material": "graphene", "order": "layer_count"})
        body = r.json()
        assert body["total"] == 3
        assert [f["layer_count"] for f in body["flakes"]] == [1, 3, 20]
        assert httpx.post(f"{url}/api/detect", files={"image": ("a.png", b"x")}).status_code == 503
        assert httpx.get(f"{url}/static/designer.js").status_code == 200
