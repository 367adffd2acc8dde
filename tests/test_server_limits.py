"""Uploads are cut at the limit with 413 whatever the transfer encoding, without reading the
rest of the body; decoded images are bounded from their header (pixels and memory)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tifffile
from fastapi.testclient import TestClient
from PIL import Image

from flakefinder.errors import ImageError
from flakefinder.imaging import ImageLimits, decode_image
from flakefinder.server.app import create_app
from flakefinder.server.limits import BodyLimitMiddleware
from flakefinder.server.settings import ServerSettings
from server_helpers import DarkSquareDetector, running_server, square_image

MB = 1024 * 1024


def test_chunked_upload_over_the_limit_is_413_on_a_real_server() -> None:
    settings = ServerSettings(detector="darksquare", max_upload_mb=1.0)
    app = create_app(settings, detector=DarkSquareDetector())

    def chunks() -> Iterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(200):  # 200 x 256 KiB = 50 MiB, no Content-Length
            yield b"\0" * (256 * 1024)

    with running_server(app) as url:
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        r = httpx.post(f"{url}/api/detect", content=chunks(), headers=headers, timeout=30)
        assert r.status_code == 413 and "exceeds the limit of 1 MB" in r.json()["detail"]
        ok = httpx.get(f"{url}/api/health", timeout=10)  # still alive
        assert ok.status_code == 200


def test_the_middleware_stops_reading_at_the_limit() -> None:
    """Count how many body messages the server pulls: only up to the limit, never all."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}  # endless

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, rcv: Any, snd: Any) -> None:
        while (await rcv())["type"] == "http.request":  # reads until told the client left
            pass
        await snd({"type": "http.response.start", "status": 400, "headers": []})
        await snd({"type": "http.response.body", "body": b""})

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": []}
    asyncio.run(BodyLimitMiddleware(app, limit_bytes=10_000)(scope, receive, send))
    assert pulled == 11  # 11 x 1000 bytes passes 10 000: then it stops
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]


def test_content_length_over_the_limit_is_413_before_reading() -> None:
    settings = ServerSettings(detector="darksquare", max_upload_mb=0.01)
    with TestClient(create_app(settings, detector=DarkSquareDetector())) as c:
        big = io.BytesIO(b"\0" * 20_000)
        assert c.post("/api/detect", files={"image": ("a.png", big)}).status_code == 413


def _tiff(array: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def test_zlib_tiff_bomb_is_refused_from_its_header() -> None:
    bomb = _tiff(np.zeros((8192, 8192), np.uint8), compression="zlib")
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="exceeds the limit of 50,000,000 pixels"):
        decode_image(bomb, what="bomb.tif")


def test_every_decoder_has_the_same_pixel_and_memory_limits() -> None:
    small = ImageLimits(max_pixels=64 * 64, max_decoded_bytes=64 * 64 * 3)
    image = square_image(shape=(65, 64))
    encoded = {}
    for fmt in ("PNG", "JPEG", "BMP"):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=fmt)
        encoded[fmt] = buf.getvalue()
    encoded["TIFF"] = _tiff(image)
    encoded["PNG16"] = _png16(np.full((65, 64), 4000, np.uint16))
    for name, data in encoded.items():
        with pytest.raises(ImageError, match="64x65 px exceeds the limit of 4,096 pixels"):
            decode_image(data, what=name, limits=small)
    ok = decode_image(encoded["PNG"], limits=ImageLimits(max_pixels=64 * 65))
    assert ok.shape == (65, 64, 3)
    # memory: 16-bit grey at 2 bytes/px passes a limit that 3 bytes/px would not
    mem = ImageLimits(max_pixels=10**6, max_decoded_bytes=64 * 65 * 2)
    assert decode_image(encoded["PNG16"], limits=mem).shape == (65, 64, 3)
    with pytest.raises(ImageError, match="decoding would take"):
        decode_image(encoded["PNG"], limits=mem)
    # a TIFF stack of small pages whose total is too large
    stack = _tiff(np.zeros((40, 64, 64), np.uint8))
    with pytest.raises(ImageError, match="decoding would take"):
        decode_image(stack, limits=ImageLimits(max_decoded_bytes=20 * 64 * 64))


def _png16(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_errors_name_no_memory_address() -> None:
    for data in (b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"II*\0garbage"):
        with pytest.raises(ImageError) as info:
            decode_image(data, what="x")
        assert " at 0x" not in str(info.value) and "object" not in str(info.value)
