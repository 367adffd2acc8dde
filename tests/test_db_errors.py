"""Database settings and errors: URLs from the environment, one clear message, password masked."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from flakefinder.db import Database, DatabaseSettings, mask_url
from flakefinder.errors import DatabaseError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def test_settings_from_env() -> None:
    assert DatabaseSettings.from_env(environ={}).url == "sqlite:///flakefinder.db"
    env = {"FLAKEFINDER_DATABASE_URL": "postgresql+psycopg://u:pw@h/db"}
    assert DatabaseSettings.from_env(environ=env).url == "postgresql+psycopg://u:pw@h/db"
    assert DatabaseSettings.from_env("sqlite:///x.db", environ=env).url == "sqlite:///x.db"
    assert DatabaseSettings.from_env(environ=env).masked_url == "postgresql+psycopg://u:***@h/db"


def test_mask_url() -> None:
    assert mask_url("postgresql+psycopg://bob:s3cr:et@db.lab:5432/flakes") == (
        "postgresql+psycopg://bob:***@db.lab:5432/flakes"
    )
    assert mask_url("postgresql://bob@host/db") == "postgresql://bob@host/db"
    assert mask_url("sqlite:///flakes.db") == "sqlite:///flakes.db"


def test_connection_refused_is_one_clear_message() -> None:
    port = _closed_port()
    db = Database(f"postgresql+psycopg://bob:hunter2@127.0.0.1:{port}/flakes")
    with pytest.raises(DatabaseError) as info:
        db.list_chips()
    assert str(info.value) == (
        f"cannot connect to postgresql+psycopg://bob:***@127.0.0.1:{port}/flakes: connection refused"
    )
    with pytest.raises(DatabaseError, match="connection refused"):
        db.migrate()
    with pytest.raises(DatabaseError) as never:
        db.ping()
    assert "hunter2" not in str(never.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nosuchdb://x/y", "no SQLAlchemy dialect/driver"),
        ("not a url", "bad database URL"),
        ("mysql+mysqldb://bob:hunter2@host/db", "database driver MySQLdb is not installed"),
    ],
)
def test_bad_url_or_missing_driver(url: str, expected: str) -> None:
    with pytest.raises(DatabaseError, match=expected) as info:
        Database(url)
    assert "hunter2" not in str(info.value)


def test_unmigrated_database_says_upgrade(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseError, match="run `flakefinder db upgrade`"):
        db.list_chips()
    db.close()


def test_unopenable_sqlite_file(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(
        DatabaseError, match="cannot connect to sqlite:.*unable to open database file"
    ):
        db.migrate()
