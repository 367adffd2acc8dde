"""Detection routes on a memory budget (issue 14): large uploads are detected at the working
size and answered in their own pixels, a batch decodes its images a few at a time, budgets give
413/429, a pathological JPEG is a 400, and a client that hangs up stops its batch."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from flakefinder.domain import Detection, ImagingContext
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from image_helpers import SUBSTRATE_RGB, encode, many_scan_jpeg
from server_helpers import DarkSquareDetector

WORK = 100 * 100  # working pixels of these tests: a 400 x 400 upload is detected at 100 x 100


class _Seeing(DarkSquareDetector):
    """Also records the size and pixel size of every image it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int, float]] = []

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        self.seen.append((image.shape[1], image.shape[0], context.um_per_px))
        return super().detect(image, context)


def _upload(x0: int = 100, n: int = 400) -> bytes:
    image = np.full((n, n, 3), SUBSTRATE_RGB, np.uint8)
    image[100:200, x0 : x0 + 100] = 40  # a 100 x 100 px dark square
    return encode(image)


def _settings(**kw: Any) -> ServerSettings:
    return ServerSettings(detector="darksquare", um_per_px=0.5, max_work_pixels=WORK, **kw)


def test_a_large_upload_is_detected_small_and_answered_in_its_own_pixels() -> None:
    det = _Seeing()
    with TestClient(create_app(_settings(), detector=det)) as c:
        r = c.post("/api/detect", files={"image": ("big.png", _upload(), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        intake = c.app.state.intake  # type: ignore[attr-defined]
    assert det.seen == [(100, 100, 2.0)]  # a quarter of the size, four times the µm per pixel
    assert body["image"] == {"filename": "big.png", "width_px": 400, "height_px": 400}
    [flake] = body["flakes"]
    assert flake["bbox_px"] == [100.0, 100.0, 200.0, 200.0]
    assert flake["polygon_px"] == [[100.0, 100.0], [200.0, 100.0], [200.0, 200.0], [100.0, 200.0]]
    assert flake["area_px"] == 10_000.0 and flake["area_um2"] == 2_500.0
    # reserved before decoding (PIL's full-size buffer, the shrunk copies), then given back
    assert intake.memory.peak_bytes == intake.decode_bytes(intake.header(_upload(), "x"))
    assert intake.memory.in_use_bytes == 0


def test_a_batch_holds_a_few_images_at_a_time_not_all() -> None:
    det = _Seeing()
    n = 12
    with TestClient(create_app(_settings(max_batch=2), detector=det)) as c:
        files = [("images", (f"{i}.png", _upload(x0=8 * i), "image/png")) for i in range(n)]
        r = c.post("/api/detect/batch", files=files)
        assert r.status_code == 200, r.text
        app_state = c.app.state  # type: ignore[attr-defined]
    boxes = [res["flakes"][0]["bbox_px"][0] for res in r.json()["results"]]
    assert boxes == [8.0 * i for i in range(n)]  # every image, in order, in upload pixels
    intake = app_state.intake
    one = intake.decode_bytes(intake.header(_upload(), "x"))
    # decoded lazily: at most max_batch images reserved at once (decoding all first: 12 x one)
    assert one < intake.memory.peak_bytes <= 2 * one
    assert app_state.counters.images_decoded == n and len(det.seen) == n


def test_memory_budgets_answer_413_and_429() -> None:
    files = {"image": ("big.png", _upload(), "image/png")}
    tight = _settings(request_memory_mb=0.1)
    with TestClient(create_app(tight, detector=DarkSquareDetector())) as c:
        r = c.post("/api/detect", files=files)
        assert r.status_code == 413
        assert "big.png: needs 0.9 MiB of memory, over this server's budget of 0.1 MiB" in (
            r.json()["detail"]
        )
        batch = [("images", ("big.png", _upload(), "image/png"))] * 3
        r = c.post("/api/detect/batch", files=batch)
        assert r.status_code == 413 and "per request: send a smaller image" in r.json()["detail"]
    busy = _settings(memory_budget_mb=2.0, memory_wait_s=0.0)
    with TestClient(create_app(busy, detector=DarkSquareDetector())) as c:
        memory = c.app.state.intake.memory  # type: ignore[attr-defined]
        held = memory.try_reserve(memory.limit_bytes - 1000)  # other requests hold it all
        assert held is not None
        r = c.post("/api/detect", files=files)
        assert r.status_code == 429 and r.headers["retry-after"] == "5"
        assert "in use by other requests" in r.json()["detail"]
        batch = [("images", ("big.png", _upload(), "image/png"))] * 2
        r = c.post("/api/detect/batch", files=batch)
        assert r.status_code == 429 and r.headers["retry-after"] == "5"
        held.release()
        assert c.post("/api/detect", files=files).status_code == 200


def test_a_jpeg_of_thousands_of_scans_is_a_400() -> None:
    with TestClient(create_app(_settings(), detector=DarkSquareDetector())) as c:
        r = c.post("/api/detect", files={"image": ("s.jpg", many_scan_jpeg(512, 512, 2000))})
        assert r.status_code == 400
        assert "JPEG of 20" in r.json()["detail"] and "over the limit of 100" in r.json()["detail"]
        assert c.app.state.intake.memory.granted == 0  # type: ignore[attr-defined]


# -- a client that hangs up ----------------------------------------------------------------------


class _HangsUpDuringFirst(DarkSquareDetector):
    """Detects normally, but the client 'disconnects' while the first image is in the model."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.hang_up = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        self.calls += 1
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.hang_up.set)
        return super().detect(image, context)


def _asgi_call(app: Any, path: str, files: list[Any], gone: asyncio.Event) -> Any:
    """Send one multipart request straight to the ASGI app; after the body, ``receive`` says
    the client disconnected once ``gone`` is set. Returns a coroutine giving the status."""
    request = httpx.Request("POST", f"http://localhost{path}", files=files)
    body = request.read()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("localhost", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> int:
        await app(scope, receive, send)
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))

    return run()


def test_a_batch_stops_when_its_client_hangs_up() -> None:
    det = _HangsUpDuringFirst()
    app = create_app(_settings(max_batch=1), detector=det)
    files = [("images", (f"{i}.png", _upload(), "image/png")) for i in range(6)]
    with TestClient(app) as c:
        assert c.portal is not None

        async def scenario() -> int:
            det.loop = asyncio.get_running_loop()
            return int(await _asgi_call(app, "/api/detect/batch", files, det.hang_up))

        status = c.portal.call(scenario)
    assert status == 499  # "client closed request": nobody reads it
    assert det.calls == 1  # the other five images were never decoded nor detected
    assert app.state.counters.images_decoded == 1
    assert app.state.intake.memory.in_use_bytes == 0


def test_a_client_gone_before_its_batch_starts_costs_nothing() -> None:
    det = _Seeing()
    app = create_app(_settings(), detector=det)
    files = [("images", (f"{i}.png", _upload(), "image/png")) for i in range(4)]
    with TestClient(app) as c:
        assert c.portal is not None

        async def scenario() -> int:
            gone = asyncio.Event()
            gone.set()  # the client is gone as soon as its body has arrived
            return int(await _asgi_call(app, "/api/detect/batch", files, gone))

        assert c.portal.call(scenario) == 499
    assert det.seen == [] and app.state.counters.images_decoded == 0
    assert app.state.counters.images_abandoned == 4
    assert app.state.intake.memory.granted == 0


def test_a_single_image_of_a_client_gone_is_dropped() -> None:
    det = _Seeing()
    app = create_app(_settings(), detector=det)
    with TestClient(app) as c:
        assert c.portal is not None

        async def scenario() -> int:
            gone = asyncio.Event()
            gone.set()
            files = [("image", ("a.png", _upload(), "image/png"))]
            return int(await _asgi_call(app, "/api/detect", files, gone))

        assert c.portal.call(scenario) == 499
    assert det.seen == [] and app.state.counters.images_decoded == 0
