"""Strict JSON request bodies, and validation errors that can always be reported.

Python's ``json`` reads ``NaN``, ``Infinity`` and lone UTF-16 surrogates (``"\\ud800"``) that
JSON does not allow; FastAPI then failed to encode the input it wanted to report (500), or
passed the surrogate on to the database. :class:`StrictJsonMiddleware` reads every JSON body
with :func:`flakefinder.artifacts.parse_json` before any route sees it and answers 400 with one
line when it is not strict JSON (or too deep, or holds an absurd number); a strict body is
handed on unchanged. :func:`validation_error_handler` reports 422 errors with every input made
printable, so that reporting an error can never raise one.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from flakefinder.artifacts import JsonLimits, parse_json
from flakefinder.errors import JsonInputError
from flakefinder.server.security import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_JSON_DEPTH = 32


def is_json_type(content_type: str | None) -> bool:
    """Whether FastAPI would read a body of this ``Content-Type`` as JSON (none: yes)."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class StrictJsonMiddleware:
    """ASGI middleware: a JSON request body must be strict JSON within ``limits`` (else 400)."""

    def __init__(self, app: ASGIApp, limits: JsonLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read and check a JSON body, then replay it to the application."""
        if scope["type"] != "http" or str(scope.get("method", "")).upper() not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-type":
                content_type = value.decode("latin-1")
        if not is_json_type(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away (or was cut off)
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                parse_json(body, what="request body", limits=self.limits)
            except JsonInputError as exc:
                await _send_400(send, str(exc))
                return
        request: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([request], None, receive), send)


def _replay(messages: list[Message], last: Message | None, receive: Receive) -> Receive:
    queue = list(messages) + ([last] if last is not None else [])

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


async def _send_400(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def printable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-encodable data: non-finite floats and lone surrogates as text."""
    if depth > 8:
        return "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")[:1000]
    if isinstance(value, bytes):
        return value[:1000].decode("utf-8", "backslashreplace")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict):
        return {str(printable(k, depth + 1)): printable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v, depth + 1) for v in value[:100]]
    return printable(str(value), depth + 1)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with FastAPI's error list, every value in it made printable."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": printable(list(errors))}, status_code=422)
