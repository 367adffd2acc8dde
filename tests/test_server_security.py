"""The server's security model: API key on every change and (unless public) every read,
browser login with an HttpOnly SameSite cookie, Origin checks, empty keys refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flakefinder.server.app import create_app
from flakefinder.server.security import (
    SESSION_COOKIE,
    AccessPolicy,
    check_api_key,
    decide,
    safe_next,
)
from flakefinder.server.sessions import SessionStore
from flakefinder.server.settings import ServerSettings
from web_helpers import populate

KEY = "k3y-for-tests"
HOST = "localhost"  # TestClient's host (tests/conftest.py)
SAME = {"Origin": f"http://{HOST}"}


def _client(tmp_path: Path, **settings: object) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    populate(url, tmp_path / "tiles").close()
    app = create_app(ServerSettings(detector="none", database_url=url, **settings))  # type: ignore[arg-type]
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, api_key=KEY)


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path)


def test_with_a_key_every_route_needs_it(keyed: TestClient) -> None:
    assert keyed.get("/api/health").status_code == 200  # always open
    for path in ("/api/flakes", "/api/flakes/1", "/api/chips", "/api/scans", "/api/designs"):
        assert keyed.get(path).status_code == 401, path
        assert keyed.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        assert keyed.get(path, headers={"X-API-Key": "nope"}).status_code == 401, path
    # the writes the attacker used: flake status by form, design create/update/delete
    assert keyed.post("/flakes/1", data={"status": "used"}).status_code == 401
    assert keyed.post("/api/flakes/1/status", json={"status": "used"}).status_code == 401
    body = {"name": "x", "layers": [{"flake_id": 1}]}
    assert keyed.post("/api/designs", json=body).status_code == 401
    assert keyed.put("/api/designs/1", json=body).status_code == 401
    assert keyed.delete("/api/designs/1").status_code == 401
    assert keyed.get("/api/flakes/1", headers={"X-API-Key": KEY}).json()["status"] == "new"
    r = keyed.post("/flakes/1", data={"status": "used"}, headers={"X-API-Key": KEY})
    assert r.status_code == 303
    r = keyed.post("/api/designs", json=body, headers={"X-API-Key": KEY})
    assert r.status_code == 201


def test_pages_redirect_to_login_and_the_cookie_lets_the_browser_in(keyed: TestClient) -> None:
    r = keyed.get("/flakes?material=hBN", headers={"Accept": "text/html"})
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fflakes%3Fmaterial%3DhBN"
    assert keyed.get("/login").status_code == 200
    bad = keyed.post("/login", data={"api_key": "wrong", "next": "/flakes"}, headers=SAME)
    assert bad.status_code == 401 and "wrong API key" in bad.text
    assert SESSION_COOKIE not in keyed.cookies
    ok = keyed.post("/login", data={"api_key": KEY, "next": "/flakes"}, headers=SAME)
    assert ok.status_code == 303 and ok.headers["location"] == "/flakes"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert KEY not in ok.headers["set-cookie"]  # the cookie is a signed token, not the key
    assert keyed.get("/flakes").status_code == 200
    assert keyed.get("/api/flakes").status_code == 200
    # a state change by cookie needs a same-site Origin (browsers send one)
    assert keyed.post("/flakes/2", data={"status": "used"}).status_code == 403
    evil = {"Origin": "http://evil.example"}
    assert keyed.post("/flakes/2", data={"status": "used"}, headers=evil).status_code == 403
    assert keyed.post("/flakes/2", data={"status": "used"}, headers=SAME).status_code == 303
    referer = {"Referer": f"http://{HOST}/flakes/2"}
    assert keyed.post("/flakes/2", data={"status": "new"}, headers=referer).status_code == 303
    assert keyed.post("/logout", headers=SAME).status_code == 303
    keyed.cookies.clear()
    assert keyed.get("/api/flakes").status_code == 401


def test_public_read_opens_reads_only(tmp_path: Path) -> None:
    for client in _client(tmp_path, api_key=KEY, public_read=True):
        assert client.get("/api/flakes").status_code == 200
        assert client.get("/flakes").status_code == 200
        assert client.post("/flakes/1", data={"status": "used"}).status_code == 401
        assert client.delete("/api/designs/1").status_code == 401


def test_cross_origin_form_posts_are_refused_without_a_key_too(open_server: TestClient) -> None:
    evil = {"Origin": "http://evil.example"}
    r = open_server.post("/flakes/1", data={"status": "used"}, headers=evil)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = open_server.post("/flakes/1", data={"status": "used"}, headers={"Origin": "null"})
    assert r.status_code == 403
    assert open_server.post("/flakes/1", data={"status": "used"}, headers=SAME).status_code == 303
    assert open_server.get("/api/flakes/1").json()["status"] == "used"


def test_sessions_expire_and_cannot_be_forged() -> None:
    store = SessionStore(ttl_s=60.0)
    token = store.create(now_s=1000.0)
    assert len(token) >= 40 and store.valid(token, now_s=1059.0)
    assert not store.valid(token, now_s=1061.0)  # expired (and forgotten)
    assert not store.valid(token, now_s=1001.0)
    other = store.create(now_s=1000.0)
    assert not store.valid(other[:-1] + ("A" if other[-1] != "A" else "B"), now_s=1001.0)
    assert not store.valid("garbage", now_s=0.0)
    assert store.end(other) and not store.valid(other, now_s=1001.0)
    small = SessionStore(ttl_s=60.0, max_sessions=3)
    tokens = [small.create(now_s=float(i)) for i in range(5)]
    assert len(small) == 3 and not small.valid(tokens[0], 5.0) and small.valid(tokens[4], 5.0)


def test_decide_is_the_rule() -> None:
    policy = AccessPolicy(api_key=KEY)
    get = {"method": "GET", "path": "/api/flakes", "cookies": {}, "now_s": 0.0}
    assert decide(policy, headers={"host": HOST}, **get).status == 401  # type: ignore[arg-type]
    assert decide(policy, headers={"host": HOST, "x-api-key": KEY}, **get).allowed  # type: ignore[arg-type]
    assert decide(AccessPolicy(), headers={"host": HOST}, **get).allowed  # type: ignore[arg-type]
    assert safe_next("//evil.example/x") == "/" and safe_next("https://evil") == "/"
    assert safe_next("/flakes?x=1") == "/flakes?x=1"


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def test_empty_api_key_is_an_error_not_auth_off(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="empty"):
        check_api_key("")
    with pytest.raises(ValueError, match="empty"):
        ServerSettings(api_key="  ")
    monkeypatch.setenv("FLAKEFINDER_API_KEY", "")
    with pytest.raises(ValueError, match="FLAKEFINDER_API_KEY is empty"):
        ServerSettings.from_env()
    from flakefinder.cli.main import create_app as create_cli

    r = CliRunner().invoke(create_cli(), ["serve", "--detector", "none"])
    assert r.exit_code == 2 and "empty" in _flat(r.output)


def test_without_a_key_the_server_stays_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAKEFINDER_API_KEY", raising=False)
    from flakefinder.cli.main import create_app as create_cli

    r = CliRunner().invoke(create_cli(), ["serve", "--host", "0.0.0.0", "--detector", "none"])
    out = _flat(r.output)
    assert r.exit_code == 2 and "127.0.0.1 only" in out and "--allow-no-key" in out
    r = CliRunner().invoke(create_cli(), ["serve", "--public-read", "--detector", "none"])
    assert r.exit_code == 2 and "needs --api-key" in _flat(r.output)
