"""JSON API behind the web UI (flakes, chips, scans, designs); thin over ``flakefinder.db``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from flakefinder.db import Database, DesignLayer, FlakeQuery, StoredFlake
from flakefinder.design.geometry import StackLayer, summarize, to_gds


class LayerIn(BaseModel):
    flake_id: int
    x_um: float = 0.0
    y_um: float = 0.0
    rotation_deg: float = 0.0
    order: int = 0


class DesignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    notes: str = ""
    layers: list[LayerIn] = Field(default_factory=list)


class PreviewIn(BaseModel):
    layers: list[LayerIn]


class StatusIn(BaseModel):
    status: str
    notes: str | None = None


def flake_query(
    material: list[str] | None = None,
    layer_class: list[str] | None = None,
    min_area: float | None = None,
    max_area: float | None = None,
    min_confidence: float | None = None,
    min_layers: int | None = None,
    max_layers: int | None = None,
    status: list[str] | None = None,
    chip: int | None = None,
    scan: int | None = None,
    order: str = "-area_um2",
    limit: int | None = 60,
    offset: int = 0,
) -> FlakeQuery:
    """A FlakeQuery from request parameters; a bad value becomes a 400 with its message."""
    try:
        return FlakeQuery(
            materials=tuple(m for m in material or () if m),
            layer_classes=tuple(c for c in layer_class or () if c),  # type: ignore[arg-type,misc]
            min_area_um2=min_area,
            max_area_um2=max_area,
            min_confidence=min_confidence,
            min_layer_count=min_layers,
            max_layer_count=max_layers,
            statuses=tuple(s for s in status or () if s),  # type: ignore[arg-type,misc]
            chip_id=chip,
            scan_id=scan,
            order_by=order,
            limit=limit,
            offset=offset,
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def stack_flakes(db: Database, layers: list[LayerIn]) -> tuple[list[StoredFlake], list[StackLayer]]:
    """The layers' flakes (bottom first) and their placed outlines; 400 for an unknown flake."""
    flakes, stack = [], []
    for lay in sorted(layers, key=lambda item: item.order):
        flake = db.get_flake(lay.flake_id)
        if flake is None:
            raise HTTPException(400, f"no flake with id {lay.flake_id}")
        flakes.append(flake)
        stack.append(
            StackLayer(
                flake.id,
                flake.material,
                flake.layer_count,
                flake.polygon_um,
                lay.x_um,
                lay.y_um,
                lay.rotation_deg,
            )
        )
    return flakes, stack


def stack_layers(db: Database, layers: list[LayerIn]) -> list[StackLayer]:
    return stack_flakes(db, layers)[1]


def summary_dict(layers: list[StackLayer]) -> dict[str, Any]:
    s = summarize(layers)
    return {
        "areas_um2": list(s.areas_um2),
        "stack_overlap_um2": s.stack_overlap_um2,
        "pairs": [
            {
                "lower": p.lower,
                "upper": p.upper,
                "overlap_um2": p.overlap_um2,
                "twist_deg": p.twist_deg,
            }
            for p in s.pairs
        ],
    }


