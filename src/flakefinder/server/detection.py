"""The detection routes' work: uploads to answers within the server's memory budget.

One image: read the upload, check its header (:class:`~flakefinder.intake.ImageIntake`), reserve
the memory decoding it takes, decode it to its working size, queue it at the fair
:class:`~flakefinder.server.batching.Batcher`, answer in the upload's pixels, give the memory
back. A batch does the same a few images at a time (:meth:`DetectionRunner.batch`), never
decoding all first. A client that disconnects stops its work: it is checked before every image
is decoded, and while an image waits for the model, where its queued job is cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from flakefinder.domain import BatchDetector, ImagingContext
from flakefinder.errors import FlakefinderError, ImageError
from flakefinder.membudget import MemoryBudgetError
from flakefinder.server.schemas import DetectResponse, FlakeOut, ImageInfo, Timing

if TYPE_CHECKING:
    from concurrent.futures import Future

    from flakefinder.image_header import ImageHeader
    from flakefinder.intake import ImageIntake, WorkImage
    from flakefinder.membudget import Reservation
    from flakefinder.server.batching import Batcher, BatchResult


class ClientGoneError(Exception):
    """The client closed the connection: its remaining work is dropped."""


@dataclass
class Counters:
    """What the server did (``GET /api/health`` reports them)."""

    requests_served: int = 0
    images_decoded: int = 0
    images_abandoned: int = 0  # not decoded, or not detected, because the client had gone


@dataclass
class _Prepared:
    """An upload read and its header checked, before any pixel is decoded."""

    name: str
    data: bytes
    header: ImageHeader


def budget_http_error(exc: MemoryBudgetError) -> HTTPException:
    """413, or 429 with ``Retry-After``, for a reservation the budget refused."""
    return HTTPException(exc.status_code, str(exc), headers=exc.http_headers())


def client_key(request: Request) -> str:
    """Whose queue a request joins in the batcher: the client's address."""
    return request.client.host if request.client else ""


@dataclass
class DetectionRunner:
    """Uploads to :class:`DetectResponse` answers for one server."""

    intake: ImageIntake
    upload_limit_bytes: int
    max_batch: int
    batcher_for: Callable[[ImagingContext], Batcher]  # HTTPException for an unknown profile
    counters: Counters

    async def one(
        self, request: Request, upload: UploadFile, context: ImagingContext
    ) -> DetectResponse:
        """Detect one uploaded image."""
        self.batcher_for(context)  # an unknown profile is a 404 before anything is decoded
        t0 = time.perf_counter()
        prepared = await self._prepare(upload)
        reservation = await self._reserve(prepared)
        return await self._detect_reserved(request, prepared, reservation, context, t0)

    async def batch(
        self, request: Request, uploads: list[UploadFile], context: ImagingContext
    ) -> list[DetectResponse]:
        """Detect the images of one request, a few at a time: at most the per-request memory
        budget reserved, and in flight at most ``max_batch`` images for a batching (GPU)
        detector or two for another (one decoding while one is detected); stops when the
        client goes away. The first image that fails fails the batch (as before)."""
        detector = self.batcher_for(context).detector
        in_flight = self.max_batch if isinstance(detector, BatchDetector) else 2
        memory = self.intake.memory
        held: list[Reservation] = []
        tasks: list[asyncio.Task[DetectResponse]] = []

        async def settle_one() -> None:
            running = [t for t in tasks if not t.done()]
            if running:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t.done():
                    t.result()  # raises the first failure
            held[:] = [r for r in held if r.n_bytes > 0]

        try:
            for upload in uploads:
                t0 = time.perf_counter()
                prepared = await self._prepare(upload)
                need = self.intake.decode_bytes(prepared.header)
                try:
                    memory.check(need, prepared.name)  # 413 before waiting for anything
                except MemoryBudgetError as exc:
                    raise budget_http_error(exc) from None
                while held and (
                    sum(r.n_bytes for r in held) + need > memory.request_limit_bytes
                    or sum(not t.done() for t in tasks) >= in_flight
                ):
                    await settle_one()
                if await request.is_disconnected():
                    raise ClientGoneError
                reservation = await self._reserve(prepared)
                held.append(reservation)
                job = self._detect_reserved(request, prepared, reservation, context, t0)
                tasks.append(asyncio.create_task(job))
            return list(await asyncio.gather(*tasks))
        except BaseException as exc:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(exc, ClientGoneError):
                self.counters.images_abandoned += len(uploads) - len(tasks)  # never started
            raise

    async def _prepare(self, upload: UploadFile) -> _Prepared:
        name = upload.filename or "upload"
        data = await upload.read()
        if len(data) > self.upload_limit_bytes:
            limit_mb = self.upload_limit_bytes / (1024 * 1024)
            raise HTTPException(413, f"{name}: {len(data)} bytes exceed {limit_mb:g} MB")
        try:
            header = await run_in_threadpool(self.intake.header, data, name)
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return _Prepared(name, data, header)

    async def _reserve(self, prepared: _Prepared) -> Reservation:
        try:
            return await self.intake.reserve(prepared.header, prepared.name)
        except MemoryBudgetError as exc:
            raise budget_http_error(exc) from None

    async def _detect_reserved(
        self,
        request: Request,
        prepared: _Prepared,
        reservation: Reservation,
        context: ImagingContext,
        t0: float,
    ) -> DetectResponse:
        """Decode, detect and answer one image whose memory is reserved; frees it after."""
        batcher = self.batcher_for(context)
        try:
            if await request.is_disconnected():
                self.counters.images_abandoned += 1
                raise ClientGoneError
            try:
                work: WorkImage = await run_in_threadpool(
                    self.intake.decode, prepared.data, prepared.header, prepared.name
                )
            except ImageError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from None
            prepared.data = b""  # the upload's bytes are not needed any more
            self.counters.images_decoded += 1
            reservation.shrink(work.pixels.nbytes)
            future = batcher.submit(work.pixels, work.context(context), client=client_key(request))
            try:
                result = await _until_done(request, future)
            except FlakefinderError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from None
        finally:
            reservation.release()
        self.counters.requests_served += 1
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
                queue_ms=result.queue_s * 1e3,
                model_ms=result.model_s * 1e3,
                total_ms=(time.perf_counter() - t0) * 1e3,
            ),
        )


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
