"""Storage of the hunt's passes: :class:`HuntStore` over a :class:`flakefinder.db.Database`.

Implements :class:`flakefinder.scan.revisit.RevisitStore`. A pass row records one overview,
search or revisit pass with its settings (the overview's analysis and the editable search
region; the revisit's filter and route) and, when finished, its throughput report. A revisit
row and its close-up rows are written in one transaction, so a visit is stored whole or not
at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from flakefinder.db.convert import as_utc
from flakefinder.db.hunt_records import CloseupInfo, PassInfo, RevisitInfo
from flakefinder.db.models import CloseupRow, ImageRow, PassRow, RevisitRow, ScanRow, utcnow
from flakefinder.db.records import ScanStatus
from flakefinder.errors import FlakefinderError
from flakefinder.scan.throughput import PassReport

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.db.database import Database
    from flakefinder.scan.region import SearchRegion
    from flakefinder.scan.revisit import CloseupRecord, RevisitRecord


class RegionLockedError(FlakefinderError):
    """The search region of a scan whose search has already stored tiles."""


def _points(raw: Any) -> tuple[tuple[float, float], ...]:
    return tuple((float(p[0]), float(p[1])) for p in raw or ())


def _closeup(row: CloseupRow) -> CloseupInfo:
    return CloseupInfo(
        id=row.id,
        revisit_id=row.revisit_id,
        frame_index=row.frame_index,
        x_um=row.x_um,
        y_um=row.y_um,
        z_um=row.z_um,
        z_offset_um=row.z_offset_um,
        exposure_ms=row.exposure_ms,
        width_px=row.width_px,
        height_px=row.height_px,
        um_per_px=row.um_per_px,
        sharpness=row.sharpness,
        file_path=row.file_path,
        acquired_at=as_utc(row.acquired_at),
    )


def _revisit(row: RevisitRow, closeups: Sequence[CloseupRow]) -> RevisitInfo:
    return RevisitInfo(
        id=row.id,
        pass_id=row.pass_id,
        flake_id=row.flake_id,
        status=row.status,
        message=row.message,
        objective=row.objective,
        um_per_px=row.um_per_px,
        focus_z_um=row.focus_z_um,
        material=row.material,
        layer_class=row.layer_class,
        layer_count=row.layer_count,
        confidence=row.confidence,
        polygon_um=_points(row.polygon_um),
        polygon_px=_points(row.polygon_px),
        area_um2=row.area_um2,
        iou_with_search=row.iou_with_search,
        detector=row.detector,
        detector_version=row.detector_version,
        created_at=as_utc(row.created_at),
        closeups=tuple(_closeup(c) for c in sorted(closeups, key=lambda c: c.frame_index)),
    )


class HuntStore:
    """Passes, revisits and close-ups in ``db`` (which must be migrated)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- passes -------------------------------------------------------------------------------
    def start_pass(
        self,
        chip_id: int,
        *,
        kind: str,
        objective: str,
        um_per_px: float,
        n_planned: int,
        settings: dict[str, Any],
        scan_id: int | None = None,
    ) -> int:
        """Create a running pass and return its id."""
        with self.db.session() as s:
            row = PassRow(
                chip_id=chip_id,
                scan_id=scan_id,
                kind=kind,
                objective=objective,
                um_per_px=float(um_per_px),
                n_planned=int(n_planned),
                settings=dict(settings),
                status=ScanStatus.RUNNING.value,
            )
            s.add(row)
            s.flush()
            return row.id

    def _infos(self, *conditions: Any) -> list[PassInfo]:
        tiles = (
            select(ImageRow.scan_id, func.count().label("n")).group_by(ImageRow.scan_id).subquery()
        )
        visits = (
            select(RevisitRow.pass_id, func.count().label("n"))
            .group_by(RevisitRow.pass_id)
            .subquery()
        )
        stmt = (
            select(PassRow, tiles.c.n, visits.c.n)
            .outerjoin(tiles, tiles.c.scan_id == PassRow.scan_id)
            .outerjoin(visits, visits.c.pass_id == PassRow.id)
            .where(*conditions)
            .order_by(PassRow.id)
        )
        out = []
        with self.db.session() as s:
            for row, n_tiles, n_visits in s.execute(stmt):
                status = ScanStatus(row.status)
                if row.kind == "search":
                    done = int(n_tiles or 0)
                elif row.kind == "revisit":
                    done = int(n_visits or 0)
                else:
                    done = row.n_planned if status is ScanStatus.FINISHED else 0
                out.append(
                    PassInfo(
                        id=row.id,
                        chip_id=row.chip_id,
                        scan_id=row.scan_id,
                        kind=row.kind,
                        objective=row.objective,
                        um_per_px=row.um_per_px,
                        status=status,
                        n_planned=row.n_planned,
                        n_done=done,
                        settings=dict(row.settings or {}),
                        report=None if row.report is None else PassReport.from_dict(row.report),
                        started_at=as_utc(row.started_at),
                        finished_at=None if row.finished_at is None else as_utc(row.finished_at),
                    )
                )
        return out

    def get_pass(self, pass_id: int) -> PassInfo | None:
        found = self._infos(PassRow.id == pass_id)
        return found[0] if found else None

    def list_passes(
        self, *, scan_id: int | None = None, chip_id: int | None = None
    ) -> list[PassInfo]:
        """Passes (oldest first) of a scan, of a chip, or all."""
        cond = []
        if scan_id is not None:
            cond.append(PassRow.scan_id == scan_id)
        if chip_id is not None:
            cond.append(PassRow.chip_id == chip_id)
        return self._infos(*cond)

    def find_resumable_pass(self, scan_id: int, kind: str) -> PassInfo | None:
        """The scan's newest unfinished pass of ``kind``, if any."""
        found = [
            p
            for p in self._infos(PassRow.scan_id == scan_id, PassRow.kind == kind)
            if p.status is not ScanStatus.FINISHED
        ]
        return found[-1] if found else None

    def _set(self, pass_id: int, **values: Any) -> None:
        with self.db.session() as s:
            row = s.get(PassRow, pass_id)
            if row is None:
                raise KeyError(f"no pass with id {pass_id}")
            for key, value in values.items():
                setattr(row, key, value)

    def update_pass(
        self,
        pass_id: int,
        *,
        settings: dict[str, Any] | None = None,
        n_planned: int | None = None,
        status: ScanStatus | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if settings is not None:
            values["settings"] = dict(settings)
        if n_planned is not None:
            values["n_planned"] = int(n_planned)
        if status is not None:
            values["status"] = status.value
            values["finished_at"] = utcnow() if status is ScanStatus.FINISHED else None
        self._set(pass_id, **values)

    def finish_pass(self, pass_id: int, report: PassReport) -> None:
        """Mark the pass finished with its throughput report."""
        self._set(
            pass_id,
            status=ScanStatus.FINISHED.value,
            finished_at=utcnow(),
            report=report.to_dict(),
        )

    def mark_pass_interrupted(self, pass_id: int) -> None:
        self._set(pass_id, status=ScanStatus.INTERRUPTED.value, finished_at=None)

    # -- overview and search region ----------------------------------------------------------
    def overview_of_scan(self, scan_id: int) -> PassInfo | None:
        """The scan's newest finished overview pass (holding its search region), if any."""
        found = [
            p
            for p in self._infos(PassRow.scan_id == scan_id, PassRow.kind == "overview")
            if p.status is ScanStatus.FINISHED
        ]
        return found[-1] if found else None

    def overview_of_chip(self, chip_id: int) -> PassInfo | None:
        """The chip's newest finished overview pass with a mosaic, if any."""
        found = [
            p
            for p in self._infos(PassRow.chip_id == chip_id, PassRow.kind == "overview")
            if p.status is ScanStatus.FINISHED and p.settings.get("mosaic_path")
        ]
        return found[-1] if found else None

    def set_region(self, scan_id: int, region: SearchRegion, n_tiles: int) -> PassInfo:
        """Replace the search region of ``scan_id`` (held by its overview pass) and the scan's
        planned tile count. Refused once the search has stored a tile (the plan of a started
        search must not change: resuming relies on it); KeyError without an overview."""
        overview = self.overview_of_scan(scan_id)
        if overview is None:
            raise KeyError(f"scan {scan_id} has no overview pass, so no search region")
        with self.db.session() as s:
            scan = s.get(ScanRow, scan_id)
            if scan is not None and scan.status == ScanStatus.RUNNING.value:
                raise RegionLockedError(
                    f"scan {scan_id} is running; its region can change only while it is stopped"
                    " before the search (flakefinder scan ... --stop-after-overview)"
                )
            n = s.scalar(select(func.count()).where(ImageRow.scan_id == scan_id)) or 0
            if n:
                raise RegionLockedError(
                    f"the search of scan {scan_id} has started ({n} tiles stored); its region"
                    " can no longer change (run a new overview to search another region)"
                )
            row = s.get(PassRow, overview.id)
            assert row is not None and scan is not None
            settings = dict(row.settings or {})
            settings["region"] = region.to_dict()
            settings["region_edited"] = True
            settings["search_tiles"] = int(n_tiles)
            row.settings = settings
            scan.n_tiles_planned = int(n_tiles)
        found = self.get_pass(overview.id)
        assert found is not None
        return found

    def mark_scan_running(self, scan_id: int) -> None:
        """Mark a (resumed) scan running while its passes run: its region is fixed meanwhile."""
        with self.db.session() as s:
            scan = s.get(ScanRow, scan_id)
            if scan is None:
                raise KeyError(f"no scan with id {scan_id}")
            scan.status = ScanStatus.RUNNING.value
            scan.finished_at = None

    def set_planned_tiles(self, scan_id: int, n_tiles: int) -> None:
        """The scan's planned tile count, once its overview has planned the search."""
        with self.db.session() as s:
            scan = s.get(ScanRow, scan_id)
            if scan is None:
                raise KeyError(f"no scan with id {scan_id}")
            scan.n_tiles_planned = int(n_tiles)

    # -- revisits (RevisitStore) ---------------------------------------------------------------
    def revisited_flakes(self, pass_id: int) -> set[int]:
        with self.db.session() as s:
            return set(s.scalars(select(RevisitRow.flake_id).where(RevisitRow.pass_id == pass_id)))

    def record_revisit(
        self, pass_id: int, revisit: RevisitRecord, closeups: Sequence[CloseupRecord]
    ) -> None:
        """Store one visit and its close-ups in one transaction."""
        r = revisit.refined
        values: dict[str, Any] = {
            "pass_id": pass_id,
            "flake_id": revisit.flake_id,
            "status": revisit.status.value,
            "message": revisit.message,
            "objective": revisit.objective,
            "um_per_px": float(revisit.um_per_px),
            "focus_z_um": revisit.focus_z_um,
            "iou_with_search": revisit.iou_with_search,
            "detector": "" if r is None else r.detector,
            "detector_version": "" if r is None else r.detector_version,
            "created_at": utcnow(),
        }
        if r is not None:
            values.update(
                material=r.material,
                layer_class=r.layer_class.value,
                layer_count=r.layer_count,
                confidence=float(r.confidence),
                polygon_um=[[float(x), float(y)] for x, y in r.polygon_um],
                polygon_px=[[float(x), float(y)] for x, y in r.polygon_px],
                area_um2=float(r.area_um2),
                contrast_rgb=None if r.contrast_rgb is None else [float(v) for v in r.contrast_rgb],
            )
        with self.db.session() as s:
            row = RevisitRow(**values)
            s.add(row)
            s.flush()
            s.add_all(
                CloseupRow(
                    revisit_id=row.id,
                    frame_index=c.index,
                    x_um=c.x_um,
                    y_um=c.y_um,
                    z_um=c.z_um,
                    z_offset_um=c.z_offset_um,
                    exposure_ms=c.exposure_ms,
                    width_px=c.width_px,
                    height_px=c.height_px,
                    um_per_px=c.um_per_px,
                    sharpness=float(c.sharpness),
                    file_path=c.image_path,
                    acquired_at=utcnow(),
                )
                for c in closeups
            )

    def _revisits(self, *conditions: Any) -> list[RevisitInfo]:
        with self.db.session() as s:
            rows = list(s.scalars(select(RevisitRow).where(*conditions).order_by(RevisitRow.id)))
            ids = [r.id for r in rows]
            shots: dict[int, list[CloseupRow]] = {i: [] for i in ids}
            if ids:
                for c in s.scalars(select(CloseupRow).where(CloseupRow.revisit_id.in_(ids))):
                    shots[c.revisit_id].append(c)
            return [_revisit(r, shots[r.id]) for r in rows]

    def revisits_of_flake(self, flake_id: int) -> list[RevisitInfo]:
        """Every stored visit of the flake (oldest first), close-ups included."""
        return self._revisits(RevisitRow.flake_id == flake_id)

    def revisits_of_pass(self, pass_id: int) -> list[RevisitInfo]:
        return self._revisits(RevisitRow.pass_id == pass_id)

    def get_revisit(self, revisit_id: int) -> RevisitInfo | None:
        found = self._revisits(RevisitRow.id == revisit_id)
        return found[0] if found else None

    def get_closeup(self, closeup_id: int) -> CloseupInfo | None:
        with self.db.session() as s:
            row = s.get(CloseupRow, closeup_id)
            return None if row is None else _closeup(row)
