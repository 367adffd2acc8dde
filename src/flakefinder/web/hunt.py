"""The hunt in the web UI: a scan's page (its passes and the search-region editor), the
overview mosaic, close-up images, and their JSON API.

``PUT /api/scans/{id}/region`` changes state, so the server's security middleware asks for the
API key (or a login session) like every other state-changing route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from flakefinder.db import Database, ScanInfo
from flakefinder.db.hunt import HuntStore, RegionLockedError
from flakefinder.db.hunt_records import CloseupInfo, PassInfo
from flakefinder.scan.region import RegionError, SearchRegion, plan_region
from flakefinder.web.api import ERRORS, db_id
from flakefinder.web.hunt_schemas import PassView, RegionIn, RegionView, RevisitView
from flakefinder.web.images import outline_crop, png_bytes

MAX_TILES_LISTED = 5000  # a region view lists its tiles up to this many


def _file(path: str | None, what: str) -> Path:
    if not path or not Path(path).is_file():
        raise HTTPException(404, f"the {what} file is missing (was it moved or deleted?)")
    return Path(path)


def create_hunt_router(db: Database) -> APIRouter:
    """Routes of the scan page, mosaic and close-up images, and the hunt API over ``db``."""
    hunt = HuntStore(db)
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    r = APIRouter()

    def scan_or_404(scan_id: int) -> ScanInfo:
        scan = db.get_scan(scan_id)
        if scan is None:
            raise HTTPException(404, f"no scan with id {scan_id}")
        return scan

    def overview_or_404(scan_id: int) -> PassInfo:
        overview = hunt.overview_of_scan(scan_id)
        if overview is None:
            raise HTTPException(
                404, f"scan {scan_id} has no overview (run flakefinder scan with --overview)"
            )
        return overview

    def region_view(scan: ScanInfo) -> RegionView:
        ov = overview_or_404(scan.id)
        s = ov.settings
        region = SearchRegion.from_dict(s["region"])
        fov_w, fov_h = (float(v) for v in s["search_fov_um"])
        tiles = plan_region(region, fov_w, fov_h, float(s.get("overlap", 0.1)))
        analysis = s.get("analysis", {})
        return RegionView(
            scan_id=scan.id,
            overview_pass_id=ov.id,
            region=region.to_dict(),
            proposed_region=s.get("proposed_region", region.to_dict()),
            edited=bool(s.get("region_edited", False)),
            editable=scan.tiles_done == 0,
            area_um=[float(v) for v in s["area_um"]],
            chip_corners_um=[list(p) for p in analysis.get("chip_corners_um", [])],
            mosaic_url=f"/passes/{ov.id}/mosaic.png" if s.get("mosaic_path") else None,
            mosaic_extent_um=s.get("mosaic_extent_um"),
            search_objective=str(s.get("search_objective", scan.objective)),
            search_fov_um=[fov_w, fov_h],
            n_tiles=len(tiles),
            tiles_um=[[t.x_um, t.y_um] for t in tiles[:MAX_TILES_LISTED]],
        )

    @r.get("/scans/{scan_id}", response_class=HTMLResponse, include_in_schema=False)
    def scan_page(request: Request, scan_id: int = db_id()) -> HTMLResponse:
        scan = scan_or_404(scan_id)
        region = region_view(scan) if hunt.overview_of_scan(scan_id) else None
        context: dict[str, Any] = {
            "scan": scan,
            "passes": hunt.list_passes(scan_id=scan_id),
            "region": region,
        }
        return templates.TemplateResponse(request, "scan.html", context)

    @r.get("/passes/{pass_id}/mosaic.png", include_in_schema=False)
    def mosaic(pass_id: int = db_id()) -> FileResponse:
        found = hunt.get_pass(pass_id)
        if found is None or found.kind != "overview":
            raise HTTPException(404, f"no overview pass with id {pass_id}")
        return FileResponse(_file(found.settings.get("mosaic_path"), "overview mosaic"))

    def closeup_or_404(closeup_id: int) -> CloseupInfo:
        found = hunt.get_closeup(closeup_id)
        if found is None:
            raise HTTPException(404, f"no close-up with id {closeup_id}")
        return found

    @r.get("/closeups/{closeup_id}.png", include_in_schema=False)
    def closeup(closeup_id: int = db_id()) -> FileResponse:
        return FileResponse(_file(closeup_or_404(closeup_id).file_path, "close-up"))

    @r.get("/closeups/{closeup_id}/crop.png", include_in_schema=False)
    def closeup_crop(closeup_id: int = db_id(), size: int = Query(320, ge=32, le=1600)) -> Response:
        c = closeup_or_404(closeup_id)
        path = _file(c.file_path, "close-up")
        visit = hunt.get_revisit(c.revisit_id)
        poly = () if visit is None else visit.polygon_px
        if len(poly) >= 3:
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            image = outline_crop(path, (min(xs), min(ys), max(xs), max(ys)), poly, size_px=size)
        else:  # not refined: the whole frame
            image = outline_crop(path, (0, 0, c.width_px, c.height_px), (), size_px=size, margin=0)
        return Response(png_bytes(image), media_type="image/png")

    @r.get("/api/scans/{scan_id}/passes", response_model=list[PassView], tags=["hunt"])
    def passes(scan_id: int = db_id()) -> list[PassView]:
        scan_or_404(scan_id)
        return [PassView.of(p) for p in hunt.list_passes(scan_id=scan_id)]

    @r.get(
        "/api/scans/{scan_id}/region", response_model=RegionView, tags=["hunt"], responses=ERRORS
    )
    def get_region(scan_id: int = db_id()) -> RegionView:
        return region_view(scan_or_404(scan_id))

    @r.put(
        "/api/scans/{scan_id}/region",
        response_model=RegionView,
        tags=["hunt"],
        responses={**ERRORS, 409: {"description": "The search has started"}},
    )
    def put_region(body: RegionIn, scan_id: int = db_id()) -> RegionView:
        """Replace the search region before the search starts (409 once it has)."""
        scan = scan_or_404(scan_id)
        ov = overview_or_404(scan_id)
        try:
            region = body.to_region()
        except RegionError as exc:
            raise HTTPException(422, str(exc)) from None
        ax0, ay0, ax1, ay1 = (float(v) for v in ov.settings["area_um"])
        x0, y0, x1, y1 = region.rect_um
        if x0 < ax0 or y0 < ay0 or x1 > ax1 or y1 > ay1:
            raise HTTPException(
                422,
                f"the region must lie inside the area the overview imaged (x {ax0:.0f}..{ax1:.0f},"
                f" y {ay0:.0f}..{ay1:.0f} µm)",
            )
        fov_w, fov_h = (float(v) for v in ov.settings["search_fov_um"])
        try:
            n = len(plan_region(region, fov_w, fov_h, float(ov.settings.get("overlap", 0.1))))
            hunt.set_region(scan_id, region, n)
        except RegionError as exc:
            raise HTTPException(422, str(exc)) from None
        except RegionLockedError as exc:
            raise HTTPException(409, str(exc)) from None
        return region_view(scan_or_404(scan.id))

    @r.get("/api/flakes/{flake_id}/closeups", response_model=list[RevisitView], tags=["hunt"])
    def flake_closeups(flake_id: int = db_id()) -> list[RevisitView]:
        if db.get_flake(flake_id) is None:
            raise HTTPException(404, f"no flake with id {flake_id}")
        return [RevisitView.of(v) for v in hunt.revisits_of_flake(flake_id)]

    return r
