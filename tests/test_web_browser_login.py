"""The web UI behind an API key, in headless chromium: log in once, then browse, change a
flake's status (a same-origin form post) and save a design (fetch) with the session cookie.
Skips like ``test_web_browser.py`` when chromium or playwright is missing."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from server_helpers import running_server
from web_helpers import populate

pytestmark = pytest.mark.browser

KEY = "browser-key-42"
CHROMIUM = os.environ.get("FLAKEFINDER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (set FLAKEFINDER_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    url = f"sqlite:///{tmp_path / 'web.db'}"
    populate(url, tmp_path / "tiles").close()
    app = create_app(ServerSettings(detector="none", database_url=url, api_key=KEY))
    with running_server(app) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(base_url=base)
        context.set_default_timeout(10_000)
        sync_api.expect.set_options(timeout=10_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield pg
            assert errors == []
        finally:
            browser.close()


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
