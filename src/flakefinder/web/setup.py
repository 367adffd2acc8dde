"""The Setup page: calibrate a microscope setup from a few uploaded images in the browser.

Upload images, click flakes (region growing) or outline them, type layer numbers or accept the
proposed ones, calibrate (:func:`flakefinder.calibration.calibrate`), look at the fitted colour
clusters over the optics prediction, download the profile.

Every route that changes state is a POST or DELETE under ``/api/setup``: the server's access
rules for state-changing requests apply to them like to every other such route.

Memory: an upload is kept at the server's working size (:mod:`flakefinder.intake`) while every
request and answer speaks in the uploaded image's pixels; decoding, region growing, PNG
encoding and calibration each reserve their memory from the server's budget first (413 when
it can never be had, 429 with ``Retry-After`` while other requests hold it), and a session is
capped in bytes (:mod:`.setup_workspace`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, File, HTTPException, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from flakefinder.errors import CalibrationError, ImageError, UnknownMaterialError
from flakefinder.membudget import (
    DEFAULT_HINT,
    MemoryBudgetError,
    Reservation,
    openapi_responses,
)
from flakefinder.web.setup_workspace import MarkedRegion, Workspace, Workspaces

if TYPE_CHECKING:
    from flakefinder.intake import ImageIntake, WorkImage

MAX_OUTLINE_POINTS = 5000
PLOT_MAX_LAYERS = 12
MIN_SIDE_PX = 16
# memory reserved per working pixel (numpy's peak under tracemalloc, rounded up): region
# growing holds one float32 channel, two boolean images, int32 labels and a uint8 copy for the
# substrate median (12 B/px measured); PNG encoding PIL's 4-byte copy and the compressed
# output; calibration the float contrast images of all images at once (24 B/px measured). With
# the server defaults a full session (64 MiB of images) calibrates within one request's 768 MiB.
GROW_BYTES_PER_PX = 16
PNG_BYTES_PER_PX = 8
CALIBRATE_BYTES_PER_PX = 32


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


def _region_dict(region: MarkedRegion, image: WorkImage) -> dict[str, Any]:
    """A region as the page sees it: in the uploaded image's pixels (not the working image's)."""
    from flakefinder.calibration.regions import mask_outline

    sx, sy = image.scale_xy
    oy, ox = region.offset_yx
    outline = [
        [round((x + ox + 0.5) * sx - 0.5), round((y + oy + 0.5) * sy - 0.5)]
        for x, y in mask_outline(region.mask())
    ]
    return {
        "id": region.id,
        "image_index": region.image_index,
        "area_px": round(region.area_px * sx * sy),
        "how": region.how,
        "outline_px": outline,
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


def _calibrate(ws: Workspace, body: CalibrateIn, material: str) -> dict[str, Any]:
    """Run :func:`flakefinder.calibration.calibrate` on the session (holding its lock)."""
    import math

    from flakefinder.calibration import LabelledRegion, calibrate

    with ws.lock:
        unknown = sorted(set(body.layers) - set(ws.regions))
        if unknown:
            raise HTTPException(400, f"no region {unknown[0]} in this setup session")
        if not ws.images:
            raise HTTPException(400, "upload at least one image first")
        ids = tuple(sorted(ws.regions))
        numbered = tuple(i for i in ids if body.layers.get(i) is not None)
        # some flakes numbered: calibrate on those (labels mode), leave the rest out
        skipped = tuple(i for i in ids if i not in numbered) if numbered else ()
        used = numbered or ids
        regions = [
            LabelledRegion(
                ws.regions[i].image_index,
                ws.regions[i].mask(),
                body.layers.get(i),
                ws.regions[i].offset_yx,
            )
            for i in used
        ]
        sx, sy = ws.images[0].scale_xy  # one size for all images of a session
        try:
            report = calibrate(
                [im.pixels for im in ws.images],
                material=material,
                oxide_nm=body.oxide_nm,
                um_per_px=body.um_per_px * math.sqrt(sx * sy),
                regions=regions or None,
                name=body.name,
            )
        except CalibrationError as exc:
            raise HTTPException(400, str(exc)) from None
        ws.report, ws.report_region_ids, ws.report_skipped = report, used, skipped
        return report_dict(ws)


def _http(exc: MemoryBudgetError) -> HTTPException:
    """413, or 429 with ``Retry-After``, for a reservation the budget refused."""
    return HTTPException(exc.status_code, str(exc), headers=exc.http_headers())


def create_setup_router(workspaces: Workspaces, intake: ImageIntake) -> APIRouter:
    """The Setup page and its JSON API; images are decoded to their working size by
    ``intake``, and every decode or full-image computation is reserved from its budget."""
    from starlette.concurrency import run_in_threadpool

    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    r = APIRouter()
    budget = openapi_responses()  # the routes that reserve memory: 413 too large, 429 busy

    def workspace(workspace_id: str) -> Workspace:
        try:
            return workspaces.get(workspace_id)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    def image_of(ws: Workspace, index: int) -> WorkImage:
        try:
            return ws.image(index)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    async def reserve(n_bytes: int, what: str, hint: str = DEFAULT_HINT) -> Reservation:
        try:
            return await intake.memory.reserve(n_bytes, what, hint)
        except MemoryBudgetError as exc:
            raise _http(exc) from None

    @r.get("/setup", response_class=HTMLResponse, include_in_schema=False)
    def setup_page(request: Request) -> HTMLResponse:
        from flakefinder.optics.materials import material_names

        return templates.TemplateResponse(request, "setup.html", {"materials": material_names()})

    @r.post("/api/setup/sessions", status_code=201, tags=["setup"])
    def new_session() -> dict[str, Any]:
        """Start a setup session (images and regions are kept in server memory)."""
        return {"session": workspaces.create().id}

    @r.post(
        "/api/setup/sessions/{workspace_id}/images",
        status_code=201,
        tags=["setup"],
        responses=budget,
    )
    async def upload_image(
        workspace_id: str, image: UploadFile = File(..., description="PNG, JPEG or TIFF")
    ) -> dict[str, Any]:
        """Add one micrograph to the session; all images of a session have one size. A large
        one is kept at the server's working size (``work_width_px`` x ``work_height_px``);
        coordinates in every request and answer stay in the uploaded image's pixels."""
        ws = workspace(workspace_id)
        name = (image.filename or "upload")[:200]
        data = await image.read()
        try:
            header = await run_in_threadpool(intake.header, data, name)
            if min(header.width_px, header.height_px) < MIN_SIDE_PX:
                raise ImageError(f"{name}: {header.width_px}x{header.height_px} px is too small")
            with await reserve(intake.decode_bytes(header), name):
                work = await run_in_threadpool(intake.decode, data, header, name)
        except ImageError as exc:
            raise HTTPException(400, str(exc)) from None
        del data
        with ws.lock:
            try:
                index = ws.add_image(work, name)
            except CalibrationError as exc:
                raise HTTPException(400, str(exc)) from None
        return {
            "index": index,
            "name": name,
            "width_px": work.width_px,
            "height_px": work.height_px,
            "work_width_px": work.pixels.shape[1],
            "work_height_px": work.pixels.shape[0],
        }

    @r.get(
        "/api/setup/sessions/{workspace_id}/images/{index}.png", tags=["setup"], responses=budget
    )
    async def image_png(workspace_id: str, index: int) -> Response:
        """The image as PNG at its working size (what the page draws on)."""
        from PIL import Image

        work = image_of(workspace(workspace_id), index)

        def encode() -> bytes:
            buf = io.BytesIO()
            Image.fromarray(work.pixels).save(buf, format="PNG", compress_level=1)
            return buf.getvalue()

        with await reserve(work.pixels.shape[0] * work.pixels.shape[1] * PNG_BYTES_PER_PX, "PNG"):
            png = await run_in_threadpool(encode)
        return Response(png, media_type="image/png")

    @r.post(
        "/api/setup/sessions/{workspace_id}/regions",
        status_code=201,
        tags=["setup"],
        responses=budget,
    )
    async def add_region(workspace_id: str, body: RegionIn) -> dict[str, Any]:
        """Mark a flake: grow a region from a clicked pixel, or fill a drawn outline (both in
        the uploaded image's pixels)."""
        from flakefinder.calibration.regions import grow_region_crop, polygon_crop

        ws = workspace(workspace_id)
        work = image_of(ws, body.image_index)
        sx, sy = work.scale_xy
        shape = work.pixels.shape[:2]
        if body.polygon_px is not None:
            pts = [((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5) for x, y in body.polygon_px]
            try:
                crop, how = polygon_crop(shape, pts), "outline"
            except CalibrationError as exc:
                raise HTTPException(400, str(exc)) from None
        elif body.x_px is not None and body.y_px is not None:
            if not (body.x_px < work.width_px and body.y_px < work.height_px):
                raise HTTPException(
                    400,
                    f"pixel ({body.x_px}, {body.y_px}) lies outside the"
                    f" {work.width_px}x{work.height_px} image",
                )
            x, y = work.point_to_work(body.x_px, body.y_px)
            with await reserve(shape[0] * shape[1] * GROW_BYTES_PER_PX, "region growing"):
                try:
                    crop = await run_in_threadpool(
                        grow_region_crop, work.pixels, x, y, tolerance=body.tolerance
                    )
                except CalibrationError as exc:
                    message = str(exc).replace(f"({x}, {y})", f"({body.x_px}, {body.y_px})")
                    raise HTTPException(400, message) from None
            how = "click"
        else:
            raise HTTPException(400, "give a clicked pixel (x_px, y_px) or an outline")
        with ws.lock:
            try:
                region = ws.add_region(body.image_index, crop, how)
            except CalibrationError as exc:
                raise HTTPException(400, str(exc)) from None
        return _region_dict(region, work)

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

    @r.post("/api/setup/sessions/{workspace_id}/calibrate", tags=["setup"], responses=budget)
    async def run_calibration(workspace_id: str, body: CalibrateIn) -> dict[str, Any]:
        """Calibrate on the session's images and regions: on the regions with a layer number
        when some have one (labels mode; the others are left out, with a note), else with
        layer numbers proposed by the optics fit (masks mode); no regions: no-label mode."""
        from flakefinder.optics.materials import get_material

        ws = workspace(workspace_id)
        try:
            material = get_material(body.material).name
        except UnknownMaterialError as exc:
            raise HTTPException(400, str(exc)) from None
        if any(n is not None and not 1 <= n <= 100 for n in body.layers.values()):
            raise HTTPException(400, "layer numbers must be whole numbers from 1 to 100")
        pixels = sum(im.pixels.shape[0] * im.pixels.shape[1] for im in ws.images)
        hint = "calibrate from fewer or smaller images (or with flakefinder calibrate)"
        with await reserve(pixels * CALIBRATE_BYTES_PER_PX, "calibration", hint):
            return await run_in_threadpool(_calibrate, ws, body, material)

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
