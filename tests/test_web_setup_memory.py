"""Setup page memory (issue 14): regions are small crops, a session is capped in bytes, a large
upload is worked on at the working size while the page speaks in the upload's pixels, and
region growing holds no full-size float copies."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from flakefinder.calibration.regions import grow_region_crop
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from image_helpers import SUBSTRATE_RGB, encode
from setup_helpers import UM_PER_PX, centre, png, rendered


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    return TestClient(create_app(ServerSettings(detector="none", database_url=db, **settings)))


def _stored_bytes(obj: object) -> int:
    """Bytes of the arrays, strings and bytes an object holds directly."""
    total = 0
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, (str, bytes)):
            total += len(value)
    return total


def test_tiny_regions_on_a_large_image_take_bytes_not_megabytes(tmp_path: Path) -> None:
    image = np.full((2000, 2000, 3), SUBSTRATE_RGB, np.uint8)
    with _client(tmp_path) as c:
        sid = c.post("/api/setup/sessions").json()["session"]
        base = f"/api/setup/sessions/{sid}"
        r = c.post(f"{base}/images", files={"image": ("big.png", encode(image), "image/png")})
        assert r.status_code == 201, r.text
        for i in range(60):  # the probe: 60 outlines of a few pixels each
            x, y = 10 + 30 * i, 20
            poly = [[x, y], [x + 3, y], [x + 3, y + 3]]
            r = c.post(f"{base}/regions", json={"image_index": 0, "polygon_px": poly})
            assert r.status_code == 201, r.text
        ws = c.app.state.setup_workspaces.get(sid)  # type: ignore[attr-defined]
    assert len(ws.regions) == 60
    per_region = [_stored_bytes(region) for region in ws.regions.values()]
    assert max(per_region) < 100  # a full-size mask would be 4,000,000 bytes
    assert ws.nbytes - ws.images[0].pixels.nbytes < 60 * 1024


def test_a_session_is_capped_in_bytes(tmp_path: Path) -> None:
    image = np.full((300, 300, 3), SUBSTRATE_RGB, np.uint8)  # 270 kB decoded
    files = {"image": ("a.png", encode(image), "image/png")}
    with _client(tmp_path, setup_session_mb=0.5) as c:
        sid = c.post("/api/setup/sessions").json()["session"]
        base = f"/api/setup/sessions/{sid}"
        assert c.post(f"{base}/images", files=files).status_code == 201
        r = c.post(f"{base}/images", files=files)
        assert r.status_code == 400
        assert r.json()["detail"].startswith(
            "a.png needs 0.3 MiB; this setup session holds 0.3 of its 0.5 MiB"
        )


def test_a_large_upload_is_calibrated_at_the_working_size_in_upload_pixels(
    tmp_path: Path,
) -> None:
    images, truth = rendered()  # two 240 x 180 views with known flakes
    big = [np.repeat(np.repeat(im, 3, axis=0), 3, axis=1) for im in images]  # 720 x 540
    with _client(tmp_path, max_work_pixels=240 * 180) as c:
        sid = c.post("/api/setup/sessions").json()["session"]
        base = f"/api/setup/sessions/{sid}"
        for k, im in enumerate(big):
            r = c.post(f"{base}/images", files={"image": (f"v{k}.png", png(im), "image/png")})
            assert r.status_code == 201, r.text
            assert (r.json()["width_px"], r.json()["height_px"]) == (720, 540)
            assert (r.json()["work_width_px"], r.json()["work_height_px"]) == (240, 180)
        shown = c.get(f"{base}/images/0.png")
        assert shown.content[16:24] == (240).to_bytes(4, "big") + (180).to_bytes(4, "big")
        ids = []
        for k, mask, _ in truth:
            x, y = centre(mask)
            r = c.post(f"{base}/regions", json={"image_index": k, "x_px": 3 * x, "y_px": 3 * y})
            assert r.status_code == 201, r.text
            assert abs(r.json()["area_px"] - 9 * int(mask.sum())) < 0.05 * 9 * mask.sum()
            xs = [p[0] for p in r.json()["outline_px"]]
            cols = np.flatnonzero(mask.any(axis=0))  # the flake's columns in the small view
            assert abs(min(xs) - 3 * cols[0]) <= 3 and abs(max(xs) - (3 * cols[-1] + 2)) <= 3
            ids.append(r.json()["id"])
        outside = c.post(f"{base}/regions", json={"image_index": 0, "x_px": 720, "y_px": 3})
        assert outside.status_code == 400 and "(720, 3) lies outside the 720x540" in (
            outside.json()["detail"]
        )
        body = {"material": "graphene", "oxide_nm": 90, "um_per_px": UM_PER_PX / 3}
        rep = c.post(f"{base}/calibrate", json=body).json()
        memory = c.app.state.intake.memory  # type: ignore[attr-defined]
    assert [rep["proposed_layers"][str(i)] for i in ids] == [n for _, _, n in truth]
    assert memory.in_use_bytes == 0 and memory.granted > len(truth)  # every step was reserved


def test_region_growing_holds_no_full_size_float_copies() -> None:
    n = 1500
    image = np.full((n, n, 3), SUBSTRATE_RGB, np.uint8)
    image[600:700, 600:750] = (110, 90, 140)
    grow_region_crop(image, 650, 650)  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        crop = grow_region_crop(image, 650, 650)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert crop.offset_yx == (599, 599) and crop.area_px == 100 * 150 - 4  # corners rounded by the smoothing
    # one float32 channel (4 B/px), the 'close' mask, int32 labels, the substrate median's
    # uint8 copy: about 12 bytes a pixel; one float RGB copy alone would be 12
    assert peak < 13 * n * n


def test_a_busy_budget_is_a_429_with_retry_after_and_documented(tmp_path: Path) -> None:
    image = np.full((300, 300, 3), SUBSTRATE_RGB, np.uint8)
    files = {"image": ("a.png", encode(image), "image/png")}
    with _client(tmp_path, memory_budget_mb=2.0, memory_wait_s=0.0) as c:
        sid = c.post("/api/setup/sessions").json()["session"]
        memory = c.app.state.intake.memory  # type: ignore[attr-defined]
        held = memory.try_reserve(memory.limit_bytes - 1000)  # other requests hold it all
        assert held is not None
        r = c.post(f"/api/setup/sessions/{sid}/images", files=files)
        assert r.status_code == 429 and r.headers["retry-after"] == "5"
        assert "in use by other requests" in r.json()["detail"]
        held.release()
        assert c.post(f"/api/setup/sessions/{sid}/images", files=files).status_code == 201
        paths = c.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/api/setup/sessions/{workspace_id}/images", "post"),
        ("/api/setup/sessions/{workspace_id}/regions", "post"),
        ("/api/setup/sessions/{workspace_id}/calibrate", "post"),
        ("/api/detect", "post"),
        ("/api/detect/batch", "post"),
    ):
        responses = paths[path][method]["responses"]
        assert {"413", "429"} <= set(responses), path
        assert "Retry-After" in responses["429"]["headers"], path
