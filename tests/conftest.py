"""Shared pytest fixtures. Keep each group under its own heading.

Database fixtures
-----------------
* ``postgres_server_url`` (session): admin URL of a throwaway PostgreSQL cluster (initdb + pg_ctl from
  /usr/lib/postgresql/*/bin or PATH; run as the ``postgres`` user when tests run as root), or the
  server named by ``FLAKEFINDER_TEST_POSTGRES_URL``. Skips when neither is available.
* ``postgres_url``: a fresh, empty database on that server for one test (dropped afterwards).
* ``sqlite_migrated_path`` (session): a migrated SQLite file that ``db`` copies per test.
* ``postgres_migrated_url`` (session): one migrated database on that server, shared by ``db``.
* ``db_backend``: parametrized ``sqlite`` / ``postgresql`` (the latter marked ``postgres``); every test
  using ``db_url`` or ``db`` runs once per backend.
* ``db_url``: URL of a new, empty (never migrated) database on the current backend.
* ``db``: a migrated, empty :class:`flakefinder.db.Database` on the current backend.

Server
------
* ``_test_client_on_localhost`` (autouse): Starlette's ``TestClient`` talks to ``http://localhost``
  instead of ``http://testserver``: the server answers only to the names it was started for
  (loopback names by default, a guard against DNS rebinding), and ``testserver`` is not one.

Determinism
-----------
* ``_restore_rng_state`` (autouse): saves the global ``random`` and ``numpy.random`` state (and
  torch's CPU generator when torch is already imported) before each test and restores it after,
  so a test that seeds or draws from a global generator cannot change the next test's numbers.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# --------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def _test_client_on_localhost() -> Iterator[None]:
    """``TestClient(app)`` defaults to ``base_url="http://localhost"`` (see the module docstring)."""
    try:
        from starlette import testclient
    except ImportError:  # no server extras installed
        yield
        return
    cls = testclient.TestClient
    original = cls.__init__

    def init(self: Any, app: Any, base_url: str = "http://localhost", *args: Any, **kw: Any) -> None:
        original(self, app, base_url, *args, **kw)

    cls.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.__init__ = original  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_rng_state() -> Iterator[None]:
    """Restore the global RNG states (random, numpy, torch CPU if loaded) after every test."""
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state is what we guard
    torch = sys.modules.get("torch")
    torch_state = torch.get_rng_state() if torch is not None else None
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)  # noqa: NPY002
    if torch is not None and torch_state is not None:
        torch.set_rng_state(torch_state)


# --------------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """Directory holding initdb and pg_ctl (newest installed major version first)."""
    candidates: list[Path] = []
    if os.environ.get("FLAKEFINDER_PG_BINDIR"):
        candidates.append(Path(os.environ["FLAKEFINDER_PG_BINDIR"]))

    def version(p: Path) -> float:
        try:
            return float(p.parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_postgres(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a server binary; as root, drop to the ``postgres`` user (initdb refuses root)."""
    if os.geteuid() == 0:
        if shutil.which("runuser"):
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        else:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(cmd)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """Admin URL (database ``postgres``) of a throwaway PostgreSQL cluster for this test session."""
    external = os.environ.get("FLAKEFINDER_TEST_POSTGRES_URL", "").strip()
    if external:
        yield external
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (v3) is not installed: pip install 'flakefinder[postgres]'")
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or PATH;"
            " set FLAKEFINDER_TEST_POSTGRES_URL to use a running server"
        )
    base = Path(tempfile.mkdtemp(prefix="ffpg-"))  # short path: unix socket names are limited
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    started = False
    try:
        res = _run_as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
            + ["--no-sync", "--no-instructions"]
        )
        if res.returncode != 0:
            pytest.skip(f"initdb failed: {res.stderr.strip()[-500:]}")
        port = _free_port()
        opts = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        res = _run_as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log")]
            + ["-w", "-t", "60", "-o", opts, "start"]
        )
        if res.returncode != 0:
            log = (base / "server.log").read_text(errors="replace")[-500:] if base.exists() else ""
            pytest.skip(f"pg_ctl start failed: {res.stderr.strip()[-300:]} {log}")
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """URL of a new empty database on the session's PostgreSQL server (dropped after the test)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"ff_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_migrated_url(postgres_server_url: str) -> Iterator[str]:
    """One migrated database shared by the session's ``db`` fixtures (emptied before each test)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from flakefinder.db import Database

    name = f"ff_shared_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    database.migrate()
    database.close()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_migrated_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database file, copied by each ``db`` fixture (migrating once is enough)."""
    from flakefinder.db import Database

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgresql": tests using ``db_url`` or ``db`` run once per backend."""
    return str(request.param)


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a new, empty (never migrated) database on the current backend."""
    if db_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'flakes.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated, empty ``flakefinder.db.Database`` on the current backend (closed afterwards).

    SQLite: a copy of ``sqlite_migrated_path``. PostgreSQL: the session's shared database, every table truncated.
    """
    from flakefinder.db import Database

    if db_backend == "sqlite":
        target = tmp_path / "flakes.db"
        shutil.copyfile(request.getfixturevalue("sqlite_migrated_path"), target)
        database = Database(f"sqlite:///{target}")
    else:
        database = Database(request.getfixturevalue("postgres_migrated_url"))
        with database.engine.begin() as conn:
            conn.exec_driver_sql(
                "TRUNCATE chips, scans, images, flakes, designs RESTART IDENTITY CASCADE"
            )
    yield database
    database.close()
