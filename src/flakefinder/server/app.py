"""``create_app(settings)``: the FastAPI inference server (and, with a database, the web UI)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flakefinder.domain import Detector, ImagingContext
from flakefinder.errors import FlakefinderError, ImageError, UnknownMaterialError
from flakefinder.server.batching import Batcher
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
from flakefinder.server.settings import ServerSettings

API_KEY_HEADER = "X-API-Key"
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
        docs_url=None,  # offline Swagger UI / ReDoc instead: server.site
        redoc_url=None,
    )
    from flakefinder.server.site import add_site_routes

    add_site_routes(app)
    limit_bytes = int(settings.max_upload_mb * 1024 * 1024)

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit_bytes:
            return JSONResponse(
                {
                    "detail": f"upload of {int(length)} bytes exceeds the limit of {settings.max_upload_mb:g} MB"
                },
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(FlakefinderError)
    async def flakefinder_error(request: Request, exc: FlakefinderError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER, "")
        if not secrets.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(status_code=401, detail=f"missing or wrong {API_KEY_HEADER} header")

    auth = [Depends(require_key)]

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
            um_per_px=um_per_px or settings.um_per_px,
            oxide_thickness_nm=oxide_nm or settings.oxide_thickness_nm,
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
            image = await run_in_threadpool(decode_image, data, what=upload.filename or "upload")
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
        413: {"model": ErrorBody},
    }

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        return Health(
            status="ok",
            detector="none" if app.state.batcher is None else app.state.batcher.detector.name,
            requests_served=app.state.requests_served,
        )

    @app.get("/api/model", response_model=ModelInfo, responses=errors, dependencies=auth)
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

    @app.post("/api/detect", response_model=DetectResponse, responses=errors, dependencies=auth)
    async def detect(
        image: UploadFile = File(..., description="PNG, JPEG or TIFF micrograph"),
        um_per_px: float | None = Query(None, gt=0, description="Pixel size on the sample"),
        oxide_nm: float | None = Query(None, gt=0, description="SiO2 thickness"),
        materials: str | None = Query(None, description="Comma-separated materials on the chip"),
    ) -> DetectResponse:
        return await run_one(image, context_for(um_per_px, oxide_nm, materials))

    @app.post(
        "/api/detect/batch", response_model=BatchResponse, responses=errors, dependencies=auth
    )
    async def detect_batch(
        images: list[UploadFile] = File(..., description="Several micrographs"),
        um_per_px: float | None = Query(None, gt=0),
        oxide_nm: float | None = Query(None, gt=0),
        materials: str | None = Query(None),
    ) -> BatchResponse:
        context = context_for(um_per_px, oxide_nm, materials)
        results = await asyncio.gather(*(run_one(f, context) for f in images))
        return BatchResponse(results=list(results))

    if settings.database_url:
        from flakefinder.web import mount_web

        mount_web(app, settings.database_url)
    return app
