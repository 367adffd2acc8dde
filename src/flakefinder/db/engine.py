"""Engine creation for ``flakefinder.db``: clear errors for bad URLs / missing drivers, SQLite pragmas.

Driver errors become one :class:`DatabaseError` line that says what happened: no schema, a
full disk (never "cannot connect"), a read-only database, or a connection problem. A
read-only engine (``make_engine(url, read_only=True)``, for commands that only read) opens
SQLite with ``mode=ro`` and no journal-mode change, falling back to ``immutable=1`` where the
folder cannot even hold SQLite's shared-memory file (a read-only file system); PostgreSQL
sessions start read-only.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, exc

from flakefinder.db.settings import mask_url, scrub_secrets
from flakefinder.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Iterator


def reason(error: BaseException) -> str:
    """Short reason from a driver error: first line, a few well-known causes normalized."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    low = str(orig).lower()
    if "connection refused" in low:
        return "connection refused"
    if "password authentication failed" in low:
        return "password authentication failed"
    if "does not exist" in low and "database" in low:
        return text.split("FATAL:")[-1].strip()
    if "could not translate host name" in low or "name or service not known" in low:
        return "unknown host"
    return text


DISK_FULL_MARKERS = (
    "database or disk is full",  # SQLite (SQLITE_FULL)
    "no space left on device",  # PostgreSQL, and OS errors
    "could not extend file",  # PostgreSQL
    "disk quota exceeded",
)
READ_ONLY_MARKERS = (
    "readonly database",  # SQLite: attempt to write a readonly database
    "read-only transaction",  # PostgreSQL: cannot execute ... in a read-only transaction
    "read-only file system",
)


def write_problem(error: BaseException, masked_url: str) -> DatabaseError | None:
    """A DatabaseError for a full disk or a read-only database; None for anything else."""
    orig = getattr(error, "orig", None) or error
    low = f"{orig} {type(orig).__name__}".lower()
    if any(m in low for m in DISK_FULL_MARKERS) or "diskfull" in low:
        return DatabaseError(
            f"database {masked_url} is full: no space left on its disk (free some and retry;"
            " nothing written so far is lost)"
        )
    if any(m in low for m in READ_ONLY_MARKERS):
        return DatabaseError(
            f"database {masked_url} is read-only here ({reason(error)}); this command needs"
            " to write to it"
        )
    return None


def sqlite_write_blocked(url: str | None) -> bool:
    """Whether ``url`` is a SQLite file that exists but cannot be written here (a read-only
    file system, or a file or folder without write permission)."""
    import os
    from pathlib import Path

    path = None if url is None else _sqlite_file(url)
    if path is None or not Path(path).is_file():
        return False
    folder = Path(path).absolute().parent
    try:
        if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))


def read_only_error(masked_url: str) -> DatabaseError:
    return DatabaseError(
        f"database {masked_url} is on a read-only file system (or its file or folder is not"
        " writable): this command needs to write to it; commands that only read (flakes list,"
        " flakes export, flakes locate, db info) still work"
    )


@contextmanager
def driver_errors(masked_url: str, url: str | None = None) -> Iterator[None]:
    """Missing schema / full disk / read-only / connection problems -> DatabaseError
    (IntegrityError passes through). ``url`` (unmasked) lets a SQLite file that cannot be
    written be named as such rather than as a connection problem."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as e:
        if "no such table" in str(e).lower() or "undefinedtable" in type(e.orig).__name__.lower():
            raise DatabaseError(
                f"database {masked_url} has no flakefinder schema (or an old one):"
                " run `flakefinder db upgrade`"
            ) from None
        problem = write_problem(e, masked_url)
        if problem is not None:
            raise problem from None
        if "unable to open database file" in str(e) and sqlite_write_blocked(url):
            raise read_only_error(masked_url) from None
        raise DatabaseError(f"cannot connect to {masked_url}: {reason(e)}") from None
    except (exc.ProgrammingError, exc.InternalError) as e:
        if "does not exist" in str(e).lower():
            raise DatabaseError(
                f"database {masked_url} has no flakefinder schema (or an old one):"
                " run `flakefinder db upgrade`"
            ) from None
        problem = write_problem(e, masked_url)
        if problem is not None:
            raise problem from None
        raise DatabaseError(f"database error at {masked_url}: {reason(e)}") from None


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")  # in-memory databases answer "memory"; fine
        cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a commit per tile stays cheap
        cur.execute("PRAGMA busy_timeout=10000")
    finally:
        cur.close()


def sqlite_read_only_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Pragmas of a read-only connection: nothing that writes (no journal-mode change)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=10000")
    finally:
        cur.close()


def sqlite_read_only_creator(database: str) -> Any:
    """A DBAPI ``creator`` opening the SQLite file ``database`` read-only (``mode=ro``), or as
    ``immutable=1`` when ``mode=ro`` cannot open it (a read-only folder in which SQLite cannot
    create the shared-memory file of a WAL database)."""
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    uri = "file:" + quote(str(Path(database).absolute()))

    def connect() -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the file
            return conn
        except sqlite3.OperationalError as first:
            if "unable to open" not in str(first) and "readonly" not in str(first):
                raise
            if not Path(database).is_file():
                raise
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)

    return connect

def _sqlite_in_memory(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except (exc.ArgumentError, ValueError, TypeError):
        return False
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def _sqlite_file(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except (exc.ArgumentError, ValueError, TypeError):
        return None
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    if str(u.database).startswith("file:") or u.query:
        return None  # already a URI or with options: leave it to the driver
    return str(u.database)


def make_engine(url: str, *, echo: bool = False, read_only: bool = False) -> Engine:
    """SQLAlchemy engine for ``url`` (connects lazily); DatabaseError for unusable URLs/drivers.

    ``read_only``: open the database for reading only (see the module docstring).
    """
    masked = mask_url(url)
    kwargs: dict[str, Any] = {}
    read_only_file = _sqlite_file(url) if read_only else None
    if read_only_file is not None:
        kwargs = {"creator": sqlite_read_only_creator(read_only_file)}
    elif read_only and url.startswith("postgresql"):
        kwargs = {"connect_args": {"options": "-c default_transaction_read_only=on"}}
    if _sqlite_in_memory(url):
        # One shared connection: the default pool gives each thread its own, empty, database
        # (the scan loop writes tiles from a writer thread).
        from sqlalchemy.pool import StaticPool

        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    try:
        engine = create_engine(url, echo=echo, **kwargs)
    except exc.NoSuchModuleError:
        raise DatabaseError(
            f"cannot use {masked}: no SQLAlchemy dialect/driver for this URL scheme"
        ) from None
    except exc.ArgumentError as e:
        raise DatabaseError(f"bad database URL {masked!r}: {scrub_secrets(str(e), url)}") from None
    except (ValueError, TypeError) as e:  # e.g. a port that is not a number
        raise DatabaseError(f"bad database URL {masked!r}: {scrub_secrets(str(e), url)}") from None
    except ImportError as e:
        hint = " (pip install 'flakefinder[postgres]')" if url.startswith("postgres") else ""
        raise DatabaseError(
            f"cannot use {masked}: database driver {e.name or e} is not installed{hint}"
        ) from None
    if engine.dialect.name == "sqlite":
        pragmas = sqlite_read_only_pragmas if read_only_file is not None else sqlite_pragmas
        event.listen(engine, "connect", pragmas)
    return engine
