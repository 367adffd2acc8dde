"""``create_app(settings)``: the FastAPI inference server (and, with a database, the web UI)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flakefinder import bounds
from flakefinder.domain import BatchDetector, Detector, ImagingContext
from flakefinder.errors import FlakefinderError, ImageError, UnknownMaterialError
from flakefinder.image_header import ImageHeader
from flakefinder.intake import WorkImage
from flakefinder.membudget import MemoryBudgetError, Reservation
from flakefinder.server.batching import Batcher, BatchResult
from flakefinder.server.limits import BodyLimitMiddleware
from flakefinder.server.schemas import (
    BatchResponse,
    DetectResponse,
    ErrorBody,
    FlakeOut,
    Health,
    ImageInfo,
    ModelInfo,
    SetupInfo,
    Timing,
)
from flakefinder.server.security import (
    API_KEY_HEADER,
    AccessMiddleware,
    AccessPolicy,
    add_login_routes,
)
from flakefinder.server.settings import ServerSettings, image_intake

if TYPE_CHECKING:
    from flakefinder.detect.setup_io import LoadedSetup

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


@dataclass(frozen=True)
class _Served:
    """A detector the server runs, with its batcher and (when it has one) its setup profile."""

    batcher: Batcher
    profile_id: str | None
    profile_name: str


def _build_detectors(settings: ServerSettings) -> dict[str | None, Detector]:
    """One detector per setup profile of ``settings`` (or one without a profile)."""
    from flakefinder.detect.registry import create_detector

    def build(setup: LoadedSetup | None) -> Detector:
        return create_detector(
            settings.detector,
            model=settings.model_dir,
            setup=setup,
            options=settings.detector_options,
            device=settings.device,
        )

    if not settings.setups:
        return {None: build(None)}
    from flakefinder.detect.setup_io import load_setup

    built: dict[str | None, Detector] = {}
    for path in settings.setups:
        loaded = load_setup(path)
        built[loaded.profile.profile_id] = build(loaded)
    return built


def create_app(
    settings: ServerSettings,
    *,
    detector: Detector | None = None,
    detectors: Mapping[str, Detector] | None = None,
) -> FastAPI:
    """Build the app.

    ``detector`` overrides the one named in ``settings``; ``detectors`` (profile id ->
    detector, the first one the default) overrides its setups (tests, embedding).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from flakefinder.server.allocator import return_large_buffers_to_os

        return_large_buffers_to_os()  # decoded images must not stay in malloc's arenas
        app.state.requests_served = 0
        built: dict[str | None, Detector]
        if detectors is not None:
            built = {key: det for key, det in detectors.items()}
        elif detector is not None:
            built = {None: detector}
        elif settings.detector == "none":
            built = {}
        else:
            built = await run_in_threadpool(_build_detectors, settings)
        served: dict[str | None, _Served] = {}
        for key, det in built.items():
            batcher = Batcher(
                det, max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000
            )
            batcher.start()
            name = "" if key is None else key.rsplit("@", 1)[0]
            served[key] = _Served(batcher, key, name)
        app.state.served = served
        try:
            yield
        finally:
            for entry in served.values():
                entry.batcher.stop()

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
    policy = AccessPolicy(api_key=settings.api_key, public_read=settings.public_read)
    # added last = outermost: access is decided before any body byte is read
    app.add_middleware(BodyLimitMiddleware, limit_bytes=limit_bytes)
    app.add_middleware(AccessMiddleware, policy=policy)
    add_login_routes(app, policy)
    intake = image_intake(settings)
    app.state.intake = intake
    app.state.images_decoded = 0
    app.state.images_abandoned = 0

    @app.exception_handler(FlakefinderError)
    async def flakefinder_error(request: Request, exc: FlakefinderError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ClientGoneError)
    async def client_gone(request: Request, exc: ClientGoneError) -> JSONResponse:
        # nobody reads this answer: the work for it was dropped (nginx's "client closed")
        return JSONResponse({"detail": "the client closed the connection"}, status_code=499)

    def default_entry() -> _Served | None:
        served: dict[str | None, _Served] = app.state.served
        return next(iter(served.values()), None)

    def entry_for(context: ImagingContext) -> _Served:
        served: dict[str | None, _Served] = app.state.served
        if not served:
            raise HTTPException(503, NO_DETECTOR)
        if context.profile_id is None:
            first = default_entry()
            assert first is not None
            return first
        if context.profile_id in served:
            return served[context.profile_id]
        known = [k for k in served if k is not None]
        raise HTTPException(
            404,
            f"unknown setup profile {context.profile_id!r}; this server holds "
            + (", ".join(known) if known else "no setup profiles (started without --setup)"),
        )

    def context_for(request: Request) -> ImagingContext:
        from flakefinder.optics import get_material

        defaults = ImagingContext(
            um_per_px=settings.um_per_px,
            oxide_thickness_nm=settings.oxide_thickness_nm,
            materials=settings.materials,
        )
        try:
            return ImagingContext.from_query(
                request.query_params,
                defaults=defaults,
                material_name=lambda m: get_material(m).name,
            )
        except (UnknownMaterialError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc).strip("\"'")) from None

    async def prepare(upload: UploadFile) -> _Prepared:
        name = upload.filename or "upload"
        data = await upload.read()
        if len(data) > limit_bytes:
            raise HTTPException(
                413, f"{name}: {len(data)} bytes exceed {settings.max_upload_mb:g} MB"
            )
        try:
            header = await run_in_threadpool(intake.header, data, name)
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return _Prepared(name, data, header)

    async def reserve(prepared: _Prepared) -> Reservation:
        try:
            return await intake.reserve(prepared.header, prepared.name)
        except MemoryBudgetError as exc:
            raise _budget_http_error(exc) from None

    async def detect_reserved(
        request: Request,
        prepared: _Prepared,
        reservation: Reservation,
        context: ImagingContext,
        t0: float,
    ) -> DetectResponse:
        """Decode, detect and answer one image whose memory is reserved; frees it after."""
        batcher = entry_for(context).batcher
        try:
            if await request.is_disconnected():
                app.state.images_abandoned += 1
                raise ClientGoneError
            try:
                work: WorkImage = await run_in_threadpool(
                    intake.decode, prepared.data, prepared.header, prepared.name
                )
            except ImageError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from None
            prepared.data = b""  # the upload's bytes are not needed any more
            app.state.images_decoded += 1
            reservation.shrink(work.pixels.nbytes)
            future = batcher.submit(
                work.pixels, work.context(context), client=_client_key(request)
            )
            try:
                result = await _until_done(request, future)
            except FlakefinderError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from None
        finally:
            reservation.release()
        app.state.requests_served += 1
        total = time.perf_counter() - t0
        det = batcher.detector
        return DetectResponse(
            image=ImageInfo(
                filename=prepared.name, width_px=work.width_px, height_px=work.height_px
            ),
            flakes=[
                FlakeOut.from_detection(d, context.um_per_px)
                for d in work.to_original(result.detections)
            ],
            detector=det.name,
            model_version=det.version,
            batch_size=result.batch_size,
            timing=Timing(
                queue_ms=result.queue_s * 1e3, model_ms=result.model_s * 1e3, total_ms=total * 1e3
            ),
        )

    async def run_one(
        request: Request, upload: UploadFile, context: ImagingContext
    ) -> DetectResponse:
        entry_for(context)  # an unknown profile is a 404 before anything is decoded
        t0 = time.perf_counter()
        prepared = await prepare(upload)
        reservation = await reserve(prepared)
        return await detect_reserved(request, prepared, reservation, context, t0)

    async def run_batch(
        request: Request, uploads: list[UploadFile], context: ImagingContext
    ) -> list[DetectResponse]:
        """The images of one request, a few at a time: at most the per-request memory budget
        reserved, and in flight at most ``max_batch`` images for a batching (GPU) detector or
        two for another (one decoding while one is detected); stops when the client goes."""
        detector = entry_for(context).batcher.detector
        in_flight = settings.max_batch if isinstance(detector, BatchDetector) else 2
        held: list[Reservation] = []
        tasks: list[asyncio.Task[DetectResponse]] = []

        async def settle_one() -> None:
            running = [t for t in tasks if not t.done()]
            if running:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t.done():
                    t.result()  # the first failure fails the batch, as one bad image does
            held[:] = [r for r in held if r.n_bytes > 0]

        try:
            for upload in uploads:
                t0 = time.perf_counter()
                prepared = await prepare(upload)
                need = intake.decode_bytes(prepared.header)
                try:
                    intake.memory.check(need, prepared.name)  # 413 before waiting for anything
                except MemoryBudgetError as exc:
                    raise _budget_http_error(exc) from None
                while held and (
                    sum(r.n_bytes for r in held) + need > intake.memory.request_limit_bytes
                    or sum(not t.done() for t in tasks) >= in_flight
                ):
                    await settle_one()
                if await request.is_disconnected():
                    raise ClientGoneError
                reservation = await reserve(prepared)
                held.append(reservation)
                tasks.append(
                    asyncio.create_task(
                        detect_reserved(request, prepared, reservation, context, t0)
                    )
                )
            return list(await asyncio.gather(*tasks))
        except BaseException as exc:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(exc, ClientGoneError):
                app.state.images_abandoned += len(uploads) - len(tasks)  # never started
            raise

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        413: {"model": ErrorBody},
        503: {"model": ErrorBody},
    }

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        first = default_entry()
        served: dict[str | None, _Served] = app.state.served
        return Health(
            status="ok",
            detector="none" if first is None else first.batcher.detector.name,
            requests_served=app.state.requests_served,
            images_decoded=app.state.images_decoded,
            images_dropped=app.state.images_abandoned
            + sum(e.batcher.images_dropped for e in served.values()),
            image_memory_mb=intake.memory.in_use_bytes / 2**20,
            image_memory_peak_mb=intake.memory.peak_bytes / 2**20,
        )

    def setup_infos() -> list[SetupInfo]:
        served: dict[str | None, _Served] = app.state.served
        return [
            SetupInfo(
                profile_id=e.profile_id,
                name=e.profile_name,
                detector=e.batcher.detector.name,
                model_version=e.batcher.detector.version,
                default=i == 0,
            )
            for i, e in enumerate(served.values())
            if e.profile_id is not None
        ]

    @app.get("/api/model", response_model=ModelInfo, responses=errors)
    async def model_info() -> ModelInfo:
        first = default_entry()
        if first is None:
            raise HTTPException(503, NO_DETECTOR)
        det = first.batcher.detector
        return ModelInfo(
            detector=det.name,
            model_version=det.version,
            materials=list(settings.materials),
            oxide_thickness_nm=settings.oxide_thickness_nm,
            um_per_px=settings.um_per_px,
            max_batch=settings.max_batch,
            max_upload_mb=settings.max_upload_mb,
            setups=setup_infos(),
        )

    @app.get("/api/setups", response_model=list[SetupInfo])
    async def setups() -> list[SetupInfo]:
        """The setup profiles this server holds (empty when started without --setup)."""
        return setup_infos()

    @app.post("/api/detect", response_model=DetectResponse, responses=errors)
    async def detect(
        request: Request,
        image: UploadFile = File(..., description="PNG, JPEG or TIFF micrograph"),
        um_per_px: float | None = UM_PER_PX_QUERY,
        oxide_nm: float | None = OXIDE_NM_QUERY,
        materials: str | None = Query(None, description="Comma-separated materials on the chip"),
        profile_id: str | None = Query(None, description="Setup profile (GET /api/setups)"),
    ) -> DetectResponse:
        # The declared parameters document the wire format; ImagingContext.from_query reads it.
        return await run_one(request, image, context_for(request))

    @app.post("/api/detect/batch", response_model=BatchResponse, responses=errors)
    async def detect_batch(
        request: Request,
        images: list[UploadFile] = File(..., description="Several micrographs"),
        um_per_px: float | None = UM_PER_PX_QUERY,
        oxide_nm: float | None = OXIDE_NM_QUERY,
        materials: str | None = Query(None),
        profile_id: str | None = Query(None),
    ) -> BatchResponse:
        return BatchResponse(results=await run_batch(request, images, context_for(request)))

    if settings.database_url:
        from flakefinder.web import mount_web

        mount_web(
            app,
            settings.database_url,
            intake=intake,
            setup_session_bytes=int(settings.setup_session_mb * 2**20),
        )
    return app


@dataclass
class _Prepared:
    """An upload read and its header checked, before any pixel is decoded."""

    name: str
    data: bytes
    header: ImageHeader


class ClientGoneError(Exception):
    """The client closed the connection: its remaining work is dropped."""


def _client_key(request: Request) -> str:
    """Whose queue a request joins in the batcher: the client's address."""
    return request.client.host if request.client else ""


def _budget_http_error(exc: MemoryBudgetError) -> HTTPException:
    headers = {"Retry-After": "5"} if exc.status_code == 503 else None
    return HTTPException(exc.status_code, str(exc), headers=headers)


async def _until_done(request: Request, future: Future[BatchResult]) -> BatchResult:
    """The batcher's result, unless the client disconnects first (then the job is cancelled:
    a job the worker has not taken yet never reaches the model)."""
    result = asyncio.wrap_future(future)
    gone = asyncio.ensure_future(_disconnected(request))
    either: set[asyncio.Future[Any]] = {result, gone}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
        result.cancel()
        raise ClientGoneError
    return result.result()


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (the request body is read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
