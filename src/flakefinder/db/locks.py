"""One process at a time per scan: ``scan_lock(db, scan_id)``.

Two ``flakefinder scan --resume`` runs of one chip would both scan the same tiles and report
flakes that only one of them stored. The lock is one the operating system or the database
server drops by itself when its holder dies, so a crash never leaves a scan locked:

* SQLite file: an exclusive ``flock`` on ``<database>.scan-<id>.lock`` next to the database
  (the file keeps the holder's pid and host for the message). The holder deletes the file
  before it lets go, however the scan ends; a process that opened the old file meanwhile sees
  that its file is no longer the one at that path and tries again, so the deletion never lets
  two processes hold the lock. Only a killed process leaves its (unlocked) file behind;
  the next run of that scan takes it over and removes it;
* PostgreSQL: a session-level advisory lock on a connection held for the whole scan;
* in-memory SQLite (one process by definition) and other backends: no lock.

``schema_lock(engine, ...)`` is the same kind of lock (``<database>.schema.lock``, deleted the
same way, or an advisory lock with its own key) around creating and migrating the schema: two processes that open a new
database at once (two scans started together) take turns, and the second finds the schema
already at head instead of failing on ``alembic_version already exists``.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from flakefinder.errors import DatabaseError, ScanLockedError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Engine


class Database(Protocol):
    """What the locks use of :class:`flakefinder.db.Database` (no import: no cycle)."""

    engine: Engine
    masked_url: str

PG_LOCK_CLASS = 0x464C4B53  # "FLKS": the first key of flakefinder's advisory locks
SCHEMA_LOCK_KEY = -1  # the second key of the schema lock (scan locks use scan ids >= 0)
SCHEMA_LOCK_TIMEOUT_S = 300.0


def lock_path(database_file: str | Path, scan_id: int) -> Path:
    """Where the lock file of ``scan_id`` lives for a SQLite database file."""
    p = Path(database_file)
    return p.with_name(f"{p.name}.scan-{scan_id}.lock")


def _busy(scan_id: int, holder: str) -> ScanLockedError:
    who = f" ({holder})" if holder else ""
    return ScanLockedError(
        f"scan {scan_id} is being run by another process{who}; wait for it to finish or stop"
        " it (Ctrl-C) before resuming"
    )


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a finished holder may have deleted it)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _try_lock(path: Path) -> tuple[int | None, str]:
    """``(fd, "")`` holding an exclusive ``flock`` on the file now at ``path``, or
    ``(None, what the holder wrote)`` when another process holds it.

    A holder deletes its file before letting go (:func:`_unlock`); one that opened the file
    just before that locks a deleted file, notices (:func:`_is_current`) and takes the new one.
    """
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            return None, holder
        if _is_current(fd, path):
            return fd, ""
        os.close(fd)  # locked a file its holder has just deleted: take the new one


def _unlock(fd: int, path: Path) -> None:
    """Delete the lock file while still holding it, then let go (no lock file stays behind)."""
    import fcntl

    try:  # whoever opens the path next makes a fresh file
        os.unlink(path)
    except OSError:
        pass  # already gone, or the folder turned read-only: the file stays, unlocked
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def _file_lock(path: Path, scan_id: int) -> Iterator[None]:
    fd, holder = _try_lock(path)
    if fd is None:
        raise _busy(scan_id, holder)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        _unlock(fd, path)


@contextmanager
def _advisory_lock(db: Database, scan_id: int) -> Iterator[None]:
    from sqlalchemy import text

    from flakefinder.db.engine import driver_errors

    key = {"c": PG_LOCK_CLASS, "k": scan_id % 2**31}
    with driver_errors(db.masked_url), db.engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"), key).scalar()
        conn.commit()
        if not got:
            raise _busy(scan_id, "PostgreSQL advisory lock held")
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), key)
            conn.commit()


@contextmanager
def scan_lock(db: Database, scan_id: int) -> Iterator[None]:
    """Hold the lock of ``scan_id`` for the ``with`` block.

    Raises
    ------
    ScanLockedError
        Another process holds it.
    """
    url = db.engine.url
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        if os.name != "posix":  # no flock: the database's own locking is all there is
            yield
            return
        with _file_lock(lock_path(str(url.database), scan_id), scan_id):
            yield
    elif backend == "postgresql":
        with _advisory_lock(db, scan_id):
            yield
    else:
        yield


def _schema_busy(masked_url: str, timeout_s: float) -> DatabaseError:
    return DatabaseError(
        f"another process has been creating or upgrading the schema of {masked_url} for"
        f" {timeout_s:g} s; try again when it is done"
    )


@contextmanager
def schema_lock(
    engine: Engine, masked_url: str, *, timeout_s: float = SCHEMA_LOCK_TIMEOUT_S
) -> Iterator[None]:
    """Hold the schema lock of the database of ``engine`` (waiting up to ``timeout_s``).

    Raises
    ------
    DatabaseError
        The lock stayed taken for ``timeout_s``.
    """
    url = engine.url
    backend = url.get_backend_name()
    database = url.database
    if backend == "sqlite" and database not in (None, "", ":memory:") and os.name == "posix":
        path = Path(str(database))
        if str(database).startswith("file:") or not path.parent.is_dir():
            yield  # a URI, or a folder that does not exist: SQLite itself will say so
            return
        lock_file = path.with_name(f"{path.name}.schema.lock")
        deadline = time.monotonic() + timeout_s
        fd: int | None = None
        while True:
            try:
                fd, _ = _try_lock(lock_file)
            except OSError:
                break  # a read-only folder: nothing can create the schema there anyway
            if fd is not None:
                break
            if time.monotonic() > deadline:
                raise _schema_busy(masked_url, timeout_s)
            time.sleep(0.05)
        try:
            yield
        finally:
            if fd is not None:
                _unlock(fd, lock_file)
    elif backend == "postgresql":
        from sqlalchemy import text

        from flakefinder.db.engine import driver_errors

        key = {"c": PG_LOCK_CLASS, "k": SCHEMA_LOCK_KEY}
        with driver_errors(masked_url), engine.connect() as conn:
            deadline = time.monotonic() + timeout_s
            while not conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"), key).scalar():
                conn.commit()
                if time.monotonic() > deadline:
                    raise _schema_busy(masked_url, timeout_s)
                time.sleep(0.05)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), key)
                conn.commit()
    else:
        yield
