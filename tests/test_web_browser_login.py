"""The web UI behind an API key, in headless chromium: log in once, then browse, change a
flake's status (a same-origin form post) and save a design (fetch) with the session cookie.
Skips like ``test_web_browser.py`` when chromium or playwright is missing."""

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
from web_helpers import populate

pytestmark = pytest.mark.browser

KEY = "browser-key-42"


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    populate(url, tmp_path / "tiles").close()
    app = create_app(ServerSettings(detector="none", database_url=url, api_key=KEY))
    with launched_chromium() as browser, running_server(app) as base, checked_page(browser, base) as pg:
        yield pg


def test_login_then_browse_change_and_design(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/flakes/2")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fflakes%2F2$"))
    page.locator("#api_key").fill("wrong")
    page.locator("#login").click()
    expect(page.locator(".error")).to_have_text("wrong API key")
    page.locator("#api_key").fill(KEY)
    page.locator("#login").click()
    expect(page).to_have_url(re.compile(r"/flakes/2$"))
    cookies = page.context.cookies()
    session = [c for c in cookies if c["name"] == "flakefinder_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    # a form post with the cookie (chromium sends the Origin)
    page.get_by_role("button", name="Mark used").click()
    expect(page.locator("#current-status")).to_have_text("Current status: used")
    # the designer's fetch calls (GET flakes, POST preview, POST design) work with the cookie
    page.goto("/designs/new")
    expect(page.locator("#picker-list .add-flake")).to_have_count(4)
    page.locator('.add-flake[data-flake-id="4"]').click()
    page.locator('.add-flake[data-flake-id="1"]').click()
    expect(page.locator("#overlap-area")).to_have_text("100.0")
    page.locator("#design-name").fill("behind a key")
    page.locator("#save-design").click()
    expect(page.locator("#save-status")).to_have_text("Saved as design #1.")
