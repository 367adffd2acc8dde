"""The web UI in headless chromium (Playwright, sync API) against a real uvicorn.

Runs once per database backend (``db_url``: SQLite, and PostgreSQL where a throwaway cluster can be
started). The data are the four flakes of ``web_helpers.populate``: 1 graphene mono 10 µm square,
2 graphene few 15 µm, 3 graphene thick 20 µm, 4 hBN few 12 µm square.

Needs Debian's chromium (``/usr/bin/chromium``, or ``FLAKEFINDER_CHROMIUM``) and the ``playwright``
package; no ``playwright install`` download is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_helpers import checked_page, launched_chromium
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from server_helpers import running_server
from web_helpers import populate, populate_grid, populate_strip

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as b:
        yield b


@pytest.fixture
def base_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    populate(db_url, tmp_path / "tiles").close()
    app = create_app(ServerSettings(detector="none", database_url=db_url))
    with running_server(app) as url:
        yield url


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    with checked_page(browser, base_url, accept_downloads=True) as pg:
        yield pg


def _card_ids(page: Any) -> list[int]:
    return [
        int(v) for v in page.locator(".card").evaluate_all("els => els.map(e => e.dataset.flakeId)")
    ]


def test_gallery_filter_by_material(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/flakes")
    expect(page.locator(".card")).to_have_count(4)
    expect(page.locator("#flake-total")).to_have_text("4 found")
    assert _card_ids(page) == [3, 2, 4, 1]  # default order: largest area first
    page.get_by_label("hBN").check()
    page.locator("#apply-filters").click()
    expect(page).to_have_url(re.compile(r"/flakes\?(.*&)?material=hBN(&|$)"))
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator("#flake-total")).to_have_text("1 found")
    assert _card_ids(page) == [4]
    expect(page.locator(".card")).to_contain_text("hBN few · 8L")
    expect(page.get_by_label("hBN")).to_be_checked()  # the form keeps the filter
    expect(page.get_by_label("graphene")).not_to_be_checked()


def test_flake_mark_used(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/flakes")
    page.locator('.card[data-flake-id="2"]').click()
    expect(page).to_have_url(re.compile(r"/flakes/2$"))
    expect(page.locator("#flake-title")).to_have_text("Flake #2: graphene few (3 layers)")
    expect(page.locator("#current-status")).to_have_text("Current status: new")
    crop = page.locator("#flake-crop")
    expect(crop).to_be_visible()
    assert crop.evaluate("img => img.complete && img.naturalWidth") == 480
    page.locator("#notes").fill("picked for device D7")
    page.get_by_role("button", name="Mark used").click()
    expect(page.locator("#current-status")).to_have_text("Current status: used")
    expect(page.locator("#status-select")).to_have_value("used")
    expect(page.locator("#notes")).to_have_value("picked for device D7")
    # the gallery shows it too, and the status filter finds exactly this flake
    page.goto("/flakes?status=used")
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator('.card[data-flake-id="2"]')).to_have_class(re.compile(r"\bstatus-used\b"))


def test_chip_map_outlines(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/chips")
    page.get_by_role("link", name="chip-A").click()
    expect(page).to_have_url(re.compile(r"/chips/1$"))
    outlines = page.locator("#chipmap polygon.flake-outline")
    expect(outlines).to_have_count(4)
    ids = outlines.evaluate_all("els => els.map(e => Number(e.dataset.flakeId))")
    assert sorted(ids) == [1, 2, 3, 4]
    # the mosaic loads: two 128 px tiles at 0.5 µm/px side by side (128 x 64 µm) are one
    # 256 px tile of 128 µm at level 0, the finest (it has the images' own resolution)
    mosaic = page.locator("#mosaic-layer image")
    expect(mosaic).to_have_count(1)
    assert mosaic.get_attribute("data-tile") == "0/0/0"
    assert [mosaic.get_attribute(k) for k in ("x", "y", "width", "height")] == [
        "68", "68", "128", "128"
    ]  # fmt: skip
    # wheel zooms (the viewBox shrinks); clicking an outline opens its flake
    svg = page.locator("#chipmap")
    before = svg.get_attribute("viewBox")
    assert [float(v) for v in before.split()] == [68.0, 68.0, 128.0, 64.0]
    svg.hover()
    page.mouse.wheel(0, -100)
    expect(svg).not_to_have_attribute("viewBox", before)
    assert float(svg.get_attribute("viewBox").split()[2]) == pytest.approx(128.0 * 0.8)
    # panning (drag) that starts on an outline moves the map and does not open the flake
    page.goto("/chips/1")
    flake3 = page.locator('polygon.flake-outline[data-flake-id="3"]')
    box = flake3.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 40, cy, steps=4)
    page.mouse.move(cx - 80, cy, steps=4)
    page.mouse.up()
    expect(svg).not_to_have_attribute("viewBox", before)
    assert float(svg.get_attribute("viewBox").split()[0]) > 68.0  # content moved left
    expect(page).to_have_url(re.compile(r"/chips/1$"))
    flake3.click()
    expect(page).to_have_url(re.compile(r"/flakes/3$"))


def test_chip_map_markers_keep_their_size_and_zoom_has_limits(page: Any) -> None:
    """Centre markers are 6 screen pixels across at every zoom; zooming in stops at 20 screen
    pixels per µm, zooming out where the whole chip (128 x 64 µm here) fits."""
    from playwright.sync_api import expect

    page.goto("/chips/1")
    svg = page.locator("#chipmap")
    dots = page.locator("#chipmap circle.flake-dot")
    expect(dots).to_have_count(4)

    def dot_px() -> float:
        return float(dots.first.bounding_box()["width"])

    def px_per_um() -> float:
        box = svg.bounding_box()
        _, _, w, h = (float(v) for v in svg.get_attribute("viewBox").split())
        return min(box["width"] / w, box["height"] / h)

    assert dot_px() == pytest.approx(6.0, abs=0.5)
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    start = px_per_um()
    assert start < 20 * 0.8**3
    for _ in range(3):
        page.mouse.wheel(0, -100)
    expect(svg).not_to_have_attribute("viewBox", "68 68 128 64")
    assert px_per_um() == pytest.approx(start / 0.8**3, rel=1e-3)
    assert dot_px() == pytest.approx(6.0, abs=0.5)  # the map is 2x larger, the markers are not
    for _ in range(40):
        page.mouse.wheel(0, -100)
    page.wait_for_function(
        "() => { const s = document.querySelector('#chipmap'), r = s.getBoundingClientRect();"
        " const [, , w, h] = s.getAttribute('viewBox').split(' ').map(Number);"
        " return Math.min(r.width / w, r.height / h) > 19.99; }"
    )
    assert px_per_um() == pytest.approx(20.0, rel=1e-6)
    assert dot_px() == pytest.approx(6.0, abs=0.5)
    for _ in range(60):
        page.mouse.wheel(0, 100)
    expect(svg).to_have_attribute("viewBox", "68 68 128 64")  # the whole chip, no further
    assert dot_px() == pytest.approx(6.0, abs=0.5)


def test_designer_two_layer_stack_and_gds_export(page: Any, tmp_path: Path) -> None:
    import gdstk
    from playwright.sync_api import expect

    page.goto("/designs")
    page.locator("#new-design").click()
    expect(page).to_have_url(re.compile(r"/designs/new$"))
    expect(page.locator("#picker-list .add-flake")).to_have_count(4)
    expect(page.locator("#summary")).to_contain_text("Add at least two flakes")
    # bottom: hBN #4 (12 µm square), top: graphene #1 (10 µm square), both centred at (0, 0)
    page.locator('.add-flake[data-flake-id="4"]').click()
    page.locator('.add-flake[data-flake-id="1"]').click()
    expect(page.locator("#layer-list .layer-item")).to_have_count(2)
    expect(page.locator("#stack-canvas polygon.stack-layer")).to_have_count(2)
    expect(page.locator("#layer-list .layer-item").first).to_contain_text("#4 hBN 8L")
    expect(page.locator("#overlap-area")).to_have_text("100.0")
    expect(page.locator("#pair-list .twist")).to_have_text("0.00")
    # rotate the top layer by 10°: it still lies inside the 12 µm square (half-width
    # 5·(cos 10° + sin 10°) = 5.79 µm < 6 µm), so the overlap stays 100 µm² and the twist is 10°
    rot = page.locator("#layer-list .layer-item").nth(1).locator(".layer-rot")
    rot.fill("10")
    rot.press("Enter")
    expect(page.locator("#pair-list .twist")).to_have_text("10.00")
    expect(page.locator("#overlap-area")).to_have_text("100.0")
    expect(page.locator("#pair-list")).to_contain_text("layers 1–2: overlap 100.0 µm²")

    page.locator("#design-name").fill("hBN/graphene browser")
    page.locator("#save-design").click()
    expect(page.locator("#save-status")).to_have_text("Saved as design #1.")
    expect(page).to_have_url(re.compile(r"/designs/1$"))
    expect(page.locator("#export-links")).to_be_visible()
    expect(page.locator("#export-gds")).to_have_attribute("href", "/api/designs/1/export.gds")

    with page.expect_download() as info:
        page.locator("#export-gds").click()
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename == "design_1.gds"
    gds_path = tmp_path / download.suggested_filename
    download.save_as(gds_path)
    lib = gdstk.read_gds(str(gds_path))
    (cell,) = lib.top_level()
    assert isinstance(cell, gdstk.Cell)
    assert cell.name == "hBN_graphene_browser"
    by_layer: dict[int, list[Any]] = {}
    for poly in cell.polygons:
        by_layer.setdefault(poly.layer, []).append(poly)
    assert sorted(by_layer) == [1, 2, 100]  # two flake layers plus the stack overlap
    assert [len(by_layer[k]) for k in (1, 2)] == [1, 1]
    assert by_layer[1][0].area() == pytest.approx(144.0, abs=1e-3)
    assert by_layer[2][0].area() == pytest.approx(100.0, rel=1e-4)  # nm grid
    assert sum(p.area() for p in by_layer[100]) == pytest.approx(100.0, rel=1e-4)
    assert sorted(label.text for label in cell.labels) == ["#1 graphene 1L", "#4 hBN 8L"]

    # the saved design reloads into the editor with the same stack
    exported = page.request.get("/api/designs/1/export.json").json()
    assert [(lay["flake_id"], lay["rotation_deg"]) for lay in exported["layers"]] == [
        (4, 0.0),
        (1, 10.0),
    ]
    page.goto("/designs")
    expect(page.get_by_role("link", name="hBN/graphene browser")).to_be_visible()
    page.get_by_role("link", name="hBN/graphene browser").click()
    expect(page.locator("#layer-list .layer-item")).to_have_count(2)
    expect(page.locator("#design-name")).to_have_value("hBN/graphene browser")
    expect(page.locator("#layer-list .layer-item").nth(1).locator(".layer-rot")).to_have_value(
        "10.0"
    )
    expect(page.locator("#pair-list .twist")).to_have_text("10.00")


def test_designer_colours_each_flake_and_shows_a_scale_bar(page: Any) -> None:
    """Two graphene flakes in one stack get two colours (as in the layer list); the scale bar's
    length on screen matches its label in µm before and after zooming."""
    from playwright.sync_api import expect

    page.goto("/designs/new")
    page.locator('.add-flake[data-flake-id="1"]').click()
    page.locator('.add-flake[data-flake-id="2"]').click()
    polys = page.locator("#stack-canvas polygon.stack-layer")
    expect(polys).to_have_count(2)
    fills = polys.evaluate_all("els => els.map(e => getComputedStyle(e).fill)")
    assert fills[0] != fills[1]
    listed = page.locator("#layer-list .layer-item").evaluate_all(
        "els => els.map(e => e.dataset.colour)"
    )
    assert [p.get_attribute("fill") for p in polys.all()] == listed
    expect(page.locator("#layer-list .layer-item .layer-swatch rect")).to_have_count(2)
    svg = page.locator("#stack-canvas")

    def scale_bar() -> tuple[float, float]:
        """(length in µm from the label, length in screen px)."""
        label = page.locator("#scale-bar text").text_content()
        m = re.fullmatch(r"([0-9.]+) µm", label or "")
        assert m, label
        um = float(m.group(1))
        assert um == float(page.locator("#scale-bar").get_attribute("data-um"))
        box = svg.bounding_box()
        _, _, w, h = (float(v) for v in svg.get_attribute("viewBox").split())
        px_per_um = min(box["width"] / w, box["height"] / h)
        line_um = float(page.locator("#scale-bar line").get_attribute("x2")) - float(
            page.locator("#scale-bar line").get_attribute("x1")
        )
        assert line_um == pytest.approx(um)
        return um, line_um * px_per_um

    um, px = scale_bar()
    assert 48 <= px <= 120 and re.fullmatch(r"[125]0*|0\.0*[125]", f"{um:g}")
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    before = svg.get_attribute("viewBox")
    for _ in range(5):
        page.mouse.wheel(0, -100)
    expect(svg).not_to_have_attribute("viewBox", before)
    um2, px2 = scale_bar()
    assert 48 <= px2 <= 120 and um2 < um  # 3x closer: a shorter length fills the bar
    expect(polys).to_have_count(2)


def test_chip_map_loads_flakes_in_view_and_more_on_pan(page: Any, db_url: str) -> None:
    """1600 flakes (``populate_grid``): clusters at first, outlines once zoomed in, and a pan
    fetches the flakes of the new area from the viewport API."""
    from playwright.sync_api import expect

    from flakefinder.db import Database

    db = Database(db_url)
    chip = populate_grid(db, 40)
    db.close()
    page.set_viewport_size({"width": 1000, "height": 700})
    api_calls: list[str] = []
    page.on("request", lambda req: api_calls.append(req.url) if "/map?" in req.url else None)
    page.goto(f"/chips/{chip}")
    svg = page.locator("#chipmap")
    expect(svg).to_have_attribute("data-mode", "clusters")
    clusters = page.locator("#chipmap .cluster")
    assert clusters.count() > 1
    counts = clusters.evaluate_all("els => els.map(e => Number(e.dataset.count))")
    assert sum(counts) == 1600
    expect(page.locator("#chip-total")).to_have_text("1600 flakes")
    assert api_calls == []  # the first view comes with the page
    # zoom in at the centre until the view holds few enough flakes for outlines
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(8):
        page.mouse.wheel(0, -100)
    expect(svg).to_have_attribute("data-mode", "flakes")
    outlines = page.locator("#chipmap polygon.flake-outline")
    expect(outlines.first).to_be_visible()
    before = set(outlines.evaluate_all("els => els.map(e => Number(e.dataset.flakeId))"))
    assert 0 < len(before) <= 1000 and api_calls
    requests_before = int(svg.get_attribute("data-requests"))
    # drag the map 600 px to the left: the view moves right, past the margin loaded so far
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 300, cy, steps=5)
    page.mouse.move(cx - 600, cy, steps=5)
    page.mouse.up()
    expect(svg).not_to_have_attribute("data-requests", str(requests_before))
    expect(svg).to_have_attribute("data-mode", "flakes")
    after = set(outlines.evaluate_all("els => els.map(e => Number(e.dataset.flakeId))"))
    assert after - before, "the pan loaded no new flakes"
    # flake ids are i * 40 + j + 1 for the flake at (10 i, 10 j): new ones lie further right
    assert max((i - 1) // 40 for i in after) > max((i - 1) // 40 for i in before)
    # outlines still link to their flakes: click a newly loaded one in the middle of the map
    on_screen = svg.evaluate(
        """svg => { const r = svg.getBoundingClientRect();
        return [...svg.querySelectorAll("polygon.flake-outline")].filter(p => {
          const b = p.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
          return x > r.left + 50 && x < r.right - 50 && y > r.top + 50 && y < r.bottom - 50;
        }).map(p => Number(p.dataset.flakeId)); }"""
    )
    new_id = min(set(on_screen) & (after - before))
    page.locator(f'polygon.flake-outline[data-flake-id="{new_id}"]').click()
    expect(page).to_have_url(re.compile(rf"/flakes/{new_id}$"))


def test_chip_map_of_a_long_thin_scan_loads_tiles_in_view(
    page: Any, db_url: str, tmp_path: Path
) -> None:
    """0.15 mm x 10 mm: the map asks for the few 256 px tiles on screen, finer ones as it zooms
    in, never one picture of the whole strip."""
    import io

    from PIL import Image
    from playwright.sync_api import expect

    from flakefinder.db import Database

    db = Database(db_url)
    chip = populate_strip(db, tmp_path / "strip")
    db.close()
    page.set_viewport_size({"width": 1000, "height": 700})
    tiles: list[tuple[str, tuple[int, int]]] = []
    others: list[str] = []

    def seen(response: Any) -> None:
        if "/mosaic" not in response.url:
            return
        if "/mosaic/" in response.url and response.ok:
            tiles.append((response.url, Image.open(io.BytesIO(response.body())).size))
        else:
            others.append(response.url)

    settled = """() => { const layer = document.getElementById("mosaic-layer");
        const shown = [...layer.querySelectorAll("image")];
        return shown.length > 0 && shown.every(
          (e) => e.dataset.loaded === "load" && e.dataset.zoom === layer.dataset.zoom); }"""
    page.on("response", seen)
    page.goto(f"/chips/{chip}")
    layer = page.locator("#mosaic-layer")
    page.wait_for_function(settled)
    first = [url for url, _ in tiles]
    assert first and len(first) <= 8, first
    assert all(size == (256, 256) for _, size in tiles)
    assert others == []  # no whole-chip picture, no failed tile
    zoom = int(layer.get_attribute("data-zoom"))
    # zoom in at the middle of the strip: finer tiles of that part only
    svg = page.locator("#chipmap")
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(12):
        page.mouse.wheel(0, -100)
    expect(layer).not_to_have_attribute("data-zoom", str(zoom))
    page.wait_for_function(settled)
    finer = int(layer.get_attribute("data-zoom"))
    assert finer > zoom
    shown = layer.locator("image").evaluate_all("els => els.map(e => e.dataset.tile)")
    assert shown and all(t.startswith(f"{finer}/") for t in shown)
    assert len(shown) <= 12 and len(tiles) <= 30
    assert all(size == (256, 256) for _, size in tiles) and others == []


def test_api_docs_work_offline(page: Any, base_url: str) -> None:
    """/docs renders Swagger UI with every request outside the server blocked."""
    from playwright.sync_api import expect

    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_local)
    page.goto("/flakes")
    page.get_by_role("link", name="API").click()
    expect(page).to_have_url(re.compile(r"/docs$"))
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("flakefinder inference server")
    expect(page.locator(".opblock-summary-path", has_text="/api/detect").first).to_be_visible()
    assert outside == []
    assert page.request.head("/").ok
    favicon = page.request.get("/favicon.ico")
    assert favicon.ok and favicon.headers["content-type"] == "image/x-icon"


def test_setup_page_click_flakes_calibrate_and_save(page: Any, tmp_path: Path) -> None:
    """Upload two rendered micrographs, click every flake (and a thick one), calibrate with
    proposed layers, accept them (the thick flake has none and is left out, with a note),
    calibrate again, see the clusters over the optics curve, save the profile."""
    from playwright.sync_api import expect

    from flakefinder.calibration import SetupProfile
    from setup_helpers import UM_PER_PX, centre, png, rendered

    images, truth = rendered()
    paths = []
    for k, im in enumerate(images):
        paths.append(tmp_path / f"view{k}.png")
        paths[-1].write_bytes(png(im))
    page.goto("/flakes")
    page.locator("#nav-setup").click()
    expect(page).to_have_url(re.compile(r"/setup$"))
    page.locator("#material").select_option("graphene")
    page.locator("#oxide-nm").fill("90")
    page.locator("#um-per-px").fill(str(UM_PER_PX))
    page.locator("#profile-name").fill("browser-setup")
    page.locator("#image-files").set_input_files([str(p) for p in paths])
    expect(page.locator("#image-list li")).to_have_count(2)
    canvas = page.locator("#setup-canvas")
    n_regions = 0
    for k in range(len(images)):
        page.locator(f'#image-list li[data-index="{k}"]').click()
        expect(canvas).to_have_attribute("data-image", str(k))
        box = canvas.bounding_box()
        for kk, mask, _ in truth:
            if kk != k:
                continue
            x, y = centre(mask)
            page.mouse.click(
                box["x"] + (x + 0.5) * box["width"] / 240,
                box["y"] + (y + 0.5) * box["height"] / 180,
            )
            n_regions += 1
            expect(page.locator("#region-list .region-item")).to_have_count(n_regions)
    # the 60-layer square of view 1 (pixels 90-150 x 85-145): too thick for a layer number
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 120.5 * box["width"] / 240, box["y"] + 115.5 * box["height"] / 180)
    expect(page.locator("#region-list .region-item")).to_have_count(n_regions + 1)
    page.locator("#calibrate").click()
    expect(page.locator("#setup-status")).to_contain_text("calibrated (masks)")
    proposed = page.locator("#region-list .proposed").all_inner_texts()
    assert proposed == [f"proposed: {n}" for _, _, n in truth] + ["proposed: none"]
    page.locator("#accept-proposed").click()
    values = page.locator("#region-list input").evaluate_all("els => els.map(e => e.value)")
    assert values == [str(n) for _, _, n in truth] + [""]
    page.locator("#calibrate").click()
    note = f"flake #{n_regions + 1} has no layer number: left out of the calibration"
    expect(page.locator("#setup-status")).to_contain_text("calibrated (labels)")
    expect(page.locator("#setup-status")).to_contain_text(note)
    expect(page.locator("#calibration-notes li")).to_have_text([note])
    expect(page.locator("#region-list .region-item.skipped")).to_have_count(1)
    expect(page.locator("#region-list .region-item").last).to_have_class(re.compile(r"\bskipped\b"))
    expect(page.locator("#region-list .proposed").last).to_have_text(
        "proposed: none · left out (no layer number)"
    )
    expect(page.locator("#colour-table tr.entry-measured")).to_have_count(3)
    expect(page.locator("#cluster-plot polyline.optics-curve")).to_have_count(3)
    assert page.locator("#cluster-plot circle.cluster-point").count() == 9  # 3 layers × RGB
    with page.expect_download() as info:
        page.locator("#save-profile").click()
    saved = tmp_path / "saved.json"
    info.value.save_as(saved)
    profile = SetupProfile.load(saved)
    assert profile.name == "browser-setup"
    assert [e.n_layers for e in profile.table("graphene").layers if e.source == "measured"] == [
        1,
        2,
        3,
    ]
