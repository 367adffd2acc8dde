"""Request body limit: uploads are counted as they stream in and cut at the limit with 413.

``Content-Length`` alone is not enough: a chunked upload has none. :class:`BodyLimitMiddleware`
wraps the ASGI ``receive`` channel, counts the bytes of every body message, and once the limit is
passed answers 413 itself and tells the application the client went away, so nothing reads the
rest of the body into memory.
"""

from __future__ import annotations

import json

from flakefinder.server.security import ASGIApp, Message, Receive, Scope, Send


def too_large_body(limit_bytes: int, length: int | None = None) -> bytes:
    """JSON body of the 413 answer."""
    size = f"upload of {length} bytes" if length is not None else "upload"
    mb = limit_bytes / (1024 * 1024)
    return json.dumps({"detail": f"{size} exceeds the limit of {mb:g} MB"}).encode()


class BodyLimitMiddleware:
    """ASGI middleware that refuses request bodies over ``limit_bytes`` with 413.

    Parameters
    ----------
    app
        The wrapped ASGI application.
    limit_bytes
        Largest accepted request body, whatever the transfer encoding.
    """

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app = app
        self.limit_bytes = int(limit_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on while its body stays under the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                text = value.decode("latin-1").strip()
                if text.isdigit():
                    length = int(text)
        if length is not None and length > self.limit_bytes:
            await self._refuse(send, length)
            return
        state = {"received": 0, "cut": False, "refused": False, "started": False}

        async def limited_receive() -> Message:
            if state["cut"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit_bytes:
                    state["cut"] = True
                    if not state["started"]:  # else the answer is under way: just stop reading
                        state["started"] = state["refused"] = True
                        await self._refuse(send, None)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 went out; whatever the app answers after is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise
            # the application failed on the cut-off body; the client already has its 413

    async def _refuse(self, send: Send, length: int | None) -> None:
        body = too_large_body(self.limit_bytes, length)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
