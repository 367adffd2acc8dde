"""The Setup page: calibrate a microscope setup from a few uploaded images in the browser.

Upload images, click flakes (region growing) or outline them, type layer numbers or accept the
proposed ones, calibrate (:func:`flakefinder.calibration.calibrate`), look at the fitted colour
clusters over the optics prediction, download the profile.

Every route that changes state is a POST or DELETE under ``/api/setup``: the server's access
rules for state-changing requests apply to them like to every other such route.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, File, HTTPException, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from flakefinder.errors import CalibrationError, ImageError, UnknownMaterialError
from flakefinder.web.setup_workspace import Workspace, Workspaces

MAX_OUTLINE_POINTS = 5000
PLOT_MAX_LAYERS = 12


class RegionIn(BaseModel):
    """A region to mark: a click (``x_px``, ``y_px``) or an outline (``polygon_px``)."""

    model_config = ConfigDict(extra="forbid")
    image_index: int = Field(ge=0, le=1000)
    x_px: int | None = Field(None, ge=0, le=100_000)
    y_px: int | None = Field(None, ge=0, le=100_000)
    tolerance: float | None = Field(None, gt=0, le=255, allow_inf_nan=False)
    polygon_px: list[tuple[float, float]] | None = Field(None, max_length=MAX_OUTLINE_POINTS)


class CalibrateIn(BaseModel):
    """What to calibrate: the material, substrate, pixel size and each region's layer number."""

    model_config = ConfigDict(extra="forbid")
    material: str = Field(min_length=1, max_length=40)
    oxide_nm: float = Field(gt=0, le=2000, allow_inf_nan=False)
    um_per_px: float = Field(gt=0, le=100, allow_inf_nan=False)
    name: str = Field("setup", min_length=1, max_length=100, pattern=r"^[\w .+-]+$")
    layers: dict[int, int | None] = Field(default_factory=dict, max_length=1000)


def _region_dict(region: Any) -> dict[str, Any]:
    from flakefinder.calibration.regions import mask_outline

    return {
        "id": region.id,
        "image_index": region.image_index,
        "area_px": region.area_px,
        "how": region.how,
        "outline_px": [list(p) for p in mask_outline(region.mask)],
    }


def _vec(values: Any) -> list[float]:
    return [round(float(v), 5) for v in values]


def skipped_note(region_ids: tuple[int, ...]) -> str:
    """What the page says about flakes left out of a calibration for lack of a layer number."""
    if len(region_ids) == 1:
        return f"flake #{region_ids[0]} has no layer number: left out of the calibration"
    names = ", ".join(f"#{i}" for i in region_ids)
    return f"flakes {names} have no layer number: left out of the calibration"


def report_dict(ws: Workspace) -> dict[str, Any]:
    """The last calibration as JSON: summary, clusters, colour table and the optics curve."""
    rep = ws.report
    if rep is None:
        raise HTTPException(404, "nothing calibrated yet in this setup session")
    table = rep.profile.table(rep.material)
    curve: list[dict[str, Any]] = []
    fit = rep.profile.optics_fit
    if fit is not None:
        from flakefinder.calibration.physics import CameraOpticsParams, predict_contrast

        try:
            params = CameraOpticsParams.from_optics_fit(fit)
            top = max([PLOT_MAX_LAYERS, *table.layer_counts])
            layers = list(range(1, min(top, 40) + 1))
            pred = predict_contrast(rep.material, rep.profile.oxide_nm, params, layers)
            curve = [
                {"n_layers": n, "contrast_rgb": _vec(c)} for n, c in zip(layers, pred, strict=True)
            ]
        except CalibrationError:
            curve = []
    return {
        "name": rep.profile.name,
        "material": rep.material,
        "mode": rep.mode,
        "confidence": round(rep.confidence, 4),
        "rms_residual": round(rep.rms_residual, 5),
        "max_abs_residual": round(rep.max_abs_residual, 5),
        "warnings": list(rep.warnings),
        "lines": rep.lines(),
        "sha256": rep.profile.sha256,
        "profile_id": rep.profile.profile_id,
        "proposed_layers": {
            str(rid): n for rid, n in zip(ws.report_region_ids, rep.region_layers, strict=False)
        },
        "skipped_regions": list(ws.report_skipped),
        "notes": [skipped_note(ws.report_skipped)] if ws.report_skipped else [],
        "clusters": [
            {
                "n_layers": c.n_layers,
                "contrast_rgb": _vec(c.contrast_rgb),
                "n_flakes": c.n_flakes,
                "n_pixels": c.n_pixels,
                "residual_rgb": None if c.residual_rgb is None else _vec(c.residual_rgb),
            }
            for c in rep.clusters
        ],
        "table": [
            {
                "n_layers": e.n_layers,
                "contrast_rgb": _vec(e.contrast_rgb),
                "sd_rgb": _vec(np.sqrt(np.diag(e.covariance))),
                "source": e.source,
            }
            for e in table.layers
        ],
        "optics_curve": curve,
    }


