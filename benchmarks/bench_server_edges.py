"""The server's edges as a client sees them: an idle-connection flood, slow headers and bodies,
guessed keys, a foreign Host name and the security headers.

Starts ``flakefinder serve --detector none --api-key ...`` (the real command: its uvicorn, its
connection handling and its logging) in a child process on 127.0.0.1, then:

* opens ``--flood`` idle connections (half send nothing, half part of a request header) and
  asks ``/api/health`` on fresh connections while they are open: answer times, how many of the
  idle ones the server closed, and how many lines the server logged for the whole flood;
* times how long a connection that sends nothing, one that stops in its headers, and one that
  stops in its body stay open (the header and body timeouts), and what the last one is told;
* sends wrong API keys one after another: how many are answered 401 before the 429s start, and
  the ``Retry-After`` of the first 429;
* sends ``Host: evil.example`` and lists the security headers of an answer.

    .venv/bin/python benchmarks/bench_server_edges.py [--flood 2000] [--max-connections 512]
        [--header-timeout 10] [--body-timeout 30]

Prints one markdown table. The flood needs as many open files as ``--flood`` plus a little
(``ulimit -n``).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, raw: bytes, timeout_s: float = 30.0) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data, time.perf_counter() - t0


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def _header(answer: bytes, name: bytes) -> str:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    return ""


def _open_for(port: int, payload: bytes, limit_s: float) -> tuple[float, bytes]:
    """Seconds until the server closes a connection that sent ``payload``, and what it said."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        if payload:
            s.sendall(payload)
        said = b""
        try:
            while chunk := s.recv(65536):
                said += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return time.perf_counter() - t0, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--body-timeout", type=float, default=30.0)
    args = parser.parse_args()

    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLAKEFINDER_API_KEY": KEY}
    server = subprocess.Popen(
        [
            sys.executable, "-m", "flakefinder.cli.main", "serve", "--detector", "none",
            "--port", str(port), "--max-connections", str(args.max_connections),
            "--header-timeout", str(args.header_timeout),
            "--body-timeout", str(args.body_timeout),
        ],  # fmt: skip
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    health = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    rows: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _status(_request(port, health, 2.0)[0]) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start; see " + log.name)
            time.sleep(0.2)

        # timeouts, each on its own connection, before the flood (which would close them first)
        timings: dict[str, tuple[float, bytes]] = {}
        body_head = (
            b"POST /api/designs HTTP/1.1\r\nHost: localhost\r\nX-API-Key: " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": "
        )  # fmt: skip
        cases = {
            "silent": b"",
            "headers": b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
            "body": body_head,
        }
        limit = 3 * max(args.header_timeout, args.body_timeout) + 10

        def measure(name: str, payload: bytes) -> None:
            timings[name] = _open_for(port, payload, limit)

        waiters = [threading.Thread(target=measure, args=item) for item in cases.items()]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join()
        for name, label, limit_s in (
            ("silent", "connection that sends nothing: closed after", args.header_timeout),
            ("headers", "request stalled in its headers: closed after", args.header_timeout),
            ("body", "request stalled in its body: closed after", args.body_timeout),
        ):
            seconds, said = timings[name]
            told = f", answered {_status(said)}" if said else ", no answer"
            rows.append((label, f"{seconds:.1f} s (configured {limit_s:g} s){told}"))

        # the flood
        log_lines_before = len(Path(log.name).read_text().splitlines())
        flood: list[socket.socket] = []
        for i in range(args.flood):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            if i % 2:
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            flood.append(s)
        answers = [_request(port, health) for _ in range(20)]
        closed = 0
        for s in flood:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        times_ms = sorted(1e3 * t for _, t in answers)
        ok = sum(_status(a) == 200 for a, _ in answers)
        for s in flood:
            s.close()
        flood_log = [
            line
            for line in Path(log.name).read_text().splitlines()[log_lines_before:]
            if '"GET /api/health HTTP/1.1" 200' not in line  # the access lines of the 20 checks
        ]
        shown = " / ".join(f"`{line[:100]}`" for line in flood_log[:3])
        rows += [
            ("idle flood", f"{args.flood} connections, cap {args.max_connections}"),
            (
                "/api/health during the flood",
                f"{ok}/20 answered 200, p50 {statistics.median(times_ms):.1f} ms,"
                f" max {times_ms[-1]:.1f} ms",
            ),
            ("idle connections closed by the server", f"{closed} of {args.flood}"),
            ("server log lines for the flood", f"{len(flood_log)}: {shown}"),
        ]

        # guessing
        wrong = b"GET /api/flakes HTTP/1.1\r\nHost: localhost\r\nX-API-Key: wrong\r\n\r\n"
        statuses, retry = [], ""
        for _ in range(10):
            answer, _ = _request(port, wrong)
            statuses.append(_status(answer))
            if statuses[-1] == 429 and not retry:
                retry = _header(answer, b"retry-after")
        first_429 = statuses.index(429) if 429 in statuses else -1
        rows.append(("wrong API keys", f"{first_429} answered 401, then 429 (Retry-After {retry} s)"))

        # Host and headers
        evil, _ = _request(port, b"GET /api/health HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        rows.append(("Host: evil.example", str(_status(evil))))
        ok_answer, _ = _request(port, health)
        for name in (b"content-security-policy", b"x-frame-options", b"x-content-type-options",
                     b"referrer-policy"):  # fmt: skip
            rows.append((name.decode(), f"`{_header(ok_answer, name)}`"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if os.environ.get("BENCH_KEEP_LOG"):
            print("server log:", log.name)
        else:
            Path(log.name).unlink(missing_ok=True)
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
