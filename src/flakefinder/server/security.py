"""The server's one security model: an API key, browser sessions and an Origin check.

* With an API key set, every state-changing request (any method but GET, HEAD and OPTIONS)
  needs it: the header ``X-API-Key``, or a session cookie that ``POST /login`` sets after the
  key was typed into the login page (HttpOnly, SameSite=Strict; a random token the server
  remembers until it expires or ``POST /logout`` ends it: :mod:`flakefinder.server.sessions`).
* Reading (GET/HEAD) needs the key or a session too, unless the server runs with public reads.
  ``/api/health``, ``/login``, ``/logout`` and ``/static/`` are always open.
* A state-changing request that carries an ``Origin`` (or, lacking one, a ``Referer``) from
  another site is refused (403), with or without a key; a request authenticated only by the
  session cookie must carry one of them (browsers always do), so another site cannot forge it.
* Wrong keys and logins are counted per client address; past a few in a row the address gets
  429 with ``Retry-After`` for a short, growing back-off (:mod:`flakefinder.server.ratelimit`).
* The key must be printable ASCII: an HTTP header cannot carry anything else.

:func:`decide` is the pure rule; :class:`AccessMiddleware` applies it to every request.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from flakefinder.server.sessions import SessionStore, parse_cookies
from flakefinder.server.settings import check_api_key as check_api_key  # re-exported

if TYPE_CHECKING:
    from flakefinder.server.ratelimit import FailureLimiter

API_KEY_HEADER = "X-API-Key"
SESSION_COOKIE = "flakefinder_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/api/health", "/login", "/logout", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class AccessPolicy:
    """Who may do what: the API key (``None``: no key), public reads, session lifetime."""

    api_key: str | None = None
    public_read: bool = False
    session_ttl_s: float = 12 * 3600.0


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`: allowed, or the status code and reason of a refusal."""

    allowed: bool
    status: int = 200
    reason: str = ""


def key_matches(key: str, given: str) -> bool:
    """Constant-time comparison of a presented key with the server's."""
    return secrets.compare_digest(given.encode(), key.encode())


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin``/``Referer`` value names the site at ``host`` (the Host header)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


def decide(
    policy: AccessPolicy,
    *,
    method: str,
    path: str,
    headers: dict[str, str],
    cookies: Mapping[str, list[str]],
    now_s: float,
    sessions: SessionStore | None = None,
) -> Decision:
    """Apply the security model to one request (``headers`` with lower-case names; ``cookies``
    every value of each cookie name; ``sessions`` the live browser sessions)."""
    unsafe = method.upper() not in SAFE_METHODS
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer")
    if unsafe and origin is not None and not same_origin(origin, host):
        return Decision(False, 403, f"cross-origin request from {origin[:100]!r} refused")
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return Decision(True)
    key = policy.api_key
    if key is None or (not unsafe and policy.public_read):
        return Decision(True)
    given = headers.get(API_KEY_HEADER.lower())
    if given is not None:
        if key_matches(key, given):
            return Decision(True)
        return Decision(False, 401, f"wrong {API_KEY_HEADER} header")
    tokens = cookies.get(SESSION_COOKIE, [])
    if sessions is not None and any(sessions.valid(t, now_s) for t in tokens):
        if unsafe and origin is None:
            return Decision(False, 403, "a form or script request without an Origin is refused")
        return Decision(True)
    return Decision(False, 401, f"missing {API_KEY_HEADER} header (or log in at /login)")


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out[name.decode("latin-1").lower()] = value.decode("latin-1")
    return out


def _wants_html(method: str, headers: dict[str, str]) -> bool:
    return method in ("GET", "HEAD") and "text/html" in headers.get("accept", "")