def create_setup_router(workspaces: Workspaces) -> APIRouter:
    """The Setup page and its JSON API."""
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    r = APIRouter()

    def workspace(workspace_id: str) -> Workspace:
        try:
            return workspaces.get(workspace_id)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    @r.get("/setup", response_class=HTMLResponse, include_in_schema=False)
    def setup_page(request: Request) -> HTMLResponse:
        from flakefinder.optics.materials import material_names

        return templates.TemplateResponse(request, "setup.html", {"materials": material_names()})

    @r.post("/api/setup/sessions", status_code=201, tags=["setup"])
    def new_session() -> dict[str, Any]:
        """Start a setup session (images and regions are kept in server memory)."""
        return {"session": workspaces.create().id}

    @r.post("/api/setup/sessions/{workspace_id}/images", status_code=201, tags=["setup"])
    async def upload_image(
        workspace_id: str, image: UploadFile = File(..., description="PNG, JPEG or TIFF")
    ) -> dict[str, Any]:
        """Add one micrograph to the session; all images of a session have one size."""
        from starlette.concurrency import run_in_threadpool

        from flakefinder.imaging import decode_image

        ws = workspace(workspace_id)
        name = (image.filename or "upload")[:200]
        data = await image.read()
        try:
            pixels = await run_in_threadpool(decode_image, data, what=name)
        except ImageError as exc:
            raise HTTPException(400, str(exc)) from None
        if min(pixels.shape[:2]) < 16:
            raise HTTPException(400, f"{name}: {pixels.shape[1]}x{pixels.shape[0]} px is too small")
        with ws.lock:
            try:
                index = ws.add_image(pixels, name)
            except CalibrationError as exc:
                raise HTTPException(400, str(exc)) from None
        return {
            "index": index,
            "name": name,
            "width_px": pixels.shape[1],
            "height_px": pixels.shape[0],
        }

    @r.get("/api/setup/sessions/{workspace_id}/images/{index}.png", tags=["setup"])
    def image_png(workspace_id: str, index: int) -> Response:
        """The uploaded image as PNG (what the page draws on)."""
        from PIL import Image

        ws = workspace(workspace_id)
        try:
            pixels = ws.image(index)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
        return Response(buf.getvalue(), media_type="image/png")

    @r.post("/api/setup/sessions/{workspace_id}/regions", status_code=201, tags=["setup"])
    def add_region(workspace_id: str, body: RegionIn) -> dict[str, Any]:
        """Mark a flake: grow a region from a clicked pixel, or fill a drawn outline."""
        from flakefinder.calibration.regions import grow_region, polygon_mask

        ws = workspace(workspace_id)
        try:
            pixels = ws.image(body.image_index)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        try:
            if body.polygon_px is not None:
                mask, how = polygon_mask(pixels.shape[:2], body.polygon_px), "outline"
            elif body.x_px is not None and body.y_px is not None:
                mask = grow_region(pixels, body.x_px, body.y_px, tolerance=body.tolerance)
                how = "click"
            else:
                raise HTTPException(400, "give a clicked pixel (x_px, y_px) or an outline")
            with ws.lock:
                region = ws.add_region(body.image_index, mask, how)
        except CalibrationError as exc:
            raise HTTPException(400, str(exc)) from None
        return _region_dict(region)

    @r.delete(
        "/api/setup/sessions/{workspace_id}/regions/{region_id}", status_code=204, tags=["setup"]
    )
    def delete_region(workspace_id: str, region_id: int) -> Response:
        """Forget a marked region."""
        ws = workspace(workspace_id)
        with ws.lock:
            if ws.regions.pop(region_id, None) is None:
                raise HTTPException(404, f"no region {region_id} in this setup session")
        return Response(status_code=204)

    @r.post("/api/setup/sessions/{workspace_id}/calibrate", tags=["setup"])
    def run_calibration(workspace_id: str, body: CalibrateIn) -> dict[str, Any]:
        """Calibrate on the session's images and regions: on the regions with a layer number
        when some have one (labels mode; the others are left out, with a note), else with
        layer numbers proposed by the optics fit (masks mode); no regions: no-label mode."""
        from flakefinder.calibration import LabelledRegion, calibrate
        from flakefinder.optics.materials import get_material

        ws = workspace(workspace_id)
        try:
            material = get_material(body.material).name
        except UnknownMaterialError as exc:
            raise HTTPException(400, str(exc)) from None
        unknown = sorted(set(body.layers) - set(ws.regions))
        if unknown:
            raise HTTPException(400, f"no region {unknown[0]} in this setup session")
        if any(n is not None and not 1 <= n <= 100 for n in body.layers.values()):
            raise HTTPException(400, "layer numbers must be whole numbers from 1 to 100")
        with ws.lock:
            if not ws.images:
                raise HTTPException(400, "upload at least one image first")
            ids = tuple(sorted(ws.regions))
            numbered = tuple(i for i in ids if body.layers.get(i) is not None)
            # some flakes numbered: calibrate on those (labels mode), leave the rest out
            skipped = tuple(i for i in ids if i not in numbered) if numbered else ()
            used = numbered or ids
            regions = [
                LabelledRegion(ws.regions[i].image_index, ws.regions[i].mask, body.layers.get(i))
                for i in used
            ]
            try:
                report = calibrate(
                    list(ws.images),
                    material=material,
                    oxide_nm=body.oxide_nm,
                    um_per_px=body.um_per_px,
                    regions=regions or None,
                    name=body.name,
                )
            except CalibrationError as exc:
                raise HTTPException(400, str(exc)) from None
            ws.report, ws.report_region_ids, ws.report_skipped = report, used, skipped
            return report_dict(ws)

    @r.get("/api/setup/sessions/{workspace_id}/profile.json", tags=["setup"])
    def download_profile(workspace_id: str) -> Response:
        """The last calibrated setup profile, as a file for ``--setup``."""
        ws = workspace(workspace_id)
        if ws.report is None:
            raise HTTPException(404, "nothing calibrated yet in this setup session")
        from flakefinder.artifacts import sha256_json

        profile = ws.report.profile
        data = profile.to_json()
        data["sha256"] = sha256_json(data)  # as SetupProfile.save writes it
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in profile.name) or "setup"
        return Response(
            json.dumps(data, indent=1, allow_nan=False),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{safe}.json"'},
        )

    return r
