"""Server-rendered pages of the web UI (Jinja2). Routes stay thin: data from ``Database``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from flakefinder.db import Database, FlakeQuery, FlakeStatus
from flakefinder.db.hunt import HuntStore
from flakefinder.db.viewport import ChipMapQueries
from flakefinder.domain import LAYER_CLASSES, ChipFrame
from flakefinder.web.api import db_id, flake_query
from flakefinder.web.chipmap import map_filters, viewport_or_400
from flakefinder.web.images import Extent, flake_crop, png_bytes, tiles_extent
from flakefinder.web.mosaic import Pyramid, latest_scan_images

MATERIAL_COLOURS = {
    "graphene": "#3b82f6",
    "hBN": "#f59e0b",
    "MoS2": "#10b981",
    "WTe2": "#ef4444",
    "WSe2": "#8b5cf6",
    "MoSe2": "#ec4899",
}
PAGE_SIZE = 48


def _num(text: str) -> float | None:
    """A form field as a number (None when blank); HTTP 400 naming it when it is not one."""
    try:
        value = float(text) if text.strip() else None
    except ValueError:
        raise HTTPException(400, f"not a number: {text[:40]!r}") from None
    if value is not None and not math.isfinite(value):
        raise HTTPException(400, f"not a finite number: {text[:40]!r}")
    return value


def _union(a: Extent, b: Extent) -> Extent:
    x0, y0 = min(a.x_um, b.x_um), min(a.y_um, b.y_um)
    x1 = max(a.x_um + a.width_um, b.x_um + b.width_um)
    y1 = max(a.y_um + a.height_um, b.y_um + b.height_um)
    return Extent(x0, y0, x1 - x0, y1 - y0)


def create_page_router(db: Database, map_queries: ChipMapQueries | None = None) -> APIRouter:
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    templates.env.globals["colours"] = MATERIAL_COLOURS
    map_queries = map_queries or ChipMapQueries(db)
    hunt = HuntStore(db)
    r = APIRouter(include_in_schema=False)

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context)

    @r.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse("/flakes", status_code=307)

    @r.get("/flakes", response_class=HTMLResponse)
    def gallery(
        request: Request,
        material: list[str] | None = Query(None),
        layer_class: list[str] | None = Query(None),
        status: list[str] | None = Query(None),
        min_area: str = "",
        max_area: str = "",
        min_confidence: str = "",
        chip: str = "",
        order: str = "-area_um2",
        page: int = Query(1, ge=1, le=10**9),
    ) -> HTMLResponse:
        def chip_id(text: str) -> int | None:
            if not text.strip():
                return None
            if not text.strip().isdigit():
                raise HTTPException(400, f"chip must be a chip id (a whole number), not {text!r}")
            return int(text)

        q = flake_query(
            material=material,
            layer_class=layer_class,
            min_area=_num(min_area),
            max_area=_num(max_area),
            min_confidence=_num(min_confidence),
            status=status,
            chip=chip_id(chip),
            order=order,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        total = db.count_flakes(q)
        materials = sorted({m for c in db.list_chips() for m in c.materials} | set(q.materials))
        return render(
            request,
            "gallery.html",
            flakes=db.query_flakes(q),
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            q=q,
            form={
                "min_area": min_area,
                "max_area": max_area,
                "min_confidence": min_confidence,
                "chip": chip,
            },
            materials=materials,
            layer_classes=[c.value for c in LAYER_CLASSES],
            statuses=[s.value for s in FlakeStatus],
            chips=db.list_chips(),
            query_string=str(request.url.query),
        )

    def flake_or_404(flake_id: int) -> Any:
        flake = db.get_flake(flake_id)
        if flake is None:
            raise HTTPException(404, f"no flake with id {flake_id}")
        return flake

    @r.get("/flakes/{flake_id}", response_class=HTMLResponse)
    def flake_page(request: Request, flake_id: int = db_id()) -> HTMLResponse:
        flake = flake_or_404(flake_id)
        image = db.get_image(flake.image_id) if flake.image_id is not None else None
        scan = db.get_scan(flake.scan_id)
        chip_position = None
        try:
            raw = None if scan is None else scan.settings.get("chip_frame")
            frame = ChipFrame.identity() if raw is None else ChipFrame.from_dict(raw)
        except ValueError:
            frame = ChipFrame.identity()  # an unreadable frame: show stage positions only
        if not frame.is_identity:
            chip_position = frame.to_chip(*flake.centroid_um)
        return render(
            request,
            "flake.html",
            flake=flake,
            image=image,
            chip_position=chip_position,
            statuses=[s.value for s in FlakeStatus],
            chip=db.get_chip(flake.chip_id),
            revisits=list(reversed(hunt.revisits_of_flake(flake_id))),
        )

    @r.post("/flakes/{flake_id}")
    def flake_update(
        flake_id: int = db_id(),
        status: str = Form(..., max_length=40),
        notes: str = Form("", max_length=10_000),
        set_status: str = Form("", max_length=40),  # the "Mark used" / "Reject" buttons
    ) -> RedirectResponse:
        flake_or_404(flake_id)
        status = set_status or status
        try:
            db.set_flake_status(flake_id, status, notes)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return RedirectResponse(f"/flakes/{flake_id}", status_code=303)

    @r.get("/flakes/{flake_id}/crop.png")
    def crop(flake_id: int = db_id(), size: int = Query(320, ge=32, le=1600)) -> Response:
        flake = flake_or_404(flake_id)
        image = db.get_image(flake.image_id) if flake.image_id is not None else None
        if image is None or not image.file_path or not Path(image.file_path).is_file():
            raise HTTPException(404, f"the image of flake {flake_id} was not saved")
        return Response(
            png_bytes(flake_crop(Path(image.file_path), flake, size_px=size)),
            media_type="image/png",
        )

    @r.get("/chips", response_class=HTMLResponse)
    def chips(request: Request) -> HTMLResponse:
        return render(request, "chips.html", chips=db.list_chips(), scans=db.list_scans())

    def chip_images(chip_id: int) -> list[Any]:
        return latest_scan_images(db, chip_id)

    @r.get("/chips/{chip_id}", response_class=HTMLResponse)
    def chip_map(
        request: Request,
        chip_id: int = db_id(),
        material: list[str] | None = Query(None),
        layer_class: list[str] | None = Query(None),
        status: list[str] | None = Query(None),
        min_area: str = "",
        min_confidence: str = "",
    ) -> HTMLResponse:
        chip = db.get_chip(chip_id)
        if chip is None:
            raise HTTPException(404, f"no chip with id {chip_id}")
        filters = map_filters(
            material, layer_class, status, _num(min_area), None, _num(min_confidence)
        )
        images = chip_images(chip_id)
        extent = tiles_extent(images)
        overview = hunt.overview_of_chip(chip_id)
        overview_extent = None
        if overview is not None:  # the overview mosaic under the tiles, in the map's extent
            ox0, oy0, ox1, oy1 = (float(v) for v in overview.settings["mosaic_extent_um"])
            overview_extent = Extent(ox0, oy0, ox1 - ox0, oy1 - oy0)
            extent = overview_extent if extent is None else _union(extent, overview_extent)
        if extent is None:
            bounds = map_queries.bounds(chip_id)
            if bounds is not None:
                x0, y0, x1, y1 = bounds
                extent = Extent(x0, y0, x1 - x0 or 1.0, y1 - y0 or 1.0)
        view = None
        if extent is not None:  # the first view, drawn in the page; chipmap.js fetches the next
            box = (
                extent.x_um,
                extent.y_um,
                extent.x_um + extent.width_um,
                extent.y_um + extent.height_um,
            )
            view = viewport_or_400(map_queries, chip_id, box, filters)
        materials = sorted(set(chip.materials) | set(filters.materials))
        return render(
            request,
            "chipmap.html",
            chip=chip,
            view=view,
            flakes=() if view is None else view.flakes,
            n_flakes=db.count_flakes(FlakeQuery(chip_id=chip_id)),
            extent=extent,
            has_mosaic=bool(images),
            mosaic=Pyramid.of(images),  # its extent: the tiles', not the map's (the union)
            mosaic_version=len(images),
            overview=overview,
            overview_extent=overview_extent,
            filters=filters,
            form={"min_area": min_area, "min_confidence": min_confidence},
            materials=materials,
            layer_classes=[c.value for c in LAYER_CLASSES],
            statuses=[s.value for s in FlakeStatus],
        )

    @r.get("/scans", response_class=HTMLResponse)
    def scans(request: Request) -> HTMLResponse:
        all_scans = db.list_scans()
        passes = hunt.list_passes()
        running = any(s.status.value == "running" for s in all_scans) or any(
            p.status.value == "running" for p in passes
        )
        by_scan: dict[int, list[Any]] = {}
        for p in passes:
            if p.scan_id is not None:
                by_scan.setdefault(p.scan_id, []).append(p)
        return render(request, "scans.html", scans=all_scans, running=running, passes=by_scan)

    @r.get("/designs", response_class=HTMLResponse)
    def designs(request: Request) -> HTMLResponse:
        return render(request, "designs.html", designs=db.list_designs())

    @r.get("/designs/new", response_class=HTMLResponse)
    def new_design(request: Request) -> HTMLResponse:
        return render(request, "designer.html", design_id=None)

    @r.get("/designs/{design_id}", response_class=HTMLResponse)
    def edit_design(request: Request, design_id: int = db_id()) -> HTMLResponse:
        if db.get_design(design_id) is None:
            raise HTTPException(404, f"no design with id {design_id}")
        return render(request, "designer.html", design_id=design_id)

    return r
