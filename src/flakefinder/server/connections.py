"""Slow and idle clients: timeouts and a connection cap for ``flakefinder serve``.

uvicorn alone keeps a connection that never finishes its request headers open forever, and its
``limit_concurrency`` answers 503 to everyone (``/api/health`` included) once idle sockets fill
it. :class:`GuardedH11Protocol` (uvicorn's h11 protocol with three additions) closes:

* a connection whose request line and headers have not all arrived ``header_timeout_s`` after
  it opened or after its previous response (a request that never starts);
* idle keep-alive connections after ``keep_alive_s`` (uvicorn's ``timeout_keep_alive``);
* when ``max_connections`` are open, the connection idle for longest (no request in progress,
  else one stalled in its request body) to make room for the new one, so a flood of idle
  sockets can never lock real clients out; only when every connection is busy is the new one
  refused.

:class:`BodyTimeoutMiddleware` answers 408 when a request body pauses for more than
``body_timeout_s`` (a half-sent upload), and the application sees the client as gone. Headers
larger than ``max_header_bytes`` are refused by h11 (``h11_max_incomplete_event_size``).

Floods are logged as a few lines: :class:`RepeatFilter` passes each distinct warning of
uvicorn and asyncio once a minute (with a count), and the cap and timeouts report through a
:class:`~flakefinder.server.ratelimit.RateLimitedLog`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flakefinder.server.ratelimit import RateLimitedLog
from flakefinder.server.security import ASGIApp, Message, Receive, Scope, Send
from flakefinder.server.settings import ConnectionLimits

if TYPE_CHECKING:
    import uvicorn

FLOOD_LOGGERS = ("uvicorn.error", "asyncio")


def _h11_protocol() -> type[Any]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def guarded_protocol(limits: ConnectionLimits, log: RateLimitedLog) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class with the header timeout and the connection cap."""
    import h11

    base = _h11_protocol()

    closing: set[Any] = set()  # connections this class closed that are not yet lost
    batch = max(1, limits.max_connections // 16)  # closed at once when the cap is reached

    class GuardedH11Protocol(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _last_data_s: float = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:
            # connections closed a moment ago stay in the set until connection_lost runs
            full = len(self.connections) - len(closing) >= limits.max_connections
            super().connection_made(transport)
            self._last_data_s = self.loop.time()
            if full:
                victims = _pick_idle(self.connections - {self}, batch)
                if not victims:
                    log.warning(
                        "connection-cap",
                        f"all {limits.max_connections} connections are busy: refusing new ones",
                    )
                    self._close()
                    return
                for victim in victims:
                    victim._close()
                log.warning(
                    "connection-cap",
                    f"{limits.max_connections} connections open (the cap): closing the longest"
                    " idle ones to make room",
                )
            self._arm_header_timer()

        def _close(self) -> None:
            if not self.transport.is_closing():
                closing.add(self)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            self._last_data_s = self.loop.time()
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._cancel_header_timer()  # the request line and headers are in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            closing.discard(self)
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _idle(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _stalled_in_body(self) -> bool:
            return self.conn.their_state is h11.SEND_BODY

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(
                limits.header_timeout_s, self._header_timeout
            )

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._idle() and not self.transport.is_closing():
                log.warning(
                    "header-timeout",
                    f"closed a connection that sent no complete request within"
                    f" {limits.header_timeout_s:g} s",
                )
                self._close()

    def _pick_idle(connections: set[Any], n: int) -> list[Any]:
        """The ``n`` connections idle for longest (no request in progress; else stalled in
        their request body), not counting those closing already."""
        mine = [
            c
            for c in connections
            if isinstance(c, GuardedH11Protocol) and c not in closing and c.transport is not None
        ]
        idle = [c for c in mine if c._idle()] or [c for c in mine if c._stalled_in_body()]
        return sorted(idle, key=lambda c: c._last_data_s)[:n]

    return GuardedH11Protocol


class BodyTimeoutMiddleware:
    """ASGI middleware: 408 when a request body pauses longer than ``timeout_s``.

    Only reads of an unfinished body are timed; once the body is complete, ``receive`` is
    passed through (an application waiting for a disconnect must not time out).
    """

    def __init__(self, app: ASGIApp, timeout_s: float, log: RateLimitedLog | None = None) -> None:
        self.app = app
        self.timeout_s = float(timeout_s)
        self.log = log or RateLimitedLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, timing each wait for more of its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"body_done": False, "timed_out": False, "started": False, "refused": False}

        async def timed_receive() -> Message:
            if state["timed_out"]:
                return {"type": "http.disconnect"}
            if state["body_done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                state["timed_out"] = True
                self.log.warning(
                    "body-timeout",
                    f"a request body paused for more than {self.timeout_s:g} s: answered 408",
                )
                if not state["started"]:
                    state["started"] = state["refused"] = True
                    await _send_408(send, self.timeout_s)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise


async def _send_408(send: Send, timeout_s: float) -> None:
    detail = f"the request body stopped arriving for more than {timeout_s:g} s"
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RepeatFilter(logging.Filter):
    """Passes each distinct message of a logger once per ``interval_s``, counting the rest."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = f"{record.name}:{record.msg}"[:300]
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # bounded: many distinct messages just start over
            self._last.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval_s:g} s)"
        if last is not None:  # the traceback was logged the first time
            record.exc_info = None
            record.exc_text = None
        return True


@contextmanager
def quiet_floods(interval_s: float = 60.0) -> Iterator[RepeatFilter]:
    """Inside the block, uvicorn's and asyncio's repeated warnings are logged once a minute."""
    flt = RepeatFilter(interval_s)
    loggers = [logging.getLogger(name) for name in FLOOD_LOGGERS]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield flt
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    limits: ConnectionLimits,
    *,
    log: RateLimitedLog | None = None,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of ``flakefinder serve`` (the guarded h11 protocol)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits, log or RateLimitedLog()),
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # a float works
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **options,
    )
