"""The outermost checks of every request: the ``Host`` name, and headers on every answer.

DNS rebinding: a web page at ``http://evil.example`` whose name is later pointed at the lab
machine makes the browser send requests to this server with ``Host: evil.example`` (and the
page's own origin, so Origin checks pass). :class:`HostPolicy` accepts only the names the server
was started for: loopback names (``localhost``, ``*.localhost``), IP addresses (an address
cannot be rebound), the ``--host`` name, the machine's own names when it listens beyond
loopback, and every ``--allowed-host``; ``*`` turns the check off. Anything else gets 421 before
any route runs.

:data:`SECURITY_HEADERS` go on every answer: a Content-Security-Policy that allows only this
server's own scripts, styles, images and connections and no framing (clickjacking),
``X-Frame-Options: DENY`` for older browsers, ``nosniff`` and a same-origin referrer policy. A
route that sets its own ``Content-Security-Policy`` (the API docs page) keeps it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flakefinder.server.security import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flakefinder.server.settings import ServerSettings

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
_ENCODED_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS]
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


def csp_with_script_hashes(hashes: Iterable[str]) -> str:
    """:data:`CSP` that also allows inline scripts with these ``sha256-...`` hashes."""
    allowed = " ".join(f"'{h}'" for h in hashes)
    return CSP.replace("script-src 'self'", f"script-src 'self' {allowed}")


def split_host(value: str) -> str:
    """The name of a ``Host`` header value, lower-case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback_bind(bind_host: str) -> bool:
    name = split_host(bind_host)
    return name == "localhost" or (_is_ip(name) and ipaddress.ip_address(name).is_loopback)


def machine_names() -> set[str]:
    """This machine's host name and fully qualified name (lower-case; empty on failure)."""
    names = set()
    for get in (socket.gethostname, socket.getfqdn):
        try:
            name = get().strip().lower().rstrip(".")
        except OSError:
            continue
        if name:
            names.add(name)
    return names


@dataclass(frozen=True)
class HostPolicy:
    """The ``Host`` names a server answers to (IP addresses and loopback names always)."""

    names: frozenset[str] = frozenset()
    any_host: bool = False

    @classmethod
    def for_server(cls, bind_host: str, allowed: Iterable[str] = ()) -> HostPolicy:
        """The names of a server listening on ``bind_host`` with ``--allowed-host``s."""
        extra = {split_host(a) for a in allowed if a.strip()}
        if "*" in extra:
            return cls(any_host=True)
        names = set(extra)
        bind = split_host(bind_host)
        if bind not in _WILDCARD_BINDS:
            names.add(bind)
        if not _is_loopback_bind(bind_host):
            names |= machine_names()
        return cls(frozenset(names))

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header (None: without one) may go on."""
        if self.any_host or host_header is None:
            return True
        name = split_host(host_header)
        if not name:
            return False
        return (
            _is_ip(name)
            or name == "localhost"
            or name.endswith(".localhost")
            or name in self.names
        )


class EdgeMiddleware:
    """ASGI middleware: 421 for a ``Host`` outside ``policy``; security headers on every answer."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a foreign ``Host``, else pass on and add the headers to the answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = None
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
                break
        if not self.policy.allows(host):
            await _send_misdirected(send, split_host(host or ""))
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _ENCODED_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _send_misdirected(send: Send, name: str) -> None:
    shown = name[:100]
    detail = (
        f"this server does not answer to the name {shown!r} (a guard against DNS rebinding);"
        f" if that is its name, start it with --allowed-host {shown}"
    )
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 421,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *_ENCODED_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_edges(app: FastAPI, settings: ServerSettings) -> None:
    """Add the request guards of ``settings`` around ``app`` (call after the inner middleware).

    From the outside in: the ``Host`` check and security headers, access (API key, sessions,
    throttled guessing), the body-read timeout; the login routes; strict reporting of
    validation errors. ``app.state.sessions`` and ``app.state.auth_limiter`` hold the session
    store and the failure limiter.
    """
    from fastapi.exceptions import RequestValidationError

    from flakefinder.server.connections import BodyTimeoutMiddleware
    from flakefinder.server.jsonbody import validation_error_handler
    from flakefinder.server.ratelimit import FailureLimiter
    from flakefinder.server.security import AccessMiddleware, AccessPolicy, add_login_routes
    from flakefinder.server.sessions import SessionStore

    policy = AccessPolicy(api_key=settings.api_key, public_read=settings.public_read)
    sessions = SessionStore(policy.session_ttl_s)
    limiter = FailureLimiter()
    app.state.sessions = sessions
    app.state.auth_limiter = limiter
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.limits.body_timeout_s)
    app.add_middleware(AccessMiddleware, policy=policy, sessions=sessions, limiter=limiter)
    hosts = HostPolicy.for_server(settings.bind_host, settings.allowed_hosts)
    app.add_middleware(EdgeMiddleware, policy=hosts)
    add_login_routes(app, policy, sessions, limiter)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
