"""Databases on disks that fill up or cannot be written, and two processes creating one database.

* ``scan`` onto a full disk (tile images, or the database itself): one clear line, the scan
  marked interrupted, its lock released, and ``--resume`` ends with exactly the flakes of an
  uninterrupted scan once there is room again.
* Two first migrations of a new database at once: both succeed (the schema lock).
* Read-only commands open the database read-only: they change nothing in the file and work on
  a read-only file system; a command that must write says the database is read-only.

Full disks are simulated: the image folder with ``fullfs.full_disk``, the database with SQLite's
``max_page_count`` (SQLite answers SQLITE_FULL exactly as on a full disk). A real read-only
file system (a read-only bind mount in a private mount namespace) is used where ``unshare``
allows it; the rest runs everywhere, also as root.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flakefinder.cli.main import create_app
from flakefinder.db import Database, ScanStatus
from flakefinder.db.locks import lock_path
from flakefinder.errors import DatabaseError
from fullfs import full_disk
from web_helpers import populate

runner = CliRunner()
SCAN = [
    "scan", "--simulated", "--chip-size-mm", "0.4", "--frame-px", "128", "--um-per-px", "0.5",
    "--seed", "7", "--detector", "contrast", "--no-progress",
]  # fmt: skip  (49 tiles, 2 flakes)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


def _lock_is_free(db_file: Path, scan_id: int) -> bool:
    fd = os.open(lock_path(db_file, scan_id), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _flakes(url: str) -> list[tuple[Any, ...]]:
    with Database(url) as db:
        return sorted(
            (f.material, f.layer_class.value, round(f.area_um2, 6), round(f.centroid_um[0], 6))
            for f in db.query_flakes()
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The flakes of the same scan, uninterrupted."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ref') / 'ref.db'}"
    r = runner.invoke(create_app(), [*SCAN, "--db", url])
    assert r.exit_code == 0, r.output
    flakes = _flakes(url)
    assert len(flakes) >= 2
    return flakes


def _check_interrupted(db_file: Path, output: str, needle: str) -> None:
    errors = _errors(output)
    assert len(errors) == 1, output
    assert needle in errors[0] and "--resume" in errors[0], errors[0]
    assert "cannot connect" not in errors[0] and "Traceback" not in output
    with Database(f"sqlite:///{db_file}") as db:
        (scan,) = db.list_scans()
        assert scan.status is ScanStatus.INTERRUPTED
        assert 0 < scan.tiles_done < scan.n_tiles_planned, scan
    assert _lock_is_free(db_file, scan.id)


def test_scan_images_onto_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: list[tuple[Any, ...]]
) -> None:
    db_file, out = tmp_path / "f.db", tmp_path / "tiles"
    out.mkdir()
    args = [*SCAN, "--db", f"sqlite:///{db_file}", "--out", str(out)]
    with full_disk(monkeypatch, out, free_bytes=120_000) as refused:
        r = runner.invoke(create_app(), args)
    assert r.exit_code == 2, (r.output, r.exception)
    assert refused
    _check_interrupted(db_file, r.output, "no space left on device")
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no half-written tiles
    r = runner.invoke(create_app(), [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert _flakes(f"sqlite:///{db_file}") == reference


def test_scan_into_a_full_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: list[tuple[Any, ...]]
) -> None:
    db_file = tmp_path / "f.db"
    url = f"sqlite:///{db_file}"
    with Database(url) as db:
        db.migrate()
        (pages,) = db.engine.connect().exec_driver_sql("PRAGMA page_count").fetchone()
    import flakefinder.db.engine as engine

    original = engine.sqlite_pragmas

    def pragmas_of_a_full_disk(conn: Any, record: Any) -> None:
        original(conn, record)
        # no page to spare: the rows of the first tiles fit in the tables' first pages
        conn.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(engine, "sqlite_pragmas", pragmas_of_a_full_disk)
    args = [*SCAN, "--db", url, "--out", str(tmp_path / "tiles")]
    r = runner.invoke(create_app(), args)
    assert r.exit_code == 2, (r.output, r.exception)
    monkeypatch.setattr(engine, "sqlite_pragmas", original)  # room again
    _check_interrupted(db_file, r.output, "is full: no space left on its disk")
    r = runner.invoke(create_app(), [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert _flakes(url) == reference


def test_a_full_database_is_not_a_connection_problem(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    db = populate(url, tmp_path / "tiles")
    conn = sqlite3.connect(tmp_path / "f.db")
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.close()
    from sqlalchemy import event

    event.listen(db.engine, "connect", lambda c, _: c.execute(f"PRAGMA max_page_count={pages}"))
    db.engine.dispose()
    with pytest.raises(DatabaseError, match="is full: no space left") as info:
        db.add_chip("chip-B" + "x" * 5000, ["graphene"], 90.0, "n" * 20000)
    assert "cannot connect" not in str(info.value)
    db.close()


def test_two_first_migrations_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both find the database empty and create its schema: one waits for the other."""
    import flakefinder.db.schema as schema

    url = f"sqlite:///{tmp_path / 'new.db'}"
    both_inside = threading.Barrier(2)
    upgrade = schema.upgrade

    def upgrade_together(engine: Any, revision: str = "head") -> None:
        try:  # where the two used to collide; with the lock the second never gets here in time
            both_inside.wait(timeout=2.0)
        except threading.BrokenBarrierError:
            pass
        upgrade(engine, revision)

    monkeypatch.setattr(schema, "upgrade", upgrade_together)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with Database(url) as db:
                db.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with Database(url) as db:
        current, head = db.schema_revision()
        assert current == head and db.list_chips() == []


