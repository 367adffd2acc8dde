"""JSON API behind the web UI (flakes, chips, scans, designs); thin over ``flakefinder.db``.

Routes take and return the pydantic models of :mod:`flakefinder.web.schemas`; designs are
assembled and checked by :mod:`flakefinder.design.assembly`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query, Response

from flakefinder import bounds
from flakefinder.db import Database, FlakeQuery
from flakefinder.db.records import Design
from flakefinder.design.assembly import Assembly, assemble, design_gds, design_summary
from flakefinder.errors import DesignError, UnknownFlakeError
from flakefinder.web.schemas import (
    ChipView,
    DesignIn,
    DesignListItem,
    DesignView,
    FlakePage,
    FlakeView,
    LayerIn,
    PreviewIn,
    ScanView,
    StatusIn,
    StoredLayerView,
    SummaryView,
)


def db_id() -> Any:
    """A path parameter holding a database id (1..SQL BIGINT max); a fresh one per route."""
    return Path(ge=1, le=bounds.SQL_BIGINT_MAX, description="Database id")


ERRORS: dict[int | str, dict[str, object]] = {
    400: {"description": "Bad request"},
    404: {"description": "Not found"},
    422: {"description": "Invalid or undrawable input"},
}


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise HTTPException(400, f"{name} must be a finite number")
    return value


def flake_query(
    *,
    material: Sequence[str] | None = None,
    layer_class: Sequence[str] | None = None,
    min_area: float | None = None,
    max_area: float | None = None,
    min_confidence: float | None = None,
    min_layers: int | None = None,
    max_layers: int | None = None,
    status: Sequence[str] | None = None,
    chip: int | None = None,
    scan: int | None = None,
    order: str = "-area_um2",
    limit: int | None = 60,
    offset: int = 0,
) -> FlakeQuery:
    """A FlakeQuery from request parameters; a bad value becomes a 400 with its message."""
    for name, value in (("chip", chip), ("scan", scan), ("offset", offset), ("limit", limit)):
        if value is not None and not 0 <= value <= bounds.SQL_BIGINT_MAX:
            raise HTTPException(400, f"{name} must lie in 0..{bounds.SQL_BIGINT_MAX}")
    try:
        return FlakeQuery(
            materials=tuple(m for m in material or () if m),
            layer_classes=tuple(c for c in layer_class or () if c),
            min_area_um2=_finite(min_area, "min_area"),
            max_area_um2=_finite(max_area, "max_area"),
            min_confidence=_finite(min_confidence, "min_confidence"),
            min_layer_count=min_layers,
            max_layer_count=max_layers,
            statuses=tuple(s for s in status or () if s),
            chip_id=chip,
            scan_id=scan,
            order_by=order,
            limit=limit,
            offset=offset,
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def assemble_or_error(db: Database, layers: Sequence[LayerIn]) -> Assembly:
    """The assembled layers; 400 for an unknown flake, 422 for a design that cannot be drawn."""
    try:
        return assemble(db, [lay.to_layer() for lay in layers])
    except UnknownFlakeError as exc:
        raise HTTPException(400, str(exc)) from None
    except DesignError as exc:
        raise HTTPException(422, str(exc)) from None


def design_view(db: Database, d: Design) -> DesignView:
    """A stored design with its flakes and summary; a design that cannot be drawn (saved
    before its values were checked, or whose flake is gone) comes back with ``problem`` set."""
    summary: SummaryView | None = None
    flakes: list[FlakeView] = []
    problem: str | None = None
    try:
        assembly = assemble(db, d.layers)
        summary = SummaryView.of(design_summary(assembly))
        flakes = [FlakeView.of(f) for f in assembly.flakes]
    except DesignError as exc:
        problem = f"design {d.id} cannot be drawn: {exc}"
        flakes = [FlakeView.of(f) for lay in d.layers if (f := db.get_flake(lay.flake_id))]
    return DesignView(
        id=d.id,
        name=d.name,
        notes=d.notes,
        layers=[StoredLayerView.of(lay) for lay in d.layers],
        flakes=flakes,
        summary=summary,
        problem=problem,
        created_at=d.created_at.isoformat(),
        updated_at=d.updated_at.isoformat(),
    )


def create_api_router(db: Database) -> APIRouter:
    """The ``/api`` routes of the web UI over ``db``."""
    r = APIRouter(prefix="/api", tags=["flakes"], responses=ERRORS)

    def design_or_404(design_id: int) -> Design:
        d = db.get_design(design_id)
        if d is None:
            raise HTTPException(404, f"no design with id {design_id}")
        return d

    @r.get("/flakes", response_model=FlakePage)
    def list_flakes(
        material: list[str] | None = Query(None),
        layer_class: list[str] | None = Query(None),
        status: list[str] | None = Query(None),
        min_area: float | None = Query(None, allow_inf_nan=False),
        max_area: float | None = Query(None, allow_inf_nan=False),
        min_confidence: float | None = Query(None, allow_inf_nan=False),
        chip: int | None = Query(None, ge=0, le=bounds.SQL_BIGINT_MAX),
        scan: int | None = Query(None, ge=0, le=bounds.SQL_BIGINT_MAX),
        order: str = "-area_um2",
        limit: int = Query(100, ge=0, le=5000),
        offset: int = Query(0, ge=0, le=bounds.SQL_BIGINT_MAX),
    ) -> FlakePage:
        q = flake_query(
            material=material,
            layer_class=layer_class,
            min_area=min_area,
            max_area=max_area,
            min_confidence=min_confidence,
            status=status,
            chip=chip,
            scan=scan,
            order=order,
            limit=limit,
            offset=offset,
        )
        return FlakePage(
            total=db.count_flakes(q), flakes=[FlakeView.of(f) for f in db.query_flakes(q)]
        )

    @r.get("/flakes/{flake_id}", response_model=FlakeView)
    def get_flake(flake_id: int = db_id()) -> FlakeView:
        flake = db.get_flake(flake_id)
        if flake is None:
            raise HTTPException(404, f"no flake with id {flake_id}")
        return FlakeView.of(flake)

    @r.post("/flakes/{flake_id}/status", response_model=FlakeView)
    def set_status(body: StatusIn, flake_id: int = db_id()) -> FlakeView:
        if db.get_flake(flake_id) is None:
            raise HTTPException(404, f"no flake with id {flake_id}")
        try:
            return FlakeView.of(db.set_flake_status(flake_id, body.status, body.notes))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @r.get("/chips", response_model=list[ChipView])
    def chips() -> list[ChipView]:
        return [ChipView.of(c) for c in db.list_chips()]

    @r.get("/scans", response_model=list[ScanView])
    def scans() -> list[ScanView]:
        return [ScanView.of(s) for s in db.list_scans()]

    @r.get("/designs", response_model=list[DesignListItem])
    def designs() -> list[DesignListItem]:
        return [DesignListItem.of(d) for d in db.list_designs()]

    @r.post("/designs", status_code=201, response_model=DesignView)
    def create_design(body: DesignIn) -> DesignView:
        assemble_or_error(db, body.layers)  # every flake exists and the design can be drawn
        design_id = db.save_design(body.name, [lay.to_layer() for lay in body.layers], body.notes)
        return design_view(db, design_or_404(design_id))

    @r.get("/designs/{design_id}", response_model=DesignView)
    def get_design(design_id: int = db_id()) -> DesignView:
        return design_view(db, design_or_404(design_id))

    @r.put("/designs/{design_id}", response_model=DesignView)
    def update_design(body: DesignIn, design_id: int = db_id()) -> DesignView:
        design_or_404(design_id)
        assemble_or_error(db, body.layers)
        db.save_design(
            body.name, [lay.to_layer() for lay in body.layers], body.notes, design_id=design_id
        )
        return design_view(db, design_or_404(design_id))

    @r.delete("/designs/{design_id}", status_code=204)
    def delete_design(design_id: int = db_id()) -> Response:
        if not db.delete_design(design_id):
            raise HTTPException(404, f"no design with id {design_id}")
        return Response(status_code=204)

    @r.post("/designs/preview", response_model=SummaryView)
    def preview(body: PreviewIn) -> SummaryView:
        return SummaryView.of(design_summary(assemble_or_error(db, body.layers)))

    @r.get("/designs/{design_id}/export.json")
    def export_json(design_id: int = db_id()) -> Response:
        view = design_view(db, design_or_404(design_id))
        return Response(
            view.model_dump_json(indent=1),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="design_{design_id}.json"'},
        )

    @r.get("/designs/{design_id}/export.gds")
    def export_gds(design_id: int = db_id()) -> Response:
        d = design_or_404(design_id)
        try:
            data = design_gds(assemble(db, d.layers), d.name)
        except UnknownFlakeError as exc:
            raise HTTPException(400, str(exc)) from None
        except DesignError as exc:
            status = 400 if not d.layers else 422
            raise HTTPException(status, f"design {design_id} cannot be drawn: {exc}") from None
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="design_{design_id}.gds"'},
        )

    return r