def create_api_router(db: Database) -> APIRouter:
    r = APIRouter(prefix="/api", tags=["flakes"])

    @r.get("/flakes")
    def list_flakes(
        material: list[str] | None = Query(None),
        layer_class: list[str] | None = Query(None),
        status: list[str] | None = Query(None),
        min_area: float | None = None,
        max_area: float | None = None,
        min_confidence: float | None = None,
        chip: int | None = None,
        scan: int | None = None,
        order: str = "-area_um2",
        limit: int = Query(100, ge=0, le=5000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        q = flake_query(
            material,
            layer_class,
            min_area,
            max_area,
            min_confidence,
            None,
            None,
            status,
            chip,
            scan,
            order,
            limit,
            offset,
        )
        return {"total": db.count_flakes(q), "flakes": [f.to_dict() for f in db.query_flakes(q)]}

    @r.get("/flakes/{flake_id}")
    def get_flake(flake_id: int) -> dict[str, Any]:
        flake = db.get_flake(flake_id)
        if flake is None:
            raise HTTPException(404, f"no flake with id {flake_id}")
        return flake.to_dict()

    @r.post("/flakes/{flake_id}/status")
    def set_status(flake_id: int, body: StatusIn) -> dict[str, Any]:
        if db.get_flake(flake_id) is None:
            raise HTTPException(404, f"no flake with id {flake_id}")
        try:
            return db.set_flake_status(flake_id, body.status, body.notes).to_dict()
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @r.get("/chips")
    def chips() -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "name": c.name,
                "materials": list(c.materials),
                "oxide_thickness_nm": c.oxide_thickness_nm,
            }
            for c in db.list_chips()
        ]

    @r.get("/scans")
    def scans() -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "chip": s.chip_name,
                "status": s.status.value,
                "tiles_done": s.tiles_done,
                "n_tiles_planned": s.n_tiles_planned,
                "progress": s.progress,
                "n_flakes": s.n_flakes,
            }
            for s in db.list_scans()
        ]

    def design_dict(design_id: int) -> dict[str, Any]:
        d = db.get_design(design_id)
        if d is None:
            raise HTTPException(404, f"no design with id {design_id}")
        flakes, stack = stack_flakes(db, [LayerIn(**lay.to_dict()) for lay in d.layers])
        return {
            "id": d.id,
            "name": d.name,
            "notes": d.notes,
            "layers": [lay.to_dict() for lay in d.layers],
            "flakes": [f.to_dict() for f in flakes],
            "summary": summary_dict(stack),
            "created_at": d.created_at.isoformat(),
            "updated_at": d.updated_at.isoformat(),
        }

    @r.get("/designs")
    def designs() -> list[dict[str, Any]]:
        return [{"id": d.id, "name": d.name, "n_layers": len(d.layers)} for d in db.list_designs()]

    @r.post("/designs", status_code=201)
    def create_design(body: DesignIn) -> dict[str, Any]:
        stack_layers(db, body.layers)  # every flake must exist
        design_id = db.save_design(
            body.name, [DesignLayer(**lay.model_dump()) for lay in body.layers], body.notes
        )
        return design_dict(design_id)

    @r.get("/designs/{design_id}")
    def get_design(design_id: int) -> dict[str, Any]:
        return design_dict(design_id)

    @r.put("/designs/{design_id}")
    def update_design(design_id: int, body: DesignIn) -> dict[str, Any]:
        if db.get_design(design_id) is None:
            raise HTTPException(404, f"no design with id {design_id}")
        stack_layers(db, body.layers)
        db.save_design(
            body.name,
            [DesignLayer(**lay.model_dump()) for lay in body.layers],
            body.notes,
            design_id=design_id,
        )
        return design_dict(design_id)

    @r.delete("/designs/{design_id}", status_code=204)
    def delete_design(design_id: int) -> Response:
        if not db.delete_design(design_id):
            raise HTTPException(404, f"no design with id {design_id}")
        return Response(status_code=204)

    @r.post("/designs/preview")
    def preview(body: PreviewIn) -> dict[str, Any]:
        return summary_dict(stack_layers(db, body.layers))

    @r.get("/designs/{design_id}/export.json")
    def export_json(design_id: int) -> Response:
        import json

        body = json.dumps(design_dict(design_id), indent=1)
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="design_{design_id}.json"'},
        )

    @r.get("/designs/{design_id}/export.gds")
    def export_gds(design_id: int) -> Response:
        d = db.get_design(design_id)
        if d is None:
            raise HTTPException(404, f"no design with id {design_id}")
        layers = stack_layers(db, [LayerIn(**lay.to_dict()) for lay in d.layers])
        if not layers:
            raise HTTPException(400, "the design has no layers to export")
        return Response(
            to_gds(layers, d.name),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="design_{design_id}.gds"'},
        )

    return r
