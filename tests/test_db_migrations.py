"""The packaged Alembic migrations build exactly the schema that flakefinder.db.models describes."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from flakefinder.db import Database
from flakefinder.db.models import Base
from flakefinder.db.schema import head_revision


def test_migrated_schema_matches_models(db_url: str) -> None:
    db = Database(db_url)
    assert db.schema_revision() == (None, head_revision())
    db.migrate()
    db.migrate()  # idempotent
    assert db.schema_revision() == (head_revision(), head_revision())
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
        tables = set(inspect(conn).get_table_names())
    db.close()
    assert diff == []
    assert {"chips", "scans", "images", "flakes", "designs", "alembic_version"} <= tables


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.close()


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.migrate()
    from alembic import command

    from flakefinder.db.schema import alembic_config

    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    db.migrate()
    assert db.list_chips() == []
    db.close()
