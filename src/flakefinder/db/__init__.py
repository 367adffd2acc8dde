"""The flake database: chips, scans, images, flakes (with status/notes) and heterostructure designs.

``Database(url)`` works on any SQLAlchemy URL (SQLite file by default, PostgreSQL via
``postgresql+psycopg://``); ``Database.migrate()`` creates/updates the schema with the Alembic
migrations shipped in ``flakefinder/db/migrations``. It implements :class:`flakefinder.scan.store.ScanStore`.
Importing this package imports SQLAlchemy but creates no engine.
"""

from flakefinder.db.database import Database
from flakefinder.db.export import FLAKE_CSV_COLUMNS, flakes_to_csv, flakes_to_json
from flakefinder.db.queries import ORDER_FIELDS, FlakeQuery
from flakefinder.db.records import (
    Chip,
    Design,
    DesignLayer,
    FlakeStatus,
    ImageInfo,
    ScanInfo,
    ScanStatus,
    StoredFlake,
)
from flakefinder.db.settings import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    DatabaseSettings,
    mask_url,
)

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "FLAKE_CSV_COLUMNS",
    "ORDER_FIELDS",
    "Chip",
    "Database",
    "DatabaseSettings",
    "Design",
    "DesignLayer",
    "FlakeQuery",
    "FlakeStatus",
    "ImageInfo",
    "ScanInfo",
    "ScanStatus",
    "StoredFlake",
    "flakes_to_csv",
    "flakes_to_json",
    "mask_url",
]
