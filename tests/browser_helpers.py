"""Headless chromium for the web UI tests: Debian's chromium driven by Playwright (no
``playwright install`` download), and pages that fail on any JavaScript error."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FLAKEFINDER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000  # per auto-waiting action / assertion


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """A chromium browser; skips the test when chromium or playwright is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (set FLAKEFINDER_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def checked_page(browser: Any, base_url: str, **context_options: Any) -> Iterator[Any]:
    """A page of a fresh browser context at ``base_url``; fails when the page raised a
    JavaScript error or the Content-Security-Policy blocked anything (the UI must not need it)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(base_url=base_url, **context_options)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on(
        "console",
        lambda msg: errors.append(msg.text)
        if msg.type == "error" and "Content Security Policy" in msg.text
        else None,
    )
    try:
        yield pg
        assert errors == [], f"JavaScript errors: {errors}"
    finally:
        context.close()
