"""The revisit pass of a scan: which flakes, in which order, from which focus, stored where.

:func:`open_revisit` checks the request before anything moves or is written (the scan exists
and is finished, the filter selects something, ``--resume`` has a pass to continue with the
same objective and filter), then starts the pass with its route (nearest neighbour + 2-opt
from the stage's position, kept with the pass so a resumed pass follows the same route).
:func:`run_revisit_pass` visits the flakes (:func:`flakefinder.scan.revisit.run_revisit`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flakefinder.db import FlakeQuery, ScanStatus
from flakefinder.errors import FlakefinderError
from flakefinder.hardware.objectives import find_objective
from flakefinder.scan.resume import NothingToResumeError
from flakefinder.scan.revisit import RevisitOptions, RevisitSummary, RevisitTarget, run_revisit
from flakefinder.scan.route import plan_route
from flakefinder.scan.selection import parse_filter

if TYPE_CHECKING:
    from flakefinder.db import Database, ScanInfo, StoredFlake
    from flakefinder.db.hunt import HuntStore
    from flakefinder.domain import Detector, ImagingContext
    from flakefinder.hardware.protocols import Microscope


@dataclass(frozen=True)
class RevisitRequest:
    """What ``flakefinder revisit`` asks for."""

    scan_id: int
    objective: str
    filter_text: str
    resume: bool = False
    options: RevisitOptions = RevisitOptions()


@dataclass(frozen=True)
class OpenedRevisit:
    pass_id: int
    targets: tuple[RevisitTarget, ...]  # in route order
    route_um: float
    naive_route_um: float
    resumed: bool


def finished_scan(database: Database, scan_id: int) -> ScanInfo:
    """The scan to revisit; refuses an unknown or unfinished one."""
    scan = database.get_scan(scan_id)
    if scan is None:
        raise FlakefinderError(f"no scan with id {scan_id} in {database.masked_url}")
    if scan.status is not ScanStatus.FINISHED:
        raise FlakefinderError(
            f"scan {scan_id} is {scan.status.value} ({scan.tiles_done} of"
            f" {scan.n_tiles_planned} tiles): finish it (flakefinder scan ... --resume) before"
            " revisiting its flakes"
        )
    return scan


def closeup_dir(database: Database, scan_id: int, out: Path | None) -> Path | None:
    """Where close-ups go: ``closeups/`` in the folder of the scan's tile images, else
    ``OUT/scan_<id>/closeups`` with ``--out``, else nowhere (None)."""
    for image in database.list_images(scan_id):
        if image.file_path:
            return Path(image.file_path).parent / "closeups"
    if out is not None:
        return out.resolve() / f"scan_{scan_id}" / "closeups"
    return None


def _targets(
    database: Database, flakes: list[StoredFlake], z_shift_um: float
) -> list[RevisitTarget]:
    tile_z: dict[int, float] = {}
    out = []
    for f in flakes:
        z = None
        if f.image_id is not None:
            if f.image_id not in tile_z:
                image = database.get_image(f.image_id)
                if image is not None:
                    tile_z[f.image_id] = image.z_um
            if f.image_id in tile_z:
                z = tile_z[f.image_id] + z_shift_um
        out.append(
            RevisitTarget(
                f.id, f.material, f.layer_class, f.layer_count, f.polygon_um, f.bbox_um, z
            )
        )
    return out


def _z_shift(microscope: Microscope, scan: ScanInfo, objective: str) -> float:
    """Focus offset of the revisit objective relative to the scan's (0 when unknown)."""
    turret = microscope.turret
    if turret is None:
        return 0.0
    target = find_objective(turret.objectives, objective)
    try:
        searched = find_objective(turret.objectives, scan.objective)
    except FlakefinderError:
        return 0.0
    return target.focus_offset_um - searched.focus_offset_um


def open_revisit(
    database: Database, hunt: HuntStore, request: RevisitRequest, microscope: Microscope
) -> OpenedRevisit:
    """Check the request and start (or find, with ``resume``) the revisit pass; the microscope
    must already be at the revisit objective (the route starts at its stage position)."""
    scan = finished_scan(database, request.scan_id)
    flt = parse_filter(request.filter_text)
    shift = _z_shift(microscope, scan, request.objective)
    if request.resume:
        found = hunt.find_resumable_pass(scan.id, "revisit")
        if found is None:
            raise NothingToResumeError(
                f"scan {scan.id} has no unfinished revisit pass; nothing to resume (run the"
                " same command without --resume to start one)"
            )
        was = (found.settings.get("objective"), found.settings.get("filter"))
        if was != (request.objective, str(flt)):
            raise FlakefinderError(
                f"the unfinished revisit pass {found.id} of scan {scan.id} used --objective"
                f" {was[0]} --filter {was[1]!r}; resume with those, or start a new pass"
                " without --resume"
            )
        by_id = {f.id: f for f in database.query_flakes(FlakeQuery(scan_id=scan.id))}
        stored = [by_id[i] for i in found.settings.get("route", []) if i in by_id]
        hunt.update_pass(found.id, status=ScanStatus.RUNNING)
        return OpenedRevisit(
            found.id,
            tuple(_targets(database, stored, shift)),
            float(found.settings.get("route_um", 0.0)),
            float(found.settings.get("naive_route_um", 0.0)),
            resumed=True,
        )
    flakes = [f for f in database.query_flakes(FlakeQuery(scan_id=scan.id)) if flt.matches(f)]
    if not flakes:
        raise FlakefinderError(
            f"no flake of scan {scan.id} matches --filter {request.filter_text!r}; nothing to"
            " revisit (flakefinder flakes list shows what the scan stored)"
        )
    targets = _targets(database, flakes, shift)
    route = plan_route(microscope.stage.get_xy_um(), [t.centre_um for t in targets])
    ordered = [targets[i] for i in route.order]
    pass_id = hunt.start_pass(
        scan.chip_id,
        scan_id=scan.id,
        kind="revisit",
        objective=request.objective,
        um_per_px=microscope.camera.um_per_px,
        n_planned=len(ordered),
        settings={
            "objective": request.objective,
            "filter": str(flt),
            "route": [t.flake_id for t in ordered],
            "route_um": route.length_um,
            "naive_route_um": route.naive_length_um,
            "options": asdict(request.options),
        },
    )
    return OpenedRevisit(
        pass_id, tuple(ordered), route.length_um, route.naive_length_um, resumed=False
    )


def run_revisit_pass(
    microscope: Microscope,
    detector: Detector,
    hunt: HuntStore,
    opened: OpenedRevisit,
    context: ImagingContext,
    *,
    options: RevisitOptions,
    image_dir: Path | None,
    progress: bool = True,
) -> RevisitSummary:
    """Visit the opened pass's flakes (those not stored yet) and finish the pass."""
    return run_revisit(
        microscope,
        detector,
        hunt,
        opened.pass_id,
        opened.targets,
        context,
        options=options,
        image_dir=image_dir,
        progress=progress,
        route_um=(opened.route_um, opened.naive_route_um),
    )
