"""``create_app(settings)``: the FastAPI inference server (and, with a database, the web UI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flakefinder import bounds
from flakefinder.artifacts import JsonLimits
from flakefinder.domain import Detector, ImagingContext
from flakefinder.errors import FlakefinderError, UnknownMaterialError
from flakefinder.membudget import openapi_responses
from flakefinder.server.batching import Batcher
from flakefinder.server.detection import ClientGoneError, Counters, DetectionRunner
from flakefinder.server.edges import install_edges
from flakefinder.server.jsonbody import REQUEST_JSON_DEPTH, StrictJsonMiddleware
from flakefinder.server.limits import BodyLimitMiddleware
from flakefinder.server.schemas import (
    BatchResponse,
    DetectResponse,
    ErrorBody,
    Health,
    ModelInfo,
    SetupInfo,
)
from flakefinder.server.security import API_KEY_HEADER
from flakefinder.server.settings import ServerSettings, image_intake

if TYPE_CHECKING:
    from flakefinder.calibration.profile import SetupProfile
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
    profile: SetupProfile | None = None


def _setup_profiles(settings: ServerSettings) -> dict[str, SetupProfile]:
    """The setup profiles of ``settings`` by profile id (for detectors given to create_app)."""
    from flakefinder.calibration.profile import SetupProfile

    profiles = (SetupProfile.load(path) for path in settings.setups)
    return {p.profile_id: p for p in profiles}


def _build_detectors(
    settings: ServerSettings,
) -> tuple[dict[str | None, Detector], dict[str, SetupProfile]]:
    """One detector per setup profile of ``settings`` (or one without a profile), and the
    profiles by id."""
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
        return {None: build(None)}, {}
    from flakefinder.detect.setup_io import load_setup

    built: dict[str | None, Detector] = {}
    profiles: dict[str, SetupProfile] = {}
    for path in settings.setups:
        loaded = load_setup(path)
        built[loaded.profile.profile_id] = build(loaded)
        profiles[loaded.profile.profile_id] = loaded.profile
    return built, profiles


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
        app.state.counters.requests_served = 0
        built: dict[str | None, Detector]
        profiles: dict[str, SetupProfile] = {}
        if detectors is not None:
            built = {key: det for key, det in detectors.items()}
            profiles = await run_in_threadpool(_setup_profiles, settings)
        elif detector is not None:
            built = {None: detector}
        elif settings.detector == "none":
            built = {}
        else:
            built, profiles = await run_in_threadpool(_build_detectors, settings)
        served: dict[str | None, _Served] = {}
        for key, det in built.items():
            batcher = Batcher(
                det, max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000
            )
            batcher.start()
            name = "" if key is None else key.rsplit("@", 1)[0]
            served[key] = _Served(batcher, key, name, None if key is None else profiles.get(key))
        app.state.served = served
        try:
            yield
        finally:
            for entry in served.values():
                entry.batcher.stop()
            web_db = getattr(app.state, "web_db", None)
            if web_db is not None:
                web_db.close()  # pooled connections close with the server (usable again later)

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
    # added last = outermost: Host and access are decided before any body byte is read
    json_limits = JsonLimits(max_bytes=limit_bytes, max_depth=REQUEST_JSON_DEPTH)
    app.add_middleware(StrictJsonMiddleware, limits=json_limits)
    app.add_middleware(BodyLimitMiddleware, limit_bytes=limit_bytes)
    install_edges(app, settings)
    intake = image_intake(settings)
    app.state.intake = intake
    app.state.counters = Counters()

    def batcher_for(context: ImagingContext) -> Batcher:
        return entry_for(context).batcher

    runner = DetectionRunner(
        intake=intake,
        upload_limit_bytes=limit_bytes,
        max_batch=settings.max_batch,
        batcher_for=batcher_for,
        counters=app.state.counters,
    )

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

    def defaults_for(profile_id: str | None) -> ImagingContext:
        """What a request that gives no pixel size, oxide or materials gets: the named
        profile's values, except those the server was started with (``settings.fixed``)."""
        um, oxide, materials = settings.um_per_px, settings.oxide_thickness_nm, settings.materials
        served: dict[str | None, _Served] = app.state.served
        entry = served.get(profile_id) if profile_id else None
        profile = None if entry is None else entry.profile
        if profile is not None:
            um = um if "um_per_px" in settings.fixed else profile.um_per_px
            oxide = oxide if "oxide_nm" in settings.fixed else profile.oxide_nm
            if "materials" not in settings.fixed and profile.material_names:
                materials = tuple(profile.material_names)
        return ImagingContext(um_per_px=um, oxide_thickness_nm=oxide, materials=materials)

    def context_for(request: Request) -> ImagingContext:
        from flakefinder.optics import get_material

        defaults = defaults_for(request.query_params.get("profile_id"))
        try:
            return ImagingContext.from_query(
                request.query_params,
                defaults=defaults,
                material_name=lambda m: get_material(m).name,
            )
        except (UnknownMaterialError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc).strip("\"'")) from None

    budget = openapi_responses()  # 413 too large, 429 busy with Retry-After
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        413: {"model": ErrorBody, **budget[413]},
        429: {"model": ErrorBody, **budget[429]},
        503: {"model": ErrorBody, "description": "No detector loaded"},
    }

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        first = default_entry()
        served: dict[str | None, _Served] = app.state.served
        counters: Counters = app.state.counters
        return Health(
            status="ok",
            detector="none" if first is None else first.batcher.detector.name,
            requests_served=counters.requests_served,
            images_decoded=counters.images_decoded,
            images_dropped=counters.images_abandoned
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
        return await runner.one(request, image, context_for(request))

    @app.post("/api/detect/batch", response_model=BatchResponse, responses=errors)
    async def detect_batch(
        request: Request,
        images: list[UploadFile] = File(..., description="Several micrographs"),
        um_per_px: float | None = UM_PER_PX_QUERY,
        oxide_nm: float | None = OXIDE_NM_QUERY,
        materials: str | None = Query(None),
        profile_id: str | None = Query(None),
    ) -> BatchResponse:
        return BatchResponse(results=await runner.batch(request, images, context_for(request)))

    if settings.database_url:
        from flakefinder.web import mount_web

        mount_web(
            app,
            settings.database_url,
            intake=intake,
            setup_session_bytes=int(settings.setup_session_mb * 2**20),
        )
    return app
