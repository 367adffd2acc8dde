"""Chip map viewport queries (flakefinder.db.viewport) and their API, on an exactly known lattice.

``populate_grid(db, n)``: flake (i, j) is a 4 µm square at (10 i, 10 j) µm, hBN when
(i + j) % 4 == 0. A view [x0, x1] overlaps column i exactly when 10 i <= x1 and 10 i + 4 >= x0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flakefinder.db import FlakeQuery
from flakefinder.db.viewport import ChipMapQueries, cell_size_um, check_bbox
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from web_helpers import populate_grid


def _expected(n: int, box: tuple[float, float, float, float]) -> set[tuple[int, int]]:
    x0, y0, x1, y1 = box
    return {
        (i, j)
        for i in range(n)
        for j in range(n)
        if 10 * i <= x1 and 10 * i + 4 >= x0 and 10 * j <= y1 and 10 * j + 4 >= y0
    }


def _cell(flake: Any) -> tuple[int, int]:
    return round(flake.polygon_um[0][0] / 10), round(flake.polygon_um[0][1] / 10)


def test_viewport_returns_exactly_the_overlapping_flakes(db: Any) -> None:
    chip = populate_grid(db, 20)
    q = ChipMapQueries(db)
    for box in [(0, 0, 4, 4), (5, 5, 9.9, 9.9), (3.5, 13.9, 24.1, 30), (-50, -50, 1000, 1000)]:
        view = q.query(chip, box)
        assert view.mode == "flakes"
        assert {_cell(f) for f in view.flakes} == _expected(20, box), box
        assert view.total == len(view.flakes)
    assert q.bounds(chip) == (0.0, 0.0, 194.0, 194.0)
    # filters apply inside the view: hBN where (i + j) % 4 == 0
    view = q.query(chip, (0, 0, 44, 44), FlakeQuery(materials="hBN"))
    assert {_cell(f) for f in view.flakes} == {
        (i, j) for i, j in _expected(20, (0, 0, 44, 44)) if (i + j) % 4 == 0
    }
    assert {f.material for f in view.flakes} == {"hBN"}


def test_viewport_clusters_when_too_many(db: Any) -> None:
    chip = populate_grid(db, 20)
    q = ChipMapQueries(db)
    view = q.query(chip, (0, 0, 200, 200), max_flakes=399, grid=4)
    assert view.mode == "clusters" and view.flakes == ()
    assert view.cell_um == cell_size_um((0, 0, 200, 200), 4) == 64.0
    assert view.total == 400 == sum(c.count for c in view.clusters)
    # bbox centres 10 i + 2 in 64 µm cells: i = 0..6 | 7..12 | 13..18 | 19 -> 7, 6, 6, 1 columns
    counts = sorted(c.count for c in view.clusters)
    assert counts == sorted(a * b for a in (7, 6, 6, 1) for b in (7, 6, 6, 1))
    first = min(view.clusters, key=lambda c: (c.x_um, c.y_um))
    assert first.count == 49 and first.bbox_um == (0.0, 0.0, 64.0, 64.0)
    assert first.x_um == pytest.approx(32.0) and first.y_um == pytest.approx(32.0)
    # at max_flakes = 400 the same view comes back as outlines
    assert q.query(chip, (0, 0, 200, 200), max_flakes=400).mode == "flakes"


def test_viewport_sees_new_larger_flakes(db: Any) -> None:
    """The cached largest flake size is refreshed when the chip gets new flakes."""
    chip = populate_grid(db, 3)
    q = ChipMapQueries(db)
    assert q.query(chip, (100, 0, 101, 1)).total == 0
    big = populate_grid(db, 1, name="chip-H")  # another chip does not disturb the cache
    assert q.query(big, (0, 0, 1, 1)).total == 1
    from flakefinder.domain import FlakeRecord, LayerClass, TileRecord

    scan = db.start_scan(
        chip,
        settings={},
        objective="",
        um_per_px=1.0,
        detector="t",
        detector_version="1",
        n_tiles_planned=1,
    )
    wide = ((0.0, 0.0), (200.0, 0.0), (200.0, 1.0), (0.0, 1.0))
    rec = FlakeRecord(
        material="graphene",
        layer_class=LayerClass.THICK,
        confidence=1.0,
        polygon_um=wide,
        bbox_um=(0.0, 0.0, 200.0, 1.0),
        area_um2=200.0,
        polygon_px=wide,
        bbox_px=(0.0, 0.0, 200.0, 1.0),
        detector="t",
        detector_version="1",
        tile_index=0,
    )
    db.record_tile(scan, TileRecord(0, 0.0, 0.0, 0.0, 8, 8, 1.0, None), [rec])
    assert q.query(chip, (100, 0, 101, 1)).total == 1


@pytest.mark.parametrize(
    "box",
    [(1, 0, 0, 1), (0, 0, 0, 1), (0, 0, float("nan"), 1), (0, 0, float("inf"), 1), (0, 0, 2e7, 1)],
)
def test_bad_viewports_refused(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError):
        check_bbox(box)


def test_map_api(db_url: str, tmp_path: Path) -> None:
    from flakefinder.db import Database

    db = Database(db_url)
    db.migrate()
    chip = populate_grid(db, 40)  # 1600 flakes: the whole chip comes back as clusters
    db.close()
    app = create_app(ServerSettings(detector="none", database_url=db_url))
    with TestClient(app) as client:
        whole = client.get(f"/api/chips/{chip}/map?x0=-3&y0=-3&x1=397&y1=397").json()
        assert whole["mode"] == "clusters" and whole["total"] == 1600
        assert sum(c["count"] for c in whole["clusters"]) == 1600 and whole["flakes"] == []
        part = client.get(f"/api/chips/{chip}/map?x0=0&y0=0&x1=24&y1=24&material=hBN").json()
        assert part["mode"] == "flakes"
        assert sorted(f["id"] for f in part["flakes"]) == sorted(
            i * 40 + j + 1 for i, j in _expected(40, (0, 0, 24, 24)) if (i + j) % 4 == 0
        )
        assert part["flakes"][0]["polygon_um"] == [[0, 0], [4, 0], [4, 4], [0, 4]]
        assert (
            client.get(f"/api/chips/{chip}/map?x0=0&y0=0&x1=9&y1=9&max_flakes=0").status_code == 422
        )
        for bad in ("x0=5&y0=0&x1=1&y1=9", "x0=nan&y0=0&x1=1&y1=9", "x0=0&y0=0&x1=inf&y1=9"):
            r = client.get(f"/api/chips/{chip}/map?{bad}")
            assert r.status_code == 400, bad
        assert (
            client.get(f"/api/chips/{chip}/map?x0=0&y0=0&x1=1&y1=1&layer_class=huge").status_code
            == 400
        )
        assert client.get("/api/chips/99/map?x0=0&y0=0&x1=1&y1=1").status_code == 404
        page = client.get(f"/chips/{chip}")
        assert page.status_code == 200
        assert page.text.count('class="cluster"') == len(whole["clusters"])
        assert 'class="flake-outline"' not in page.text
        filtered = client.get(f"/chips/{chip}?material=hBN&min_area=1")
        assert filtered.status_code == 200 and 'value="hBN" checked' in filtered.text
        assert client.get(f"/chips/{chip}?min_area=abc").status_code == 400
        assert client.head("/").status_code in (200, 307)
