"""The chip map's data: ``GET /api/chips/{chip_id}/map`` answers one viewport (flakes or clusters).

The page (``/chips/{chip_id}``) renders its first view with the same query, then ``chipmap.js``
asks this route for each new view as the user pans and zooms. Read-only: no auth needed.
"""

from __future__ import annotations

import json
import math

from fastapi import APIRouter, HTTPException, Query, Response

from flakefinder.db import Database, FlakeQuery
from flakefinder.db.viewport import DEFAULT_MAX_FLAKES, ChipMapQueries, ChipViewport
from flakefinder.web.api import flake_query


def map_filters(
    material: list[str] | None,
    layer_class: list[str] | None,
    status: list[str] | None,
    min_area: float | None,
    max_area: float | None,
    min_confidence: float | None,
) -> FlakeQuery:
    """The map's flake filters as a FlakeQuery (chip, order and paging unused); 400 when bad."""
    for name, value in (
        ("min_area", min_area),
        ("max_area", max_area),
        ("min_confidence", min_confidence),
    ):
        if value is not None and not math.isfinite(value):
            raise HTTPException(400, f"{name} must be a finite number")
    return flake_query(
        material, layer_class, min_area, max_area, min_confidence, None, None, status, limit=None
    )


def viewport_or_400(
    queries: ChipMapQueries,
    chip_id: int,
    bbox_um: tuple[float, float, float, float],
    filters: FlakeQuery,
    max_flakes: int = DEFAULT_MAX_FLAKES,
) -> ChipViewport:
    """``queries.query(...)``, with a bad rectangle or limit as an HTTP 400."""
    try:
        return queries.query(chip_id, bbox_um, filters, max_flakes=max_flakes)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def create_chipmap_router(db: Database, queries: ChipMapQueries) -> APIRouter:
    """Router with the chip map's viewport API."""
    r = APIRouter(prefix="/api", tags=["flakes"])

    @r.get("/chips/{chip_id}/map")
    def chip_map_view(
        chip_id: int,
        x0: float = Query(..., description="left edge of the view, µm"),
        y0: float = Query(..., description="top edge of the view, µm"),
        x1: float = Query(..., description="right edge of the view, µm"),
        y1: float = Query(..., description="bottom edge of the view, µm"),
        material: list[str] | None = Query(None),
        layer_class: list[str] | None = Query(None),
        status: list[str] | None = Query(None),
        min_area: float | None = None,
        max_area: float | None = None,
        min_confidence: float | None = None,
        max_flakes: int = Query(DEFAULT_MAX_FLAKES, ge=1, le=5000),
    ) -> Response:
        """Flakes of the chip overlapping the view (outlines), or clusters on a grid of about
        32 cells across when more than ``max_flakes`` match."""
        if db.get_chip(chip_id) is None:
            raise HTTPException(404, f"no chip with id {chip_id}")
        filters = map_filters(material, layer_class, status, min_area, max_area, min_confidence)
        view = viewport_or_400(queries, chip_id, (x0, y0, x1, y1), filters, max_flakes)
        # plain json.dumps: FastAPI's encoder costs more than the query for a thousand outlines
        return Response(
            json.dumps(view.to_dict(), separators=(",", ":")), media_type="application/json"
        )

    return r
