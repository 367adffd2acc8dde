"""The hunt in headless chromium: the region editor on the scan page, close-ups on the flake
page (click to zoom), the overview under the chip map; each step leaves a screenshot
(in ``$FLAKEFINDER_SCREENSHOTS`` when set, else in the test's temporary folder)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_helpers import checked_page, launched_chromium
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from hunt_helpers import populate_hunt
from server_helpers import running_server

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, db_url: str, tmp_path: Path) -> Iterator[Any]:
    populate_hunt(db_url, tmp_path).close()
    app = create_app(ServerSettings(detector="none", database_url=db_url))
    viewport = {"width": 1280, "height": 900}
    with running_server(app) as url, checked_page(browser, url, viewport=viewport) as pg:
        yield pg


def shot(page: Any, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("FLAKEFINDER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"hunt_{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_region_editor_edits_and_saves(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/scans")
    page.locator('#scan-table a[href="/scans/2"]').first.click()
    expect(page).to_have_url(re.compile(r"/scans/2$"))
    expect(page.locator("#overview-image")).to_be_attached()
    expect(page.locator("#tile-layer rect.tile")).to_have_count(8)
    expect(page.locator("#region-tiles")).to_have_text("8")
    expect(page.locator("#exclusion-list li")).to_have_count(1)
    expect(page.locator("#region-x1")).to_have_value("240")
    shot(page, tmp_path, "region_before")
    # widen the region by typing its right edge, drop the residue patch, draw an area to skip
    page.locator("#region-x1").fill("300")
    page.locator("#region-x1").press("Tab")
    expect(page.locator("#region-rect")).to_have_attribute("width", "240")
    page.locator("#exclusion-list .remove-exclusion").click()
    expect(page.locator("#exclusion-list li")).to_have_count(0)
    svg = page.locator("#region-map")
    ctm = svg.evaluate("s => { const m = s.getScreenCTM(); return [m.a, m.d, m.e, m.f]; }")
    to_px = lambda x, y: (ctm[0] * x + ctm[2], ctm[1] * y + ctm[3])  # noqa: E731
    page.keyboard.down("Shift")
    page.mouse.move(*to_px(58, 58))
    page.mouse.down()
    page.mouse.move(*to_px(100, 100), steps=3)
    page.mouse.move(*to_px(132, 132), steps=3)
    page.mouse.up()
    page.keyboard.up("Shift")
    expect(page.locator("#exclusion-layer rect.exclusion.user")).to_have_count(1)
    expect(page.locator("#region-status")).to_have_text("Not saved yet.")
    page.locator("#save-region").click()
    expect(page.locator("#region-status")).to_have_text("Saved: 9 tiles at 20x.")
    expect(page.locator("#tile-layer rect.tile")).to_have_count(9)
    shot(page, tmp_path, "region_saved")
    saved = page.request.get("/api/scans/2/region").json()
    assert saved["region"]["rect_um"] == [60, 60, 300, 140]
    [ex] = saved["region"]["exclusions"]
    assert ex["kind"] == "user" and ex["rect_um"][2] == pytest.approx(132, abs=1.5)
    page.reload()  # the saved region comes back, marked as edited
    expect(page.locator("#region-summary")).to_contain_text("it was edited")
    expect(page.locator("#region-tiles")).to_have_text("9")


def test_flake_page_shows_closeups_and_zooms(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/flakes/2")
    closeups = page.locator("#closeups a.closeup img")
    expect(closeups).to_have_count(2)
    for i in range(2):
        expect(closeups.nth(i)).to_be_visible()
        assert closeups.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0
    expect(page.locator("#closeups .refined")).to_contain_text("2 layers")
    expect(page.locator("#closeups .changed")).to_have_text("(search: 3)")
    shot(page, tmp_path, "flake_closeups")
    page.locator("#closeups a.closeup").first.click()
    zoom = page.locator("#zoom")
    expect(zoom).to_be_visible()
    expect(page.locator("#zoom-caption")).to_contain_text("50x, z +0.00 µm from best focus")
    page.wait_for_function("() => document.getElementById('zoom-image').naturalWidth === 160")
    shot(page, tmp_path, "flake_zoom")
    page.locator("#zoom-close").click()
    expect(zoom).not_to_be_visible()


def test_chip_map_shows_the_overview_under_the_tiles(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with page.expect_response(re.compile(r"/passes/1/mosaic\.png$")) as info:
        page.goto("/chips/1")
    assert info.value.ok
    layer = page.locator("#overview-layer")
    expect(layer).to_be_attached()
    # the overview comes first (below), the tiles' mosaic over it, the flakes on top
    order = page.locator("#chipmap").evaluate(
        "s => [...s.children].map(c => c.id || c.tagName.toLowerCase())"
    )
    assert order.index("overview-layer") < order.index("mosaic-layer") < order.index("flake-layer")
    # the tiles' mosaic is a pyramid over the tiles' own extent (two 128 px images at 0.5 µm/px
    # from (68, 68): one 256 px tile of 128 µm), not over the map's, which the overview widens
    page.wait_for_function(
        """() => { const shown = [...document.querySelectorAll("#mosaic-layer image")];
        return shown.length > 0 && shown.every((e) => e.dataset.loaded === "load"); }"""
    )
    tile = page.locator("#mosaic-layer image")
    expect(tile).to_have_count(1)
    assert tile.get_attribute("data-tile") == "0/0/0"
    assert [tile.get_attribute(k) for k in ("x", "y", "width", "height")] == [
        "68", "68", "128", "128"
    ]  # fmt: skip
    expect(page.locator("#chipmap polygon.flake-outline")).to_have_count(4)
    assert page.locator("#chipmap").get_attribute("viewBox") == "0.0 0.0 400.0 300.0"
    shot(page, tmp_path, "chipmap_overview")
    page.goto("/scans/1")
    expect(page.locator("#pass-table .pass-row")).to_have_count(2)
    expect(page.locator("#pass-table .pass-revisit")).to_contain_text("route 0.05 mm")
    shot(page, tmp_path, "scan_passes")
