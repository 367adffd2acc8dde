"""``create_app(settings)``: the FastAPI inference server (and, with a database, the web UI)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flakefinder import bounds
from flakefinder.domain import Detector, ImagingContext
from flakefinder.errors import FlakefinderError, ImageError, UnknownMaterialError
from flakefinder.imaging import ImageLimits
from flakefinder.server.batching import Batcher
from flakefinder.server.limits import BodyLimitMiddleware
from flakefinder.server.schemas import (
    BatchResponse,
    DetectResponse,
    ErrorBody,
    FlakeOut,
    Health,
    ImageInfo,
    ModelInfo,
    Timing,
)
from flakefinder.server.security import (
    API_KEY_HEADER,
    AccessMiddleware,
    AccessPolicy,
    add_login_routes,
)
from flakefinder.server.settings import ServerSettings

__all__ = ["API_KEY_HEADER", "create_app"]

UM_PER_PX_QUERY = Query(
    None,
    ge=bounds.UM_PER_PX.lo,
    le=bounds.UM_PER_PX.hi,
    allow_inf_nan=False,
    description=f"Pixel size on the sample ({bounds.UM_PER_PX.describe()})",
)
OXIDE_NM_QUERY = Query(
    None,
    ge=bounds.OXIDE_NM.lo,
    le=bounds.OXIDE_NM.hi,
    allow_inf_nan=False,
    description=f"SiO2 thickness ({bounds.OXIDE_NM.describe()})",
)

NO_DETECTOR = "this server runs without a detector (started with --detector none)"


def _build_detector(settings: ServerSettings) -> Detector:
    from flakefinder.detect.registry import create_detector

    options: dict[str, object] = dict(settings.detector_options)
    if settings.detector == "maskrcnn":
        if settings.model_dir:
            options["model"] = settings.model_dir
        options.setdefault("device", settings.device)
    return create_detector(settings.detector, **options)


def create_app(settings: ServerSettings, *, detector: Detector | None = None) -> FastAPI:
    """Build the app. ``detector`` overrides the one named in ``settings`` (tests, embedding)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.requests_served = 0
        app.state.batcher = None
        det = detector
        if det is None and settings.detector != "none":
            det = await run_in_threadpool(_build_detector, settings)
        if det is not None:
            app.state.batcher = Batcher(
                det, max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000
            )
            app.state.batcher.start()
        try:
            yield
        finally:
            if app.state.batcher is not None:
                app.state.batcher.stop()

    app = FastAPI(
        title="flakefinder inference server",
        version="1",
        description="Detect exfoliated 2D flakes in optical micrographs. POST an image, get flakes.",
        lifespan=lifespan,
    )
    limit_bytes = int(settings.max_upload_mb * 1024 * 1024)
    policy = AccessPolicy(api_key=settings.api_key, public_read=settings.public_read)
    # added last = outermost: access is decided before any body byte is read
    app.add_middleware(BodyLimitMiddleware, limit_bytes=limit_bytes)
    app.add_middleware(AccessMiddleware, policy=policy)
    add_login_routes(app, policy)
    image_limits = ImageLimits(max_pixels=settings.max_image_pixels)

    @app.exception_handler(FlakefinderError)
    async def flakefinder_error(request: Request, exc: FlakefinderError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def context_for(
        um_per_px: float | None, oxide_nm: float | None, materials: str | None
    ) -> ImagingContext:
        mats = settings.materials
        if materials:
            from flakefinder.optics import get_material

            try:
                mats = tuple(
                    get_material(m.strip()).name for m in materials.split(",") if m.strip()
                )
            except UnknownMaterialError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from None
        return ImagingContext(
            um_per_px=settings.um_per_px if um_per_px is None else um_per_px,
            oxide_thickness_nm=settings.oxide_thickness_nm if oxide_nm is None else oxide_nm,
            materials=mats,
        )

    async def run_one(upload: UploadFile, context: ImagingContext) -> DetectResponse:
        from flakefinder.imaging import decode_image

        batcher: Batcher | None = app.state.batcher
        if batcher is None:
            raise HTTPException(503, NO_DETECTOR)
        t0 = time.perf_counter()
        data = await upload.read()
        if len(data) > limit_bytes:
            raise HTTPException(
                413, f"{upload.filename}: {len(data)} bytes exceed {settings.max_upload_mb:g} MB"
            )
        try:
            image = await run_in_threadpool(
                decode_image, data, what=upload.filename or "upload", limits=image_limits
            )
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        if min(image.shape[:2]) < 8:
            raise HTTPException(
                400,
                f"{upload.filename}: image of {image.shape[1]}x{image.shape[0]} px is too small",
            )
        try:
            result = await asyncio.wrap_future(batcher.submit(image, context))
        except FlakefinderError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        app.state.requests_served += 1
        total = time.perf_counter() - t0
        det = batcher.detector
        return DetectResponse(
            image=ImageInfo(
                filename=upload.filename, width_px=image.shape[1], height_px=image.shape[0]
            ),
            flakes=[FlakeOut.from_detection(d, context.um_per_px) for d in result.detections],
            detector=det.name,
            model_version=det.version,
            batch_size=result.batch_size,
            timing=Timing(
                queue_ms=result.queue_s * 1e3, model_ms=result.model_s * 1e3, total_ms=total * 1e3
            ),
        )

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        413: {"model": ErrorBody},
    }

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        return Health(
            status="ok",
            detector="none" if app.state.batcher is None else app.state.batcher.detector.name,
            requests_served=app.state.requests_served,
        )

    @app.get("/api/model", response_model=ModelInfo, responses=errors)
    async def model_info() -> ModelInfo:
        if app.state.batcher is None:
            raise HTTPException(503, NO_DETECTOR)
        det = app.state.batcher.detector
        return ModelInfo(
            detector=det.name,
            model_version=det.version,
            materials=list(settings.materials),
            oxide_thickness_nm=settings.oxide_thickness_nm,
            um_per_px=settings.um_per_px,
            max_batch=settings.max_batch,
            max_upload_mb=settings.max_upload_mb,
        )

    @app.post("/api/detect", response_model=DetectResponse, responses=errors)
    async def detect(
        image: UploadFile = File(..., description="PNG, JPEG or TIFF micrograph"),
        um_per_px: float | None = UM_PER_PX_QUERY,
        oxide_nm: float | None = OXIDE_NM_QUERY,
        materials: str | None = Query(None, description="Comma-separated materials on the chip"),
    ) -> DetectResponse:
        return await run_one(image, context_for(um_per_px, oxide_nm, materials))

    @app.post("/api/detect/batch", response_model=BatchResponse, responses=errors)
    async def detect_batch(
        images: list[UploadFile] = File(..., description="Several micrographs"),
        um_per_px: float | None = UM_PER_PX_QUERY,
        oxide_nm: float | None = OXIDE_NM_QUERY,
        materials: str | None = Query(None),
    ) -> BatchResponse:
        context = context_for(um_per_px, oxide_nm, materials)
        results = await asyncio.gather(*(run_one(f, context) for f in images))
        return BatchResponse(results=list(results))

    if settings.database_url:
        from flakefinder.web import mount_web

        mount_web(app, settings.database_url)
    return app
