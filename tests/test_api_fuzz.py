"""API fuzzing: Schemathesis generates requests for every operation of the OpenAPI schema and
sends them to a real uvicorn on 127.0.0.1 (bounded: a few examples per operation). No answer
may be a 5xx, and the server must still answer afterwards.

The decoders get the same treatment with Hypothesis: random and mutated PNG/JPEG/TIFF/BMP bytes
decode to an (H, W, 3) uint8 image or raise ImageError with a clean message, nothing else.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flakefinder.errors import ImageError
from flakefinder.imaging import ImageLimits, decode_image
from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from server_helpers import DarkSquareDetector, running_server
from web_helpers import populate

KEY = "fuzz-key-123"
EXAMPLES_PER_OPERATION = 15
TIME_BUDGET_S = 45.0  # the whole API fuzz; operations left when it runs out are counted, not run


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'web.db'}"
    populate(url, tmp / "tiles").close()
    settings_ = ServerSettings(
        detector="darksquare", database_url=url, api_key=KEY, max_upload_mb=2.0
    )
    with running_server(create_app(settings_, detector=DarkSquareDetector())) as base:
        yield base


def test_schemathesis_finds_no_server_error(server_url: str, request: pytest.FixtureRequest) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    import requests

    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json", headers={"X-API-Key": KEY})
    failures: list[str] = []
    statuses: dict[int, int] = {}
    session = requests.Session()
    request.addfinalizer(session.close)  # its pooled sockets close even when an assert fails
    session.headers["X-API-Key"] = KEY
    start = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    from schemathesis.generation.modes import GenerationMode

    def fuzz(operation: object, mode: GenerationMode) -> None:
        name = operation.label  # type: ignore[attr-defined]

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(mode))  # type: ignore[attr-defined]
        def check(case: object) -> None:
            response = case.call(base_url=server_url, session=session, timeout=20)  # type: ignore[attr-defined]
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{name} ({mode}): {response.status_code} {case!r}")

        check()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:
            if time.monotonic() - start > TIME_BUDGET_S:
                break
            try:
                fuzz(operation, mode)
            except Exception as exc:
                if "Unsatisfiable" not in type(exc).__name__:
                    raise
    health = session.get(f"{server_url}/api/health", timeout=10)
    assert health.status_code == 200
    print(
        f"schemathesis: {len(operations)} operations, responses by status {sorted(statuses.items())}"
    )
    assert failures == [], failures[:5]
    assert sum(statuses.values()) >= len(operations)  # it really sent requests


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    buf = io.BytesIO()
    if fmt == "TIFF":
        import tifffile

        tifffile.imwrite(buf, image, compression="zlib")
    elif fmt == "PNG16":
        from PIL import Image

        Image.fromarray(image[:, :, 0].astype(np.uint16) * 257).save(buf, format="PNG")
    else:
        from PIL import Image

        Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "TIFF", "PNG16")}
SMALL = ImageLimits(max_pixels=4096 * 4, max_decoded_bytes=4 * 2**20)


def _decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, what="fuzz", limits=SMALL)
    except ImageError as exc:
        assert " at 0x" not in str(exc) and str(exc).startswith("fuzz")
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=512))
def test_random_bytes_never_escape_the_decoder(data: bytes) -> None:
    _decodes_or_refuses(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutated())
def test_mutated_images_never_escape_the_decoder(data: bytes) -> None:
    _decodes_or_refuses(data)


def test_seeds_decode() -> None:
    for fmt, data in SEEDS.items():
        assert decode_image(data, what=fmt).shape == (24, 20, 3), fmt
