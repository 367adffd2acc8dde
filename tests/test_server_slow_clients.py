"""Slow and idle clients against a real uvicorn with ``flakefinder serve``'s connection handling
(``server.connections``), over real sockets, with small numbers: a cap of 20 connections and a
flood of 40 idle or half-sent ones, and timeouts of a fraction of a second where a timeout has to
fire. Nothing here sleeps to measure time; a socket waits (with a generous limit) for the server
to answer or to close it.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flakefinder.server.app import create_app
from flakefinder.server.connections import RepeatFilter, uvicorn_config
from flakefinder.server.ratelimit import RateLimitedLog
from flakefinder.server.settings import ConnectionLimits, ServerSettings
from server_helpers import DarkSquareDetector

WAIT_S = 10.0  # the most a socket waits for an answer or for the server to close it


@contextmanager
def guarded_server(limits: ConnectionLimits) -> Iterator[tuple[int, Any]]:
    """A real uvicorn on 127.0.0.1 with the guarded protocol; yields (port, server)."""
    import uvicorn

    app = create_app(
        ServerSettings(detector="darksquare", limits=limits), detector=DarkSquareDetector()
    )
    config = uvicorn_config(app, "127.0.0.1", 0, limits, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.01):
        if server.started:
            started.set()
        elif not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
    try:
        yield server.servers[0].sockets[0].getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    return s


def _request(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection; everything the server sends until it closes or the
    answer is complete (Content-Length)."""
    with _connect(port) as s:
        s.sendall(raw)
        return _read_answer(s)


def _read_answer(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return data


def _closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (waits up to WAIT_S for it)."""
    s.settimeout(WAIT_S)
    try:
        return _eof(s)
    except TimeoutError:
        return False


HEALTH = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
PARTIAL = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


def _eof(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:  # closed with our partial request unread: also closed
        return True


def test_an_idle_flood_cannot_lock_out_health(caplog: pytest.LogCaptureFixture) -> None:
    limits = ConnectionLimits(max_connections=20, header_timeout_s=60.0)
    flood: list[socket.socket] = []
    try:
        with caplog.at_level(logging.WARNING), guarded_server(limits) as (port, server):
            for i in range(40):  # half say nothing, half send part of a request header
                flood.append(_connect(port))
                if i % 2:
                    flood[-1].sendall(PARTIAL)
            answer = _request(port, HEALTH)
            assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer
            # never more than the cap: 41 arrived, the 21 longest idle ones were closed
            assert len(server.server_state.connections) <= 20
            readable, _, _ = select.select(flood, [], [], 2.0)
            assert len([s for s in readable if _eof(s)]) == 21
            assert _request(port, HEALTH).startswith(b"HTTP/1.1 200")
    finally:
        for s in flood:
            s.close()
    cap_lines = [r for r in caplog.records if "connections open (the cap)" in r.getMessage()]
    assert len(cap_lines) == 1, [r.getMessage() for r in caplog.records]  # logged once
    assert not [r for r in caplog.records if r.exc_info]  # and no traceback


def test_a_request_that_never_finishes_its_headers_is_closed() -> None:
    limits = ConnectionLimits(max_connections=20, header_timeout_s=0.3, keep_alive_s=0.3)
    with guarded_server(limits) as (port, _):
        with _connect(port) as silent, _connect(port) as partial:
            partial.sendall(PARTIAL)
            assert _closed_by_server(silent) and _closed_by_server(partial)
        # a complete request is answered, and the idle keep-alive connection closed after it
        with _connect(port) as s:
            s.sendall(HEALTH)
            assert _read_answer(s).startswith(b"HTTP/1.1 200")
            assert _closed_by_server(s)
        # after one answer, a second request that stalls in its headers is closed too
        with _connect(port) as s:
            s.sendall(HEALTH)
            assert _read_answer(s).startswith(b"HTTP/1.1 200")
            s.sendall(PARTIAL)
            assert _closed_by_server(s)


@pytest.mark.parametrize(
    "content_type", [b"application/json", b"multipart/form-data; boundary=xyz"]
)
def test_a_half_sent_body_gets_408(content_type: bytes) -> None:
    limits = ConnectionLimits(max_connections=20, body_timeout_s=0.3, header_timeout_s=60.0)
    with guarded_server(limits) as (port, _):
        head = (
            b"POST /api/detect HTTP/1.1\r\nHost: localhost\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: 1000\r\n\r\n"
        )  # fmt: skip
        part = (
            b'{"a": [1, 2, '
            if content_type == b"application/json"
            else b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n"
        )
        with _connect(port) as s:
            s.sendall(head + part)  # and then nothing
            answer = _read_answer(s)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"stopped arriving" in answer
            assert _closed_by_server(s)
        assert _request(port, HEALTH).startswith(b"HTTP/1.1 200")


def test_repeated_warnings_are_logged_once_a_minute() -> None:
    now = [0.0]
    flt = RepeatFilter(interval_s=60.0, clock=lambda: now[0])
    logger = logging.getLogger("flakefinder.test.flood")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(flt)
    logger.propagate = False
    try:
        for _ in range(1000):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                logger.error("socket.accept() out of system resource", exc_info=True)
        logger.warning("other news")
        now[0] = 61.0
        logger.error("socket.accept() out of system resource", exc_info=True)
    finally:
        logger.removeFilter(flt)
        logger.removeHandler(handler)
        logger.propagate = True
    messages = [r.getMessage() for r in records]
    assert messages[0] == "socket.accept() out of system resource" and records[0].exc_info
    assert messages[1] == "other news"
    assert messages[2].endswith("(999 more like it in the last 60 s)")
    assert records[2].exc_info is None and len(records) == 3


def test_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(interval_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="flakefinder.server"):
        assert log.warning("cap", "full") and not log.warning("cap", "full")
        assert log.warning("other", "different kind")
        now[0] = 60.0
        assert log.warning("cap", "full")
    assert [r.getMessage() for r in caplog.records] == [
        "full",
        "different kind",
        "full (1 more like it since the last report)",
    ]


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(max_connections=1)
    with pytest.raises(ValueError, match="header_timeout_s"):
        ConnectionLimits(header_timeout_s=0)
    assert ConnectionLimits(max_connections=10**6).within_file_limit().max_connections <= 10**6
