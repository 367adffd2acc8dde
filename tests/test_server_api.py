"""Inference server: typed JSON, batching, auth, limits, and clear 4xx for bad input."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from flakefinder.domain import ImagingContext
from flakefinder.server.app import create_app
from flakefinder.server.client import InferenceClient, RemoteDetector, ServerError, encode_png
from flakefinder.server.settings import ServerSettings
from server_helpers import DarkSquareDetector, running_server, square_image

SETTINGS = ServerSettings(detector="darksquare", materials=("graphene",), um_per_px=0.5)


@pytest.fixture
def client() -> TestClient:
    with TestClient(create_app(SETTINGS, detector=DarkSquareDetector())) as c:
        yield c


def _png(image: np.ndarray) -> bytes:
    return encode_png(image)


def test_detect_returns_typed_flakes(client: TestClient) -> None:
    r = client.post("/api/detect", files={"image": ("a.png", _png(square_image()), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"filename": "a.png", "width_px": 80, "height_px": 64}
    [flake] = body["flakes"]
    assert flake["bbox_px"] == [20.0, 10.0, 36.0, 26.0]
    assert flake["area_px"] == 256.0
    assert flake["area_um2"] == 64.0  # 256 px * 0.5^2
    assert (
        flake["material"] == "graphene"
        and flake["layer_class"] == "few"
        and flake["layer_count"] == 3
    )
    assert body["detector"] == "darksquare" and body["batch_size"] >= 1


def test_tiff_grey_and_16bit_uploads(client: TestClient) -> None:
    import tifffile

    grey16 = (square_image().mean(axis=2).astype(np.uint16) * 257).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, grey16)
    r = client.post("/api/detect", files={"image": ("a.tif", buf.getvalue(), "image/tiff")})
    assert r.status_code == 200, r.text
    assert r.json()["flakes"][0]["bbox_px"] == [20.0, 10.0, 36.0, 26.0]
    jpg = io.BytesIO()
    Image.fromarray(square_image()).save(jpg, format="JPEG", quality=95)
    r = client.post("/api/detect", files={"image": ("a.jpg", jpg.getvalue(), "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["flakes"]) == 1


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [(b"not an image at all", "cannot decode"), (b"", "empty"), (b"tiny", "too small")],
)
def test_bad_images_are_400_with_message(client: TestClient, payload: bytes, fragment: str) -> None:
    if payload == b"tiny":
        buf = io.BytesIO()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
        payload = buf.getvalue()
    r = client.post("/api/detect", files={"image": ("bad.png", payload, "image/png")})
    assert r.status_code == 400
    assert fragment in r.json()["detail"]


def test_unknown_material_is_400(client: TestClient) -> None:
    r = client.post(
        "/api/detect",
        params={"materials": "unobtainium"},
        files={"image": ("a.png", _png(square_image()), "image/png")},
    )
    assert r.status_code == 400
    assert "unobtainium" in r.json()["detail"]


def test_missing_file_is_422(client: TestClient) -> None:
    assert client.post("/api/detect").status_code == 422


def test_upload_limit_is_413() -> None:
    settings = ServerSettings(detector="darksquare", max_upload_mb=0.001)
    with TestClient(create_app(settings, detector=DarkSquareDetector())) as c:
        big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        r = c.post("/api/detect", files={"image": ("a.png", _png(big), "image/png")})
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_api_key() -> None:
    settings = ServerSettings(detector="darksquare", api_key="s3cret")
    with TestClient(create_app(settings, detector=DarkSquareDetector())) as c:
        files = {"image": ("a.png", _png(square_image()), "image/png")}
        assert c.post("/api/detect", files=files).status_code == 401
        assert c.post("/api/detect", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
        assert (
            c.post("/api/detect", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
        )
        assert c.get("/api/health").status_code == 200  # health stays open for load balancers


def test_batch_endpoint_and_openapi(client: TestClient) -> None:
    files = [("images", (f"{i}.png", _png(square_image(x0=5 * i)), "image/png")) for i in range(3)]
    r = client.post("/api/detect/batch", files=files)
    assert r.status_code == 200
    boxes = [res["flakes"][0]["bbox_px"][0] for res in r.json()["results"]]
    assert boxes == [0.0, 5.0, 10.0]
    schema = client.get("/openapi.json").json()
    assert {"/api/detect", "/api/detect/batch", "/api/health", "/api/model"} <= set(schema["paths"])


def test_real_uvicorn_client_and_batching() -> None:
    detector = DarkSquareDetector()
    settings = ServerSettings(
        detector="darksquare", materials=("hBN",), max_batch=16, batch_window_ms=250
    )
    with running_server(create_app(settings, detector=detector)) as url:
        with InferenceClient(url) as cl:
            assert cl.health().status == "ok"
            assert cl.model_info().detector == "darksquare"
        with RemoteDetector(url) as remote:
            ctx = ImagingContext(materials=("hBN",))
            [d] = remote.detect(square_image(), ctx)
            assert d.bbox_px == (20.0, 10.0, 36.0, 26.0) and d.material == "hBN"
            with ThreadPoolExecutor(8) as pool:
                results = list(
                    pool.map(lambda i: remote.detect(square_image(x0=i), ctx), range(8))
                )
            assert [r[0].bbox_px[0] for r in results] == [float(i) for i in range(8)]
            assert max(detector.batch_sizes) > 1  # concurrent requests shared a model call
            with pytest.raises(ServerError, match="400"):
                remote.client.detect(square_image(), ImagingContext(materials=("nope",)))


def test_unreachable_server_message() -> None:
    with pytest.raises(ServerError, match="cannot reach inference server"):
        with InferenceClient("http://127.0.0.1:9", timeout_s=2) as cl:
            cl.health()


# -- issue 7: one wire format, several setup profiles per server ---------------------------------


def test_imaging_context_round_trips_through_the_query() -> None:
    ctx = ImagingContext(um_per_px=0.123, oxide_thickness_nm=285.0, materials=("hBN", "graphene"),
                         profile_id="scope@0123456789ab")  # fmt: skip
    assert ImagingContext.from_query(ctx.to_query()) == ctx
    plain = ImagingContext(materials=("WTe2",))
    assert "profile_id" not in plain.to_query()
    assert ImagingContext.from_query(plain.to_query()) == plain
    defaults = ImagingContext(um_per_px=0.5, materials=("MoS2",))
    assert ImagingContext.from_query({}, defaults=defaults) == defaults
    for bad in ({"um_per_px": "nan"}, {"oxide_nm": "-1"}, {"um_per_px": "abc"}):
        with pytest.raises(ValueError, match="must be"):
            ImagingContext.from_query(bad)
    upper = ImagingContext.from_query({"materials": "hbn, HBN"}, material_name=str.upper)
    assert upper.materials == ("HBN",)


class _NamedSquares(DarkSquareDetector):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.seen: list[str | None] = []
        self.contexts: list[ImagingContext] = []

    def detect(self, image: np.ndarray, context: ImagingContext) -> list:
        self.seen.append(context.profile_id)
        self.contexts.append(context)
        return super().detect(image, context)


def test_one_server_holds_several_setups_chosen_by_profile_id() -> None:
    a, b = _NamedSquares("det-a"), _NamedSquares("det-b")
    app = create_app(SETTINGS, detectors={"scopeA@111": a, "scopeB@222": b})
    files = {"image": ("a.png", _png(square_image()), "image/png")}
    with TestClient(app) as c:
        setups = c.get("/api/setups").json()
        assert [(s["profile_id"], s["name"], s["detector"], s["default"]) for s in setups] == [
            ("scopeA@111", "scopeA", "det-a", True),
            ("scopeB@222", "scopeB", "det-b", False),
        ]
        assert c.get("/api/model").json()["setups"] == setups
        assert c.post("/api/detect", files=files).json()["detector"] == "det-a"  # the default
        r = c.post("/api/detect", files=files, params={"profile_id": "scopeB@222"})
        assert r.status_code == 200 and r.json()["detector"] == "det-b"
        r = c.post("/api/detect", files=files, params={"profile_id": "nope@0"})
        assert r.status_code == 404
        assert "unknown setup profile 'nope@0'" in r.json()["detail"]
        assert "scopeA@111, scopeB@222" in r.json()["detail"]
    assert a.seen == [None] and b.seen == ["scopeB@222"]


def test_remote_detector_names_a_setup_and_sends_the_context() -> None:
    b = _NamedSquares("det-b")
    app = create_app(SETTINGS, detectors={"scopeA@111": _NamedSquares("det-a"), "scopeB@222": b})
    with running_server(app) as url:
        with RemoteDetector(url, profile_id="scopeB@222") as remote:
            assert remote.name == "det-b"
            ctx = ImagingContext(um_per_px=0.25, materials=("hBN",), profile_id="scopeB@222")
            [d] = remote.detect(square_image(), ctx)
            assert d.material == "hBN" and b.seen == ["scopeB@222"]
        with pytest.raises(ServerError, match="does not hold setup profile 'x@1'.*scopeA@111"):
            RemoteDetector(url, profile_id="x@1")


def test_server_without_setups_refuses_a_profile_id(client: TestClient) -> None:
    files = {"image": ("a.png", _png(square_image()), "image/png")}
    r = client.post("/api/detect", files=files, params={"profile_id": "scope@1"})
    assert r.status_code == 404 and "no setup profiles" in r.json()["detail"]
    assert client.get("/api/setups").json() == []


def test_batch_detector_protocol() -> None:
    from flakefinder.detect.contrast import ContrastDetector
    from flakefinder.domain import BatchDetector, Detector

    assert isinstance(DarkSquareDetector(), BatchDetector)
    assert isinstance(ContrastDetector(), Detector)
    assert not isinstance(ContrastDetector(), BatchDetector)


def test_a_named_setup_brings_its_own_pixel_size_and_oxide(tmp_path: Path) -> None:
    from dataclasses import replace

    from detect_helpers import setup_profile

    a = replace(setup_profile("scopeA"), um_per_px=0.2, oxide_nm=90.0)
    b = replace(setup_profile("scopeB"), um_per_px=0.5, oxide_nm=285.0)
    paths = (str(a.save(tmp_path / "a.json")), str(b.save(tmp_path / "b.json")))
    det_a, det_b = _NamedSquares("det-a"), _NamedSquares("det-b")
    files = {"image": ("a.png", _png(square_image()), "image/png")}

    def area_um2(settings: ServerSettings, **params: str) -> float:
        app = create_app(settings, detectors={a.profile_id: det_a, b.profile_id: det_b})
        with TestClient(app) as c:
            r = c.post("/api/detect", files=files, params=params)
        assert r.status_code == 200, r.text
        [flake] = r.json()["flakes"]
        return float(flake["area_um2"])

    # serve --setup a.json --setup b.json: the first profile's values are the server's
    settings = ServerSettings(
        detector="darksquare", setups=paths, um_per_px=0.2, oxide_thickness_nm=90.0
    )
    px = area_um2(settings) / 0.2**2
    assert det_a.contexts[-1].oxide_thickness_nm == 90.0
    assert area_um2(settings, profile_id=b.profile_id) == pytest.approx(px * 0.5**2)
    assert det_b.seen == [b.profile_id] and det_b.contexts[-1].oxide_thickness_nm == 285.0
    # a value in the request wins, and so does one the server was started with
    assert area_um2(settings, profile_id=b.profile_id, um_per_px="0.1") == pytest.approx(px * 0.01)
    fixed = replace(settings, fixed=frozenset({"um_per_px"}))
    assert area_um2(fixed, profile_id=b.profile_id) == pytest.approx(px * 0.2**2)
    with pytest.raises(ValueError, match="not um_per_pixel"):
        replace(settings, fixed=frozenset({"um_per_pixel"}))
