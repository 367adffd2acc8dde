"""Finding 9: database passwords never appear in messages, whatever the URL looks like."""

from __future__ import annotations

import socket

import pytest

from flakefinder.db import Database, mask_url
from flakefinder.db.settings import scrub_secrets
from flakefinder.errors import DatabaseError


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://bob:p@ss@host/db", "postgresql://bob:***@host/db"),
        (
            "postgresql://bob:a/b@c@host:5432/db?sslmode=require",
            "postgresql://bob:***@host:5432/db?sslmode=require",
        ),
        (
            "postgresql://host/db?user=bob&password=hunter2",
            "postgresql://host/db?user=bob&password=***",
        ),
        (
            "postgresql://bob:x@host/db?PASSWORD=y&a=1",
            "postgresql://bob:***@host/db?PASSWORD=***&a=1",
        ),
        ("postgresql:bob:hunter2@host/db", "postgresql:***@host/db"),
        ("bob:hunter2@host", "bob:***@host"),
        ("sqlite:////home/me@lab/x.db", "sqlite:////home/me@lab/x.db"),
        ("postgresql://bob@host/db", "postgresql://bob@host/db"),
    ],
)
def test_mask_url_forms(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_scrub_secrets_in_driver_text() -> None:
    url = "postgresql://bob:p@ss@host/db?password=q1"
    text = f"could not use {url}: password p@ss rejected, q1 too"
    out = scrub_secrets(text, url)
    assert "p@ss" not in out and "q1" not in out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://bob:hu@nter2@127.0.0.1:{port}/flakes",
        "postgresql+psycopg://127.0.0.1:{port}/flakes?user=bob&password=hunter2",
        "postgresql+psycopg://bob:hunter2@127.0.0.1:notaport/flakes",
        "postgresql+psycopg:bob:hunter2@127.0.0.1/flakes",
    ],
)
def test_no_password_in_database_errors(url: str) -> None:
    url = url.format(port=_closed_port())
    with pytest.raises(DatabaseError) as info:
        Database(url).list_chips()
    assert "hunter2" not in str(info.value) and "nter2" not in str(info.value)
    assert "***" in str(info.value) or "bad database URL" in str(info.value)
