"""Engine creation for ``flakefinder.db``: clear errors for bad URLs / missing drivers, SQLite pragmas."""

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


@contextmanager
def driver_errors(masked_url: str) -> Iterator[None]:
    """Missing schema / connection problems -> DatabaseError (IntegrityError passes through)."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as e:
        if "no such table" in str(e).lower() or "undefinedtable" in type(e.orig).__name__.lower():
            raise DatabaseError(
                f"database {masked_url} has no flakefinder schema (or an old one):"
                " run `flakefinder db upgrade`"
            ) from None
        raise DatabaseError(f"cannot connect to {masked_url}: {reason(e)}") from None
    except exc.ProgrammingError as e:
        if "does not exist" in str(e).lower():
            raise DatabaseError(
                f"database {masked_url} has no flakefinder schema (or an old one):"
                " run `flakefinder db upgrade`"
            ) from None
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


def _sqlite_in_memory(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except (exc.ArgumentError, ValueError, TypeError):
        return False
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """SQLAlchemy engine for ``url`` (connects lazily); DatabaseError for unusable URLs/drivers."""
    masked = mask_url(url)
    kwargs: dict[str, Any] = {}
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
        event.listen(engine, "connect", sqlite_pragmas)
    return engine