async def _send_simple(
    send: Send, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_address(scope: Scope) -> str:
    """The client's address of an ASGI request ("unknown" without one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def too_many(retry_after_s: int, what: str) -> str:
    return f"too many wrong {what}s from this address; try again in {retry_after_s} s"


class AccessMiddleware:
    """ASGI middleware applying :func:`decide` to every HTTP request.

    Parameters
    ----------
    app
        The wrapped ASGI application.
    policy
        The access policy.
    sessions
        The live browser sessions (``POST /login`` adds them).
    limiter
        Counts wrong API keys per client address (None: no throttling).
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: AccessPolicy,
        sessions: SessionStore | None = None,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.sessions = sessions
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the request through, or answer 401/403 (a login redirect for pages)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = str(scope.get("method", "GET")).upper()
        path = str(scope.get("path", "/"))
        keyed = self.policy.api_key is not None and API_KEY_HEADER.lower() in headers
        address = client_address(scope)
        if keyed and self.limiter is not None:
            wait = self.limiter.retry_after_s(address)
            if wait is not None:  # the key is not even compared while the address waits
                body = json.dumps({"detail": too_many(wait, "API key")}).encode()
                extra = [(b"retry-after", str(wait).encode())]
                await _send_simple(send, 429, body, "application/json", extra)
                return
        decision = decide(
            self.policy,
            method=method,
            path=path,
            headers=headers,
            cookies=parse_cookies(headers.get("cookie")),
            now_s=time.time(),
            sessions=self.sessions,
        )
        if keyed and self.limiter is not None and self.policy.api_key is not None:
            if key_matches(self.policy.api_key, headers[API_KEY_HEADER.lower()]):
                self.limiter.succeeded(address)
            else:  # also on open paths: a wrong key is a guess wherever it is sent
                self.limiter.failed(address, "API key")
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        if decision.status == 401 and _wants_html(method, headers):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            location = "/login?next=" + quote(target, safe="")
            await _send_simple(send, 303, b"", "text/plain", [(b"location", location.encode())])
            return
        body = json.dumps({"detail": decision.reason}).encode()
        extra = [(b"www-authenticate", b"API-Key")] if decision.status == 401 else []
        await _send_simple(send, decision.status, body, "application/json", extra)


def safe_next(target: str) -> str:
    """A local path to go to after login (never another site)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(next_path: str, error: str = "") -> str:
    """The login form (a self-contained page; the web UI's stylesheet when it is mounted)."""
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flakefinder: log in</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><main><h1>Log in</h1>{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(safe_next(next_path))}">
<label>API key <input type="password" name="api_key" id="api_key" autocomplete="current-password"
 required></label>
<button type="submit" id="login">Log in</button>
</form></main></body></html>
"""


def add_login_routes(
    app: FastAPI,
    policy: AccessPolicy,
    sessions: SessionStore,
    limiter: FailureLimiter | None = None,
) -> None:
    """``GET/POST /login`` and ``POST /logout`` on a FastAPI ``app`` (not in the schema)."""
    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(login_page(next))

    @app.post("/login", include_in_schema=False, response_model=None)
    def login(
        request: Request,
        api_key: str = Form(""),
        next: str = Form("/"),
    ) -> HTMLResponse | RedirectResponse:
        key = policy.api_key
        if key is None:
            return RedirectResponse(safe_next(next), status_code=303)
        address = "unknown" if request.client is None else request.client.host
        wait = None if limiter is None else limiter.retry_after_s(address)
        if wait is not None:
            return HTMLResponse(
                login_page(next, too_many(wait, "API key")),
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        if not key_matches(key, api_key):
            if limiter is not None:
                limiter.failed(address, "login")
            return HTMLResponse(login_page(next, "wrong API key"), status_code=401)
        if limiter is not None:
            limiter.succeeded(address)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sessions.create(time.time()),
            max_age=int(policy.session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> RedirectResponse:
        cookies = parse_cookies(request.headers.get("cookie"))
        for token in cookies.get(SESSION_COOKIE, []):
            sessions.end(token)  # the cookie stops working now, not when it expires
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
