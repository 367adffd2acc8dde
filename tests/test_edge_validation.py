"""Findings 1 and 7 of the reliability review: what a client sends never reaches the polygon
library unchecked, a stored design that cannot be drawn is reported, and every bad query
parameter is a 4xx, not a 500."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flakefinder.db import Database
from flakefinder.db.records import DesignLayer
from flakefinder.design.assembly import assemble, check_outline
from flakefinder.errors import DesignError, UnknownFlakeError
from flakefinder.server.app import create_app
from flakefinder.server.client import encode_png
from flakefinder.server.settings import ServerSettings
from server_helpers import DarkSquareDetector, square_image
from web_helpers import populate


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[TestClient, Database]]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    db = populate(url, tmp_path / "tiles")
    app = create_app(ServerSettings(detector="none", database_url=url))
    with TestClient(app) as client:
        yield client, db
    db.close()


@pytest.mark.parametrize(
    "layer",
    [
        {"flake_id": 2, "x_um": 1e15},
        {"flake_id": 2, "x_um": "NaN"},
        {"flake_id": 2, "y_um": "-Infinity"},
        {"flake_id": 2, "rotation_deg": 1e300},
        {"flake_id": 99999999999999999999},
        {"flake_id": 0},
    ],
)
def test_bad_layers_are_422_and_the_server_lives(
    web: tuple[TestClient, Database], layer: dict[str, object]
) -> None:
    client, _ = web
    body = {"layers": [{"flake_id": 1}, layer]}
    assert client.post("/api/designs/preview", json=body).status_code == 422
    named = {"name": "bad", **body}
    assert client.post("/api/designs", json=named).status_code == 422
    assert client.get("/api/designs").json() == []  # nothing stored
    ok = client.post("/api/designs/preview", json={"layers": [{"flake_id": 1}, {"flake_id": 2}]})
    assert ok.status_code == 200 and ok.json()["stack_overlap_um2"] > 0


@pytest.mark.parametrize("bad", [1e15, math.nan, math.inf])
def test_a_stored_design_that_cannot_be_drawn_is_reported(
    web: tuple[TestClient, Database], bad: float
) -> None:
    client, db = web
    design_id = db.save_design("old", [DesignLayer(1), DesignLayer(2, x_um=bad, order=1)])
    r = client.get(f"/api/designs/{design_id}")
    assert r.status_code == 200
    body = r.json()
    assert body["summary"] is None and f"design {design_id} cannot be drawn" in body["problem"]
    assert "x_um" in body["problem"] and [f["id"] for f in body["flakes"]] == [1, 2]
    assert client.get(f"/api/designs/{design_id}/export.gds").status_code == 422
    assert client.get(f"/api/designs/{design_id}/export.json").status_code == 200
    assert client.get(f"/designs/{design_id}").status_code == 200  # the designer page opens
    # fixing it through the API works
    fixed = {"name": "old", "layers": [{"flake_id": 1}, {"flake_id": 2, "order": 1}]}
    assert client.put(f"/api/designs/{design_id}", json=fixed).json()["problem"] is None


def test_assembly_checks_before_geometry(tmp_path: Path) -> None:
    db = populate(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "t")
    try:
        with pytest.raises(UnknownFlakeError, match="no flake with id 77"):
            assemble(db, [DesignLayer(77)])
        with pytest.raises(DesignError, match=r"layer 1 \(flake 1\): y_um must lie in"):
            assemble(db, [DesignLayer(1, y_um=-2e6)])
        assert len(assemble(db, [DesignLayer(2, order=1), DesignLayer(1)]).stack) == 2
    finally:
        db.close()
    with pytest.raises(DesignError, match="non-finite"):
        check_outline(((0.0, 0.0), (1.0, math.nan), (0.0, 1.0)), 5)
    with pytest.raises(DesignError, match="2 vertices"):
        check_outline(((0.0, 0.0), (1.0, 0.0)), 5)


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("ro")
    url = f"sqlite:///{tmp / 'web.db'}"
    populate(url, tmp / "tiles").close()
    with TestClient(create_app(ServerSettings(detector="none", database_url=url))) as client:
        yield client


@pytest.fixture(scope="module")
def detect_client() -> Iterator[TestClient]:
    settings = ServerSettings(detector="darksquare", materials=("graphene",))
    with TestClient(create_app(settings, detector=DarkSquareDetector())) as c:
        yield c


@pytest.mark.parametrize(
    "path",
    [
        "/api/flakes?offset=99999999999999999999",
        "/api/flakes/99999999999999999999",
        "/api/flakes?chip=99999999999999999999",
        "/api/designs/99999999999999999999",
        "/api/flakes?min_area=nan",
        "/flakes?chip=abc",
        "/flakes?min_area=inf",
        "/flakes/99999999999999999999",
        "/chips/99999999999999999999",
        "/flakes?page=99999999999999999999",
    ],
)
def test_bad_query_parameters_are_4xx(read_only: TestClient, path: str) -> None:
    r = read_only.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])


@pytest.mark.parametrize(
    "query",
    [
        "um_per_px=1e-300",
        "um_per_px=1e300",
        "um_per_px=-1",
        "um_per_px=0",
        "um_per_px=nan",
        "oxide_nm=inf",
        "oxide_nm=-5",
        "oxide_nm=nan",
    ],
)
def test_detect_parameters_are_bounded(detect_client: TestClient, query: str) -> None:
    files = {"image": ("a.png", encode_png(square_image()), "image/png")}
    r = detect_client.post(f"/api/detect?{query}", files=files)
    assert r.status_code == 422, (query, r.text[:200])
    ok = detect_client.post("/api/detect?um_per_px=0.5&oxide_nm=285", files=files)
    assert ok.status_code == 200 and ok.json()["flakes"][0]["area_um2"] == 16 * 16 * 0.25