def _journal_delete_copy(tmp_path: Path) -> Path:
    """A populated database in rollback-journal mode (so any write shows in the file)."""
    src = tmp_path / "src"
    src.mkdir()
    populate(f"sqlite:///{src / 'w.db'}", tmp_path / "tiles").close()
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copyfile(src / "w.db", folder / "w.db")
    conn = sqlite3.connect(folder / "w.db")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return folder / "w.db"


def test_read_only_commands_do_not_write(tmp_path: Path) -> None:
    db_file = _journal_delete_copy(tmp_path)
    url = f"sqlite:///{db_file}"
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    files = sorted(os.listdir(db_file.parent))
    db_file.chmod(0o444)
    db_file.parent.chmod(0o555)
    try:
        for args in (
            ["flakes", "list", "--db", url],
            ["flakes", "list", "--db", url, "-f", "json"],
            ["flakes", "export", "--db", url],
            ["flakes", "locate", "2", "--db", url],
            ["db", "info", "--db", url],
        ):
            r = runner.invoke(create_app(), args)
            assert r.exit_code == 0, (args, r.output)
    finally:
        db_file.parent.chmod(0o755)
        db_file.chmod(0o644)
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(db_file.parent)) == files


def test_a_read_only_database_refuses_writes_by_name(tmp_path: Path) -> None:
    db_file = _journal_delete_copy(tmp_path)
    with Database(f"sqlite:///{db_file}", read_only=True) as db:
        assert len(db.query_flakes()) == 4
        with pytest.raises(DatabaseError, match="is read-only here") as info:
            db.set_flake_status(1, "used")
        assert "cannot connect" not in str(info.value)


READ_ONLY_MOUNT = """
set -e
mount --bind "$DATA" "$VIEW"
mount -o remount,bind,ro "$VIEW"
"$PY" -m flakefinder.cli.main flakes list --db "sqlite:///$VIEW/w.db" -f json > "$OUT/list.json"
if "$PY" -m flakefinder.cli.main flakes set-status 1 used --db "sqlite:///$VIEW/w.db" \
   2> "$OUT/set.err"; then echo wrote; fi
"""


def test_on_a_read_only_file_system(tmp_path: Path) -> None:
    """A WAL database on a read-only mount: reading works (SQLite cannot even create its
    shared-memory file there), writing says why it cannot."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private read-only bind mount")
    data, view, out = tmp_path / "data", tmp_path / "view", tmp_path / "out"
    for folder in (data, view, out):
        folder.mkdir()
    populate(f"sqlite:///{data / 'w.db'}", tmp_path / "tiles").close()
    env = {**os.environ, "DATA": str(data), "VIEW": str(view), "OUT": str(out), "PY": sys.executable}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    probe = subprocess.run([unshare, "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode()[:100]}")
    done = subprocess.run(
        [unshare, "-m", "sh", "-c", READ_ONLY_MOUNT], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    import json

    assert len(json.loads((out / "list.json").read_text())) == 4
    assert b"wrote" not in done.stdout
    err = (out / "set.err").read_text()
    assert err.startswith("error: ") and "read-only file system" in err and "flakes list" in err
    assert "Traceback" not in err


def test_read_only_open_on_every_backend(db_url: str, tmp_path: Path) -> None:
    populate(db_url, tmp_path / "tiles").close()
    with Database(db_url, read_only=True) as ro:
        assert len(ro.query_flakes()) == 4
        with pytest.raises(DatabaseError, match="read-only") as info:
            ro.set_flake_status(1, "used")
        assert "cannot connect" not in str(info.value)
    with Database(db_url) as rw:
        assert rw.get_flake(1).status.value == "new"  # type: ignore[union-attr]
