"""Property: no JSON body sent to any route gives a 5xx, whatever it holds.

The routes come from the app itself (every ``APIRoute`` and method, pages and login included;
path parameters filled with ids that exist), the bodies from Hypothesis: nested JSON with NaN,
±Infinity, huge and tiny numbers, lone UTF-16 surrogates in keys and strings, and the field
names of the API's own schemas so that bodies get past the first checks. Each body is sent as
``application/json`` and without a content type (FastAPI reads both as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings
from server_helpers import DarkSquareDetector
from web_helpers import populate

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
NUMBERS = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324])
)


def _field_names(schema: dict[str, Any]) -> list[str]:
    names: set[str] = set()
    for component in schema.get("components", {}).get("schemas", {}).values():
        names.update(component.get("properties", {}))
    return sorted(names)


def _bodies(keys: list[str]) -> st.SearchStrategy[Any]:
    text = st.text(st.characters() | SURROGATES, max_size=12)
    key = st.sampled_from(keys) | text
    scalars = st.none() | st.booleans() | NUMBERS | text | st.sampled_from(["used", "new", "1"])
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=5),
        max_leaves=16,
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("jsonprop")
    url = f"sqlite:///{tmp / 'web.db'}"
    populate(url, tmp / "tiles").close()
    app = create_app(
        ServerSettings(detector="darksquare", database_url=url), detector=DarkSquareDetector()
    )
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        c.post("/api/designs", json={"name": "d", "layers": [{"flake_id": 1}, {"flake_id": 2}]})
        yield c


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute, also inside included routers (FastAPI may keep those nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # an included router
            inner = prefix + getattr(getattr(route, "include_context", None), "prefix", "")
            yield from _api_routes(route.original_router.routes, inner)
        elif hasattr(route, "routes") and not hasattr(route, "app"):
            yield from _api_routes(route.routes, prefix)


def _routes(client: TestClient) -> list[tuple[str, str]]:
    out = set()
    for path, route in _api_routes(client.app.routes):  # type: ignore[attr-defined]
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", "1")
        out.update((method, path) for method in route.methods if method != "HEAD")
    schema = client.get("/openapi.json").json()  # and every operation the schema documents
    for path, operations in schema["paths"].items():
        concrete = "/".join("1" if p.startswith("{") else p for p in path.split("/"))
        out.update((m.upper(), concrete) for m in operations if m.upper() != "HEAD")
    return sorted(out)


def test_routes_are_enumerated(client: TestClient) -> None:
    routes = _routes(client)
    for expected in [
        ("POST", "/api/flakes/1/status"),
        ("PUT", "/api/designs/1"),
        ("POST", "/api/designs/preview"),
        ("POST", "/api/detect"),
        ("POST", "/flakes/1"),
        ("POST", "/login"),
        ("POST", "/api/setup/sessions/1/regions"),
    ]:
        assert expected in routes
    assert len(routes) >= 30


def test_no_json_body_gives_a_server_error(client: TestClient) -> None:
    routes = _routes(client)
    keys = _field_names(client.get("/openapi.json").json())
    assert {"status", "layers", "flake_id", "x_um"} <= set(keys)
    sent: dict[tuple[str, str], int] = {}
    failures: list[str] = []

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        route=st.sampled_from(routes),
        body=_bodies(keys),
        typed=st.booleans(),
    )
    def check(route: tuple[str, str], body: Any, typed: bool) -> None:
        method, path = route
        data = json.dumps(body, allow_nan=True)  # NaN/Infinity as such, surrogates as \\udXXX
        headers = {"Content-Type": "application/json"} if typed else {}
        r = client.request(method, path, content=data.encode(), headers=headers)
        sent[route] = sent.get(route, 0) + 1
        if r.status_code >= 500:
            failures.append(f"{method} {path} {data[:120]!r}: {r.status_code} {r.text[:120]}")

    check()
    assert failures == [], failures[:5]
    assert len(sent) >= len(routes) * 0.9  # (almost) every route got bodies
    assert client.get("/api/health").status_code == 200
