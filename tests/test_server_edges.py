"""The server's edges, round 2 (issue 14): Host names (DNS rebinding), framing and other headers,
sessions that end at logout, lenient cookies, throttled guessing, strict JSON, printable keys.

In-process (Starlette's TestClient); the real-socket checks of slow clients are in
test_server_slow_clients.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flakefinder.server.app import create_app
from flakefinder.server.edges import HostPolicy, machine_names
from flakefinder.server.ratelimit import FailureLimiter, FailureRules
from flakefinder.server.security import SESSION_COOKIE, check_api_key
from flakefinder.server.sessions import parse_cookies
from flakefinder.server.settings import ServerSettings
from web_helpers import populate

KEY = "k3y-for-tests"
SAME = {"Origin": "http://localhost"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(tmp_path: Path, **settings: object) -> object:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    if not (tmp_path / "web.db").exists():
        populate(url, tmp_path / "tiles").close()
    return create_app(ServerSettings(detector="none", database_url=url, **settings))  # type: ignore[arg-type]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(_app(tmp_path, api_key=KEY), follow_redirects=False) as client:  # type: ignore[arg-type]
        yield client


# -- DNS rebinding ---------------------------------------------------------------------------------


def test_a_foreign_host_name_is_refused_before_any_route(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with TestClient(app, base_url="http://evil.example:8000") as evil:  # type: ignore[arg-type]
        r = evil.post("/flakes/1", data={"status": "used"}, headers={"Origin": "http://evil.example:8000"})
        assert r.status_code == 421
        assert "evil.example" in r.json()["detail"] and "--allowed-host" in r.json()["detail"]
        assert evil.get("/api/flakes/1").status_code == 421
        assert evil.get("/api/health").status_code == 421
    with TestClient(app) as local:  # type: ignore[arg-type]
        assert local.get("/api/flakes/1").json()["status"] == "new"  # the write never ran
    for base in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://app.localhost", "http://10.1.2.3"):
        with TestClient(app, base_url=base) as client:  # type: ignore[arg-type]
            assert client.get("/api/health").status_code == 200, base


def test_allowed_host_names() -> None:
    default = HostPolicy.for_server("127.0.0.1")
    assert default.allows("localhost:8000") and default.allows("127.0.0.1:8000")
    assert default.allows("[::1]:8000") and default.allows("LOCALHOST.")
    assert not default.allows("evil.example") and not default.allows("localhost.evil.example")
    assert not default.allows("")
    lab = HostPolicy.for_server("127.0.0.1", ["lab-gpu", "gpu.lab.example:8000"])
    assert lab.allows("lab-gpu:8000") and lab.allows("gpu.lab.example")
    assert not lab.allows("evil.example")
    assert HostPolicy.for_server("127.0.0.1", ["*"]).allows("anything.example")
    # listening beyond loopback: the machine's own names too (and its --host name)
    network = HostPolicy.for_server("0.0.0.0")
    assert all(network.allows(name) for name in machine_names())
    assert not network.allows("evil.example")
    assert HostPolicy.for_server("gpu.lab.example").allows("gpu.lab.example:8000")


def test_serve_takes_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, object] = {}

    def fake_run(settings: ServerSettings, host: str, port: int) -> None:
        captured.update(settings=settings, host=host, port=port)

    monkeypatch.setattr("flakefinder.cli.serve._run_server", fake_run)
    monkeypatch.delenv("FLAKEFINDER_API_KEY", raising=False)
    from flakefinder.cli.main import create_app as create_cli

    r = CliRunner().invoke(
        create_cli(),
        ["serve", "--detector", "none", "--allowed-host", "lab-gpu", "--allowed-host", "gpu.lab"],
    )
    assert r.exit_code == 0, r.output
    settings = captured["settings"]
    assert isinstance(settings, ServerSettings)
    assert settings.allowed_hosts == ("lab-gpu", "gpu.lab") and settings.bind_host == "127.0.0.1"


# -- framing and other headers ---------------------------------------------------------------------


def test_every_answer_forbids_framing(keyed: TestClient) -> None:
    answers = [
        keyed.get("/api/health"),
        keyed.get("/login"),
        keyed.get("/static/app.css"),
        keyed.get("/api/flakes"),  # 401
        keyed.get("/flakes", headers={"Accept": "text/html", "X-API-Key": KEY}),
        keyed.get("/api/flakes/999", headers={"X-API-Key": KEY}),  # 404
        keyed.get("/docs", headers={"X-API-Key": KEY}),
    ]
    for r in answers:
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, r.url
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    # the API docs page allows exactly its own inline start-up script, nothing else inline
    docs_csp = answers[-1].headers["content-security-policy"]
    assert "'sha256-" in docs_csp and "'unsafe-inline'" not in docs_csp.split("script-src")[1].split(";")[0]
    assert "'unsafe-inline'" not in answers[0].headers["content-security-policy"].split("style-src")[0]


# -- sessions ---------------------------------------------------------------------------------------


def test_logout_ends_the_session_on_the_server(keyed: TestClient) -> None:
    ok = keyed.post("/login", data={"api_key": KEY, "next": "/flakes"}, headers=SAME)
    assert ok.status_code == 303
    token = keyed.cookies[SESSION_COOKIE]
    assert KEY not in token and len(token) >= 40
    assert keyed.get("/api/flakes").status_code == 200
    assert keyed.post("/logout", headers=SAME).status_code == 303
    keyed.cookies.clear()
    # the old cookie, replayed (a copy kept by an attacker, or a browser that ignored the
    # deletion), no longer works
    stolen = {"Cookie": f"{SESSION_COOKIE}={token}"}
    assert keyed.get("/api/flakes", headers=stolen).status_code == 401
    assert keyed.post("/flakes/1", data={"status": "used"}, headers={**stolen, **SAME}).status_code == 401


@pytest.mark.parametrize(
    "before",
    [
        'prefs={"theme": "dark", "cols": [1, 2]}',
        "tracking=a b c",
        'broken="unterminated',
        "novalue; =orphan; ;;",
        f"{SESSION_COOKIE}=stale-token-from-a-longer-path",
    ],
)
def test_other_cookies_do_not_hide_the_session(keyed: TestClient, before: str) -> None:
    keyed.post("/login", data={"api_key": KEY}, headers=SAME)
    token = keyed.cookies[SESSION_COOKIE]
    keyed.cookies.clear()
    header = {"Cookie": f"{before}; {SESSION_COOKIE}={token}; after=1"}
    assert keyed.get("/api/flakes", headers=header).status_code == 200
    assert keyed.post("/flakes/1", data={"status": "used"}, headers={**header, **SAME}).status_code == 303


def test_parse_cookies_is_lenient() -> None:
    jar = parse_cookies('a={"x": 1}; b="quoted"; c=1; c=2; junk; =x; d = spaced ')
    assert jar == {"a": ['{"x": 1}'], "b": ["quoted"], "c": ["1", "2"], "d": ["spaced"]}
    assert parse_cookies(None) == {} and parse_cookies("") == {}


# -- guessing ---------------------------------------------------------------------------------------


def test_wrong_keys_get_a_back_off(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter: FailureLimiter = keyed.app.state.auth_limiter  # type: ignore[attr-defined]
    limiter.clock = clock
    wrong = {"X-API-Key": "guess"}
    with caplog.at_level(logging.WARNING, logger="flakefinder.server"):
        codes = [keyed.get("/api/flakes", headers=wrong).status_code for _ in range(5)]
        assert codes == [401] * 5
        r = keyed.get("/api/flakes", headers=wrong)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        # while refused, not even the right key is compared
        assert keyed.get("/api/flakes", headers={"X-API-Key": KEY}).status_code == 429
        for _ in range(20):
            keyed.get("/api/flakes", headers=wrong)
        clock.now += 1.0
        assert keyed.get("/api/flakes", headers=wrong).status_code == 401  # 6th: 2 s now
        r = keyed.get("/api/flakes", headers={"X-API-Key": KEY})
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        clock.now += 2.0
        assert keyed.get("/api/flakes", headers={"X-API-Key": KEY}).status_code == 200
        assert keyed.get("/api/flakes", headers=wrong).status_code == 401  # starts over
        # logins count the same way
        for _ in range(4):
            assert keyed.post("/login", data={"api_key": "x"}, headers=SAME).status_code == 401
        r = keyed.post("/login", data={"api_key": KEY}, headers=SAME)
        assert r.status_code == 429 and "try again in 1 s" in r.text and r.headers["retry-after"] == "1"
        # reading without any key is not a guess: still the ordinary 401
        assert keyed.get("/api/flakes").status_code == 401
    burst = [rec for rec in caplog.records if "wrong API key" in rec.getMessage()]
    assert len(burst) == 1, [rec.getMessage() for rec in caplog.records]  # once per burst
    assert "testclient" in burst[0].getMessage() and "429" in burst[0].getMessage()


def test_the_failure_table_is_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(FailureRules(max_addresses=100), clock=clock)
    for i in range(10_000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", "API key")
    assert len(limiter) == 100
    for _ in range(5):
        limiter.failed("192.0.2.1", "API key")
    assert limiter.retry_after_s("192.0.2.1") == 1 and len(limiter) == 100
    clock.now += 601.0  # a quiet address is forgotten: its next failure starts over
    limiter.failed("192.0.2.1", "API key")
    assert limiter.retry_after_s("192.0.2.1") is None


# -- JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": NaN}',
        b'{"name": "x", "layers": [{"flake_id": 1, "x_um": Infinity}, {"flake_id": 2}]}',
        b'{"layers": [{"flake_id": 1}, {"flake_id": 2, "y_um": -Infinity}]}',
        b'{"name": "\\ud800", "layers": [{"flake_id": 1}, {"flake_id": 2}]}',
        b'{"status": "used", "notes": "\\udfff"}',
        b'{"\\ud800": 1}',
        b"[1e999]",
        b"NaN",
        b'{"layers": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"status": ' + b"9" * 5000 + b"}",
        b"\xff\xfe",
    ],
)
def test_json_that_is_not_json_is_a_4xx(tmp_path: Path, body: bytes) -> None:
    app = _app(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        for method, path in (
            ("POST", "/api/flakes/1/status"),
            ("POST", "/api/designs"),
            ("POST", "/api/designs/preview"),
            ("PUT", "/api/designs/1"),
        ):
            for content_type in ("application/json", None):
                headers = {"Content-Type": content_type} if content_type else {}
                r = client.request(method, path, content=body, headers=headers)
                assert 400 <= r.status_code < 500, (method, path, body[:40], r.status_code, r.text)
        assert client.get("/api/designs").json() == []
        assert client.get("/api/flakes/1").json()["status"] == "new"


# -- keys --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["clé-secrète", "key\u00a0x", "tab\tkey", " padded ", "ключ"])
def test_a_key_http_cannot_carry_is_refused_at_start(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="printable ASCII|space"):
        check_api_key(key)
    monkeypatch.delenv("FLAKEFINDER_API_KEY", raising=False)
    from flakefinder.cli.main import create_app as create_cli

    r = CliRunner().invoke(create_cli(), ["serve", "--detector", "none", "--api-key", key])
    out = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and ("printable ASCII" in out or "space" in out), r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)


def test_scan_with_a_non_ascii_key_fails_cleanly(tmp_path: Path) -> None:
    from flakefinder.cli.main import create_app as create_cli

    args = [
        "scan", "--simulated", "--chip-size-mm", "0.12", "--frame-px", "128", "--um-per-px",
        "0.5", "--no-progress", "--db", f"sqlite:///{tmp_path / 'f.db'}",
        "--server", "http://127.0.0.1:9", "--api-key", "clé",
    ]  # fmt: skip
    r = CliRunner().invoke(create_cli(), args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    out = " ".join(r.output.replace("│", " ").split())
    assert "printable ASCII" in out and "--api-key" in out
    assert not (tmp_path / "f.db").exists()  # refused before anything was stored
