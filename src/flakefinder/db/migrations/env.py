"""Alembic environment for the flakefinder database.

Run through :meth:`flakefinder.db.Database.migrate` (which passes its connection in
``config.attributes["connection"]``). To write a new revision after changing ``models.py``::

    python -c "from flakefinder.db.schema import revision; revision('sqlite:///dev.db', 'add x')"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from flakefinder.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE via table copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url set")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        _configure(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
