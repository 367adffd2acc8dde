"""``Database``: the flake database (chips, scans, images, flakes, designs) over any SQLAlchemy URL.

>>> db = Database("sqlite:///flakes.db")   # or "postgresql+psycopg://user:pw@host:5432/flakes"
>>> db.migrate()                           # Alembic upgrade head (creates / updates the schema)
>>> chip = db.add_chip("chip-7", ["graphene"], 90.0)

Implements :class:`flakefinder.scan.store.ScanStore`. Every method opens and closes its own session and
returns frozen dataclasses (:mod:`flakefinder.db.records`) or domain types, never ORM objects.
Connection problems, bad URLs and missing drivers raise :class:`flakefinder.errors.DatabaseError`
with the password masked.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, exc, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from flakefinder.db import convert
from flakefinder.db.engine import (
    driver_errors,
    make_engine,
    read_only_error,
    reason,
    sqlite_write_blocked,
    write_problem,
)
from flakefinder.db.models import ChipRow, DesignRow, FlakeRow, ImageRow, ScanRow, utcnow
from flakefinder.db.queries import FlakeQuery
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
from flakefinder.db.settings import DEFAULT_DATABASE_URL, mask_url
from flakefinder.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from flakefinder.domain import FlakeRecord, TileRecord


class Database:
    """Flake database at ``url`` (default ``sqlite:///flakefinder.db``). Cheap: connects lazily."""

    def __init__(
        self, url: str = DEFAULT_DATABASE_URL, *, echo: bool = False, read_only: bool = False
    ) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.read_only = read_only  # open for reading only: a write raises DatabaseError
        self.engine: Engine = make_engine(url, echo=echo, read_only=read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._scan_chips: dict[int, int] = {}  # scan id -> chip id (never changes): record_tile

    def __repr__(self) -> str:
        return f"Database({self.masked_url!r})"

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on error; driver errors -> DatabaseError."""
        with driver_errors(self.masked_url, self.url), self._sessions.begin() as s:
            yield s

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One Core transaction (no ORM session: the cheap path for hot writes); errors as session()."""
        with driver_errors(self.masked_url, self.url), self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        """Raise DatabaseError unless the server answers."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except exc.DBAPIError as e:
            raise DatabaseError(f"cannot connect to {self.masked_url}: {reason(e)}") from None

    # -- schema -------------------------------------------------------------------------------------
    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the Alembic migrations shipped in the package.

        Runs under the database's schema lock (:func:`flakefinder.db.locks.schema_lock`), so
        that two processes creating the same new database (two scans started at once) do not
        both create its tables: the second waits, then finds the schema up to date.
        """
        from flakefinder.db import schema
        from flakefinder.db.locks import schema_lock

        try:
            with schema_lock(self.engine, self.masked_url):
                schema.upgrade(self.engine, revision)
        except (exc.OperationalError, exc.InterfaceError) as e:
            problem = write_problem(e, self.masked_url)
            if problem is not None:
                raise problem from None
            if sqlite_write_blocked(self.url):
                raise read_only_error(self.masked_url) from None
            raise DatabaseError(f"cannot connect to {self.masked_url}: {reason(e)}") from None
        except exc.DBAPIError as e:
            problem = write_problem(e, self.masked_url)
            if problem is not None:
                raise problem from None
            raise DatabaseError(f"cannot migrate {self.masked_url}: {reason(e)}") from None

    def schema_revision(self) -> tuple[str | None, str | None]:
        """(revision the database is at, or None if never migrated; newest revision shipped)."""
        from flakefinder.db import schema

        try:
            return schema.current_revision(self.engine), schema.head_revision()
        except exc.DBAPIError as e:
            raise DatabaseError(f"cannot connect to {self.masked_url}: {reason(e)}") from None

    def table_counts(self) -> dict[str, int]:
        """Row count of every table (for ``flakefinder db info``)."""
        with self.session() as s:
            return {
                row.__tablename__: int(s.scalar(select(func.count()).select_from(row)) or 0)
                for row in (ChipRow, ScanRow, ImageRow, FlakeRow, DesignRow)
            }

    # -- chips ------------------------------------------------------------------------------------
    def add_chip(
        self,
        name: str,
        materials: Sequence[str] | str,
        oxide_thickness_nm: float,
        notes: str = "",
        *,
        get_or_create: bool = False,
    ) -> int:
        """Create chip ``name`` and return its id. With ``get_or_create`` return an existing chip's id."""
        mats = [materials] if isinstance(materials, str) else list(materials)
        with self.session() as s:
            existing = s.scalar(select(ChipRow).where(ChipRow.name == name))
            if existing is not None:
                if get_or_create:
                    return existing.id
                raise DatabaseError(f"a chip named {name!r} already exists (id {existing.id})")
            row = ChipRow(
                name=name,
                materials=",".join(m.strip() for m in mats if m.strip()),
                oxide_thickness_nm=float(oxide_thickness_nm),
                notes=notes,
            )
            s.add(row)
            s.flush()
            return row.id

    def get_chip(self, chip: int | str) -> Chip | None:
        """Chip by id or by name; None if there is none."""
        with self.session() as s:
            col = ChipRow.name if isinstance(chip, str) else ChipRow.id
            row = s.scalar(select(ChipRow).where(col == chip))
            return None if row is None else convert.chip(row)

    def list_chips(self) -> list[Chip]:
        with self.session() as s:
            return [convert.chip(r) for r in s.scalars(select(ChipRow).order_by(ChipRow.id))]

    # -- scans ------------------------------------------------------------------------------------
    def start_scan(
        self,
        chip_id: int,
        *,
        settings: dict[str, Any],
        objective: str,
        um_per_px: float,
        detector: str,
        detector_version: str,
        n_tiles_planned: int,
    ) -> int:
        """Create a running scan of ``chip_id`` and return its id."""
        with self.session() as s:
            if s.get(ChipRow, chip_id) is None:
                raise KeyError(f"no chip with id {chip_id}")
            row = ScanRow(
                chip_id=chip_id,
                settings=dict(settings),
                objective=objective,
                um_per_px=float(um_per_px),
                detector=detector,
                detector_version=detector_version,
                n_tiles_planned=int(n_tiles_planned),
                status=ScanStatus.RUNNING.value,
            )
            s.add(row)
            s.flush()
            return row.id

    def get_scan(self, scan_id: int) -> ScanInfo | None:
        found = self.list_scans(scan_id=scan_id)
        return found[0] if found else None

    def list_scans(
        self, chip_id: int | None = None, *, scan_id: int | None = None
    ) -> list[ScanInfo]:
        """Scans (newest first) with progress: tiles stored vs planned and flakes found."""
        tiles = (
            select(ImageRow.scan_id, func.count().label("n")).group_by(ImageRow.scan_id).subquery()
        )
        flakes = (
            select(FlakeRow.scan_id, func.count().label("n")).group_by(FlakeRow.scan_id).subquery()
        )
        stmt = (
            select(ScanRow, ChipRow.name, tiles.c.n, flakes.c.n)
            .join(ChipRow, ChipRow.id == ScanRow.chip_id)
            .outerjoin(tiles, tiles.c.scan_id == ScanRow.id)
            .outerjoin(flakes, flakes.c.scan_id == ScanRow.id)
            .order_by(ScanRow.started_at.desc(), ScanRow.id.desc())
        )
        if chip_id is not None:
            stmt = stmt.where(ScanRow.chip_id == chip_id)
        if scan_id is not None:
            stmt = stmt.where(ScanRow.id == scan_id)
        with self.session() as s:
            return [
                convert.scan(r, name, n_t or 0, n_f or 0) for r, name, n_t, n_f in s.execute(stmt)
            ]

    def find_resumable_scan(self, chip_id: int) -> ScanInfo | None:
        """The newest scan of ``chip_id`` that is not finished (running or interrupted), if any."""
        for scan in self.list_scans(chip_id):
            if scan.status is not ScanStatus.FINISHED:
                return scan
        return None

    def _set_scan_status(self, scan_id: int, status: ScanStatus) -> None:
        with self.session() as s:
            row = s.get(ScanRow, scan_id)
            if row is None:
                raise KeyError(f"no scan with id {scan_id}")
            row.status = status.value
            row.finished_at = utcnow() if status is ScanStatus.FINISHED else None

    def finish_scan(self, scan_id: int) -> None:
        """Mark the scan finished (sets its end time)."""
        self._set_scan_status(scan_id, ScanStatus.FINISHED)

    def mark_interrupted(self, scan_id: int) -> None:
        """Mark the scan interrupted (it can be resumed: see :meth:`find_resumable_scan`)."""
        self._set_scan_status(scan_id, ScanStatus.INTERRUPTED)

    # -- ScanStore ------------------------------------------------------------------------------------
    def completed_tiles(self, scan_id: int) -> set[int]:
        """Tile indexes of ``scan_id`` already stored (for resuming)."""
        with self.session() as s:
            return set(s.scalars(select(ImageRow.tile_index).where(ImageRow.scan_id == scan_id)))

    def scan_flakes(self, scan_id: int) -> list[FlakeRecord]:
        """Every flake stored for ``scan_id`` so far, as domain records (with tile_index)."""
        stmt = (
            select(FlakeRow, ImageRow.tile_index)
            .outerjoin(ImageRow, ImageRow.id == FlakeRow.image_id)
            .where(FlakeRow.scan_id == scan_id)
            .order_by(FlakeRow.id)
        )
        with self.session() as s:
            return [convert.flake_record(row, tile) for row, tile in s.execute(stmt)]

    def record_tile(self, scan_id: int, tile: TileRecord, flakes: Iterable[FlakeRecord]) -> None:
        """Store one tile's image row and its flakes in one transaction.

        Idempotent: if ``tile.tile_index`` is already stored for this scan nothing is written.
        The hot path of a scan, so it is lean: the scan's chip id is cached per scan id, the
        image row and the flakes go in as two Core inserts (the flakes as one executemany), and
        "already stored" is detected by the unique (scan_id, tile_index) constraint instead of a
        select first. Raises KeyError for an unknown scan.
        """
        values = [convert.flake_values(f, scan_id, 0, 0) for f in flakes]
        try:
            with self._transaction() as conn:
                chip_id = self._scan_chips.get(scan_id)
                if chip_id is None:
                    chip_id = conn.scalar(select(ScanRow.chip_id).where(ScanRow.id == scan_id))
                    if chip_id is None:
                        raise KeyError(f"no scan with id {scan_id}")
                    self._scan_chips[scan_id] = chip_id
                image = conn.execute(insert(ImageRow).values(**convert.image_values(tile, scan_id)))
                if values:
                    key = image.inserted_primary_key
                    assert key is not None  # set by every dialect for a single-row insert
                    image_id = key[0]
                    for v in values:
                        v["image_id"], v["chip_id"] = image_id, chip_id
                    conn.execute(insert(FlakeRow), values)
        except exc.IntegrityError:
            # Stored before (or by a concurrent writer): the tile is recorded, as asked.
            with self.session() as s:
                stored = s.scalar(
                    select(ImageRow.id).where(
                        ImageRow.scan_id == scan_id, ImageRow.tile_index == tile.tile_index
                    )
                )
            if stored is not None:
                return
            self._scan_chips.pop(scan_id, None)  # the scan may have been deleted since cached
            if self.get_scan(scan_id) is None:
                raise KeyError(f"no scan with id {scan_id}") from None
            raise

    def list_images(self, scan_id: int) -> list[ImageInfo]:
        with self.session() as s:
            rows = s.scalars(
                select(ImageRow).where(ImageRow.scan_id == scan_id).order_by(ImageRow.tile_index)
            )
            return [convert.image(r) for r in rows]

    def get_image(self, image_id: int) -> ImageInfo | None:
        with self.session() as s:
            row = s.get(ImageRow, image_id)
            return None if row is None else convert.image(row)

    # -- flakes -------------------------------------------------------------------------------------
    def query_flakes(self, query: FlakeQuery | None = None) -> list[StoredFlake]:
        """Flakes matching ``query`` (all flakes, by id, if None)."""
        q = query or FlakeQuery()
        with self.session() as s:
            return [convert.stored_flake(r) for r in s.scalars(q.select())]

    def count_flakes(self, query: FlakeQuery | None = None) -> int:
        """Number of flakes matching ``query``'s filters (limit/offset ignored)."""
        q = query or FlakeQuery()
        with self.session() as s:
            stmt = select(func.count()).select_from(FlakeRow).where(*q.conditions())
            return int(s.scalar(stmt) or 0)

    def get_flake(self, flake_id: int) -> StoredFlake | None:
        with self.session() as s:
            row = s.get(FlakeRow, flake_id)
            return None if row is None else convert.stored_flake(row)

    def set_flake_status(
        self, flake_id: int, status: str | FlakeStatus, notes: str | None = None
    ) -> StoredFlake:
        """Set a flake's status (new/candidate/used/rejected) and, if given, its notes."""
        new = FlakeStatus.parse(status)
        with self.session() as s:
            row = s.get(FlakeRow, flake_id)
            if row is None:
                raise KeyError(f"no flake with id {flake_id}")
            row.status = new.value
            if notes is not None:
                row.notes = notes
            s.flush()
            return convert.stored_flake(row)

    # -- designs ------------------------------------------------------------------------------------
    def save_design(
        self,
        name: str,
        layers: Sequence[DesignLayer | dict[str, Any]],
        notes: str = "",
        *,
        design_id: int | None = None,
    ) -> int:
        """Create a design (or replace design ``design_id``) and return its id."""
        parsed = sorted(
            (lay if isinstance(lay, DesignLayer) else DesignLayer.from_dict(lay) for lay in layers),
            key=lambda lay: lay.order,
        )
        with self.session() as s:
            if design_id is None:
                row = DesignRow(name=name)
                s.add(row)
            else:
                found = s.get(DesignRow, design_id)
                if found is None:
                    raise KeyError(f"no design with id {design_id}")
                row = found
                row.name = name
                row.updated_at = utcnow()
            row.layers = [lay.to_dict() for lay in parsed]
            row.notes = notes
            s.flush()
            return row.id

    def get_design(self, design_id: int) -> Design | None:
        with self.session() as s:
            row = s.get(DesignRow, design_id)
            return None if row is None else convert.design(row)

    def list_designs(self) -> list[Design]:
        with self.session() as s:
            return [convert.design(r) for r in s.scalars(select(DesignRow).order_by(DesignRow.id))]

    def delete_design(self, design_id: int) -> bool:
        """Delete a design; False if there was none."""
        with self.session() as s:
            row = s.get(DesignRow, design_id)
            if row is None:
                return False
            s.delete(row)
            return True
