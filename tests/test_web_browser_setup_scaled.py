"""The Setup page in headless chromium with uploads larger than the server's working size: the
page draws the working image and speaks to the API in the upload's pixels (issue 14)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from browser_helpers import checked_page
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from server_helpers import running_server
from test_web_browser import browser  # noqa: F401 (the chromium fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def scaled_page(browser: Any, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    settings = ServerSettings(
        detector="none",
        database_url=f"sqlite:///{tmp_path / 'f.db'}",
        max_work_pixels=240 * 180,  # the 720 x 540 uploads are kept at 240 x 180
    )
    with running_server(create_app(settings)) as url, checked_page(browser, url) as page:
        yield page


def test_setup_page_on_uploads_shrunk_to_the_working_size(scaled_page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from setup_helpers import UM_PER_PX, centre, png, rendered

    page = scaled_page
    images, truth = rendered()
    paths = []
    for k, im in enumerate(images):
        paths.append(tmp_path / f"view{k}.png")
        paths[-1].write_bytes(png(np.repeat(np.repeat(im, 3, axis=0), 3, axis=1)))
    page.goto("/setup")
    page.locator("#material").select_option("graphene")
    page.locator("#oxide-nm").fill("90")
    page.locator("#um-per-px").fill(str(UM_PER_PX / 3))  # the upload's pixel size
    page.locator("#image-files").set_input_files([str(p) for p in paths])
    expect(page.locator("#image-list li")).to_have_count(2)
    expect(page.locator("#image-list li").first).to_contain_text("(720×540)")
    canvas = page.locator("#setup-canvas")
    n_regions = 0
    for k in range(len(images)):
        page.locator(f'#image-list li[data-index="{k}"]').click()
        expect(canvas).to_have_attribute("data-image", str(k))
        assert canvas.evaluate("c => [c.width, c.height]") == [240, 180]  # the working image
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
            # the area is counted in upload pixels: nine per working pixel
            status = page.locator("#setup-status").inner_text()
            area = int(re.search(r": (\d+) px", status).group(1))  # type: ignore[union-attr]
            assert abs(area - 9 * int(mask.sum())) < 0.05 * 9 * mask.sum()
    page.locator("#calibrate").click()
    expect(page.locator("#setup-status")).to_contain_text("calibrated (masks)")
    proposed = page.locator("#region-list .proposed").all_inner_texts()
    assert proposed == [f"proposed: {n}" for _, _, n in truth]
