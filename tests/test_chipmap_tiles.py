"""The chip mosaic as a tile pyramid: a long thin scan (0.15 mm x 10 mm) is served as 256 px
tiles of the zoom level asked, each showing exactly the stored images under it, from bounded
caches; the overview keeps its longer side at 1600 px (it used to be 1,600 x 107,000 px)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from flakefinder.db import Database
from flakefinder.web.mosaic import TILE_PX, ByteLRU, MosaicRenderer, Pyramid, create_mosaic_router
from web_helpers import populate_strip, strip_colour

N_TILES = 67


@pytest.fixture(scope="module")
def strip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, int, ByteLRU]]:
    tmp = tmp_path_factory.mktemp("strip")
    db = Database(f"sqlite:///{tmp / 'strip.db'}")
    db.migrate()
    chip = populate_strip(db, tmp / "tiles", N_TILES)
    rendered = ByteLRU(150_000)  # small: a few dozen tiles
    renderer = MosaicRenderer(thumb_cache_bytes=100_000)
    app = FastAPI()
    app.include_router(create_mosaic_router(db, renderer=renderer, rendered=rendered))
    with TestClient(app) as client:
        yield client, chip, rendered
    db.close()


def _png(client: TestClient, url: str) -> np.ndarray:
    r = client.get(url)
    assert r.status_code == 200, (url, r.text[:200])
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_the_pyramid_of_a_long_thin_scan(strip: tuple[TestClient, int, ByteLRU]) -> None:
    client, chip, _ = strip
    # 10,050 µm long side at 1.17 µm/px: 33.5 tiles of 256 px, so levels 0 to 6
    top = _png(client, f"/chips/{chip}/mosaic/0/0/0.png")
    assert top.shape == (TILE_PX, TILE_PX, 4)
    painted = np.nonzero(top[:, :, 3])[1]
    assert painted.min() == 0 and painted.max() <= 4  # the strip: 150 / 10050 of 256 px
    assert client.get(f"/chips/{chip}/mosaic/0/1/0.png").status_code == 404
    assert client.get(f"/chips/{chip}/mosaic/7/0/0.png").status_code == 404
    assert client.get(f"/chips/{chip}/mosaic/6/1/0.png").status_code == 404  # one tile across
    assert client.get(f"/chips/{chip}/mosaic/6/0/63.png").status_code == 200
    assert client.get(f"/chips/{chip}/mosaic/6/0/64.png").status_code == 404
    assert client.get("/chips/999/mosaic/0/0/0.png").status_code == 404


@pytest.mark.parametrize("j", [0, 1, 31, 40, 63])
def test_a_tile_shows_the_images_under_it(strip: tuple[TestClient, int, ByteLRU], j: int) -> None:
    client, chip, _ = strip
    tile = _png(client, f"/chips/{chip}/mosaic/6/0/{j}.png")
    assert tile.shape == (TILE_PX, TILE_PX, 4)
    side_um = 150.0 * N_TILES / 2**6  # µm per tile at level 6
    for row in (8, 128, 247):  # sample rows away from the images' edges
        y_um = (j + (row + 0.5) / TILE_PX) * side_um
        i = int(y_um // 150.0)
        if abs(y_um - 150.0 * round(y_um / 150.0)) < 2 * side_um / TILE_PX or i >= N_TILES:
            continue
        assert tuple(tile[row, 40, :3]) == strip_colour(i), (j, row, i)
        assert tile[row, 40, 3] == 255
    # beyond the strip's 150 µm width the tile is transparent
    beyond = int(150.0 / side_um * TILE_PX) + 2
    assert (tile[:, beyond:, 3] == 0).all()


def test_caches_stay_within_their_size(strip: tuple[TestClient, int, ByteLRU]) -> None:
    client, chip, rendered = strip
    sizes = []
    for z in range(7):
        for j in range(min(2**z, 64)):
            r = client.get(f"/chips/{chip}/mosaic/{z}/0/{j}.png")
            assert r.status_code == 200
            sizes.append(len(r.content))
    assert sum(sizes) > rendered.max_bytes  # more than fits: the cache dropped the oldest
    assert 0 < rendered.bytes <= rendered.max_bytes and 0 < len(rendered) < len(sizes)


def test_the_overview_is_bounded(strip: tuple[TestClient, int, ByteLRU]) -> None:
    client, chip, _ = strip
    overview = _png(client, f"/chips/{chip}/mosaic.png")
    assert overview.shape[0] == 1600 and overview.shape[1] <= 30  # long side 1600 px, not 107k
    assert tuple(overview[800, overview.shape[1] // 2, :3]) == strip_colour(int(N_TILES / 2))


def test_byte_lru() -> None:
    cache = ByteLRU(100)
    for k in range(10):
        cache.put(k, b"x" * 30, 30)
    assert cache.bytes == 90 and len(cache) == 3 and cache.get(9) is not None
    assert cache.get(0) is None
    cache.put("big", b"x" * 101, 101)  # larger than the cache: not kept
    assert cache.get("big") is None and cache.bytes == 90


def test_pyramid_levels(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    db.migrate()
    populate_strip(db, tmp_path / "tiles", 3, name="short")
    pyramid = Pyramid.of(db.list_images(1))
    db.close()
    assert pyramid is not None
    assert pyramid.extent.width_um == pytest.approx(150.0)
    assert pyramid.extent.height_um == pytest.approx(450.0)
    assert pyramid.max_zoom == 1  # 450 µm / (256 px * 1.17 µm/px) = 1.5 tiles: ceil(log2 1.5)
    assert pyramid.tiles(0) == (1, 1) and pyramid.tiles(1) == (1, 2)
    assert pyramid.tile_rect(1, 0, 1) == pytest.approx((0.0, 225.0, 225.0, 450.0))
    assert not pyramid.contains(2, 0, 0) and not pyramid.contains(1, 1, 0)
