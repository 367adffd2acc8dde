"""Soak test of one server: many clients, mixed valid and invalid requests, for minutes.

Starts the server in a child process the way ``flakefinder serve`` runs it (``create_app`` under
uvicorn with serve's guarded connection handling and flood-proof logging:
``memory_ops.serve``; contrast detector, a small SQLite flake database, an API key, a 2 MB
upload limit, the default memory budget and timeouts), then runs ``--clients`` threads (httpx,
keep-alive) for ``--duration`` seconds. Each client picks requests from a fixed mix (seeded):
browsing and detection with the key, and the probes of the reliability review (no key, wrong
key, cross-origin form posts, designs at 1e15 µm and NaN, absurd pixel sizes, huge offsets and
ids, corrupt images, a zlib TIFF bomb, a chunked upload over the limit). Every request kind has
the status it must get; anything else counts as unexpected, and a 429 counts only with a
``Retry-After``.

Wrong keys come from a guessing machine: every client sends them from a second loopback
address (``--guesser-address``, 127.0.0.2), so the server's per-address back-off (429 after 5
wrong keys in a row) is the expected answer to them once it starts, and the clients at
127.0.0.1 must never be caught in it (their answers stay checked as before). Where the second
address cannot be bound the guesser shares 127.0.0.1; then a keyed request refused while that
address waits (429, "too many wrong API keys", ``Retry-After``) is the back-off working too
and is counted apart.

Large images (issue 14; ``--no-large`` leaves them out): 7000 x 7000 px PNG micrographs (49
megapixels in 270 kB, ``memory_ops.large_micrograph``) sent alone, two in a batch, and to the
Setup page (upload, then a click-to-grow). They must get 200/201, or 429 with ``Retry-After``
when the server's image memory is taken for longer than a request waits (and 404 on the Setup
page when other clients' new sessions pushed this one out of the four a server keeps).

It prints one markdown table: requests/s, latency p50/p95, answers by status code, unexpected
answers, 5xx, 429s (busy, back-off), tracebacks in the server's log, and the server's resident
memory after warm-up and at the end (and its peak), with the goals: zero 5xx, zero unexpected
answers, the wrong keys refused with 429 once the back-off starts, no traceback, end RSS within
10 % of the warm RSS (warm-up: 60 s with large images, 10 s without), peak RSS (``VmHWM``) under
``--ceiling-mib`` (2048).

    .venv/bin/python benchmarks/bench_soak.py [--duration 120] [--clients 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import numpy as np

KEY = "soak-test-key"
UPLOAD_LIMIT_MB = 2.0
GOAL_RSS_GROWTH = 0.10
WARMUP_S = 10.0
WARMUP_LARGE_S = 60.0  # with large images: long enough for several of them to be detected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _populate(url: str) -> None:
    """A chip, one finished scan of one tile, 40 flakes (squares of known size)."""
    from flakefinder.db import Database
    from flakefinder.domain import FlakeRecord, LayerClass, TileRecord

    db = Database(url)
    db.migrate()
    chip = db.add_chip("soak", ["graphene", "hBN"], 90.0)
    scan = db.start_scan(
        chip,
        settings={},
        objective="sim",
        um_per_px=0.5,
        detector="soak",
        detector_version="1",
        n_tiles_planned=1,
    )
    records = []
    for k in range(40):
        x0, y0, size = 10.0 + 20 * (k % 8), 10.0 + 20 * (k // 8), 4.0 + k % 7
        poly = ((x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size))
        records.append(
            FlakeRecord(
                material="graphene" if k % 3 else "hBN",
                layer_class=LayerClass.FEW,
                confidence=0.5 + k / 100,
                polygon_um=poly,
                bbox_um=(x0, y0, x0 + size, y0 + size),
                area_um2=size * size,
                polygon_px=tuple((2 * x, 2 * y) for x, y in poly),
                bbox_px=(2 * x0, 2 * y0, 2 * (x0 + size), 2 * (y0 + size)),
                detector="soak",
                detector_version="1",
                layer_count=2 + k % 5,
                tile_index=0,
            )
        )
    db.record_tile(scan, TileRecord(0, 100.0, 100.0, 0.0, 400, 400, 0.5, None), records)
    db.finish_scan(scan)
    db.save_design("good", [{"flake_id": 1}, {"flake_id": 2, "order": 1}])
    db.save_design("stored bad", [{"flake_id": 1}, {"flake_id": 2, "x_um": 1e15, "order": 1}])
    db.close()


def _serve(port: int, url: str) -> None:
    """Child process: the server on 127.0.0.1:port until killed (as ``flakefinder serve``)."""
    from memory_ops import serve

    settings: dict[str, object] = {
        "detector": "contrast",
        "materials": ["graphene"],
        "database_url": url,
        "api_key": KEY,
        "max_upload_mb": UPLOAD_LIMIT_MB,
    }
    serve(port, settings)


def can_bind(address: str) -> bool:
    """Whether this machine lets a client socket use ``address`` as its source."""
    try:
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def is_backoff(r: httpx.Response) -> bool:
    """A 429 of the wrong-key back-off (with its Retry-After)."""
    limited = r.status_code == 429 and "retry-after" in r.headers
    return limited and "too many wrong API keys" in r.text


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _tiff_bomb() -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8192, 8192), np.uint8), compression="zlib")
    return buf.getvalue()


@dataclass(frozen=True)
class Kind:
    """One kind of request: its name, weight in the mix, expected status and how to send it."""

    name: str
    weight: int
    expect: int
    send: Callable[[httpx.Client], httpx.Response]
    also_ok: tuple[int, ...] = ()  # other acceptable answers (429 only with Retry-After)
    guesser: bool = False  # sent from the guessing machine's address, not the clients'


def large_kinds(large_png: bytes, points: list[tuple[int, int]]) -> list[Kind]:
    """Requests with 49-megapixel images: detect, a batch of two, the Setup page's grow."""
    key = {"X-API-Key": KEY}

    def batch(c: httpx.Client) -> httpx.Response:
        files = [("images", (f"{i}.png", large_png, "image/png")) for i in range(2)]
        return c.post("/api/detect/batch", files=files, headers=key)

    def setup_grow(c: httpx.Client) -> httpx.Response:
        r = c.post("/api/setup/sessions", headers=key)
        if r.status_code != 201:
            return r
        base = f"/api/setup/sessions/{r.json()['session']}"
        files = {"image": ("large.png", large_png, "image/png")}
        r = c.post(f"{base}/images", files=files, headers=key)
        if r.status_code != 201:
            return r
        x, y = points[0]
        return c.post(f"{base}/regions", json={"image_index": 0, "x_px": x, "y_px": y},
                      headers=key)  # fmt: skip

    return [
        Kind(
            "detect 7000 px",
            1,
            200,
            lambda c: c.post("/api/detect", files={"image": ("l.png", large_png)}, headers=key),
            (429,),  # busy: the image memory is taken, try again after Retry-After
        ),
        Kind("batch of 2 x 7000 px", 1, 200, batch, (429,)),
        # 404: another client's new session pushed this one out (a server keeps the last 4)
        Kind("setup page 7000 px + grow", 1, 201, setup_grow, (429, 404)),
    ]


def request_mix(micrograph: bytes, bomb: bytes) -> list[Kind]:
    """The requests the clients draw from (valid with the key, and the review's probes)."""
    key = {"X-API-Key": KEY}
    evil = {"X-API-Key": KEY, "Origin": "http://evil.example"}
    good_layers = {"layers": [{"flake_id": 1}, {"flake_id": 2, "x_um": 3.0, "order": 1}]}

    def files(data: bytes, name: str = "tile.png") -> dict[str, tuple[str, bytes, str]]:
        return {"image": (name, data, "application/octet-stream")}

    def chunked_over_limit(c: httpx.Client) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
            for _ in range(int(UPLOAD_LIMIT_MB * 4) + 4):  # 256 KiB chunks, 1 MiB past the limit
                yield b"\0" * (256 * 1024)

        headers = {**key, "Content-Type": "multipart/form-data; boundary=b"}
        return c.post("/api/detect", content=body(), headers=headers)

    return [
        Kind("health", 4, 200, lambda c: c.get("/api/health")),
        Kind("list flakes", 8, 200, lambda c: c.get("/api/flakes?limit=20", headers=key)),
        Kind("one flake", 6, 200, lambda c: c.get("/api/flakes/3", headers=key)),
        Kind("gallery page", 4, 200, lambda c: c.get("/flakes?material=graphene", headers=key)),
        Kind("design", 3, 200, lambda c: c.get("/api/designs/1", headers=key)),
        Kind("stored bad design", 2, 200, lambda c: c.get("/api/designs/2", headers=key)),
        Kind(
            "preview",
            4,
            200,
            lambda c: c.post("/api/designs/preview", json=good_layers, headers=key),
        ),
        Kind(
            "set status",
            2,
            200,
            lambda c: c.post("/api/flakes/5/status", json={"status": "candidate"}, headers=key),
        ),
        Kind(
            "detect 256 px",
            6,
            200,
            lambda c: c.post("/api/detect", files=files(micrograph), headers=key),
        ),
        Kind("no key", 3, 401, lambda c: c.get("/api/flakes")),
        Kind(  # 429 once the guesser's address is in its back-off (5 wrong keys in a row)
            "wrong key",
            2,
            401,
            lambda c: c.get("/api/chips", headers={"X-API-Key": "nope"}),
            (429,),
            guesser=True,
        ),
        Kind(
            "write without key",
            2,
            401,
            lambda c: c.post("/flakes/5", data={"status": "used"}),
        ),
        Kind(
            "cross-origin form",
            2,
            403,
            lambda c: c.post("/flakes/5", data={"status": "used"}, headers=evil),
        ),
        Kind(
            "design x 1e15",
            2,
            422,
            lambda c: c.post(
                "/api/designs/preview",
                json={"layers": [{"flake_id": 1}, {"flake_id": 2, "x_um": 1e15}]},
                headers=key,
            ),
        ),
        Kind(
            "design NaN",
            2,
            422,
            lambda c: c.post(
                "/api/designs",
                json={"name": "n", "layers": [{"flake_id": 1, "x_um": "NaN"}]},
                headers=key,
            ),
        ),
        Kind(
            "um_per_px 1e-300",
            2,
            422,
            lambda c: c.post("/api/detect?um_per_px=1e-300", files=files(micrograph), headers=key),
        ),
        Kind(
            "huge offset",
            2,
            422,
            lambda c: c.get("/api/flakes?offset=99999999999999999999", headers=key),
        ),
        Kind("huge id", 2, 422, lambda c: c.get("/api/flakes/99999999999999999999", headers=key)),
        Kind("chip=abc", 2, 400, lambda c: c.get("/flakes?chip=abc", headers=key)),
        Kind("missing flake", 2, 404, lambda c: c.get("/api/flakes/999999", headers=key)),
        Kind(
            "corrupt image",
            2,
            400,
            lambda c: c.post("/api/detect", files=files(b"\x89PNG garbage"), headers=key),
        ),
        Kind(
            "TIFF bomb",
            1,
            400,
            lambda c: c.post("/api/detect", files=files(bomb, "bomb.tif"), headers=key),
        ),
        Kind("chunked over limit", 1, 413, chunked_over_limit),
    ]


@dataclass
class Tally:
    """What the clients saw (shared; guarded by ``lock``)."""

    lock: threading.Lock
    latencies_s: list[float]
    statuses: Counter[int]
    by_kind: Counter[tuple[str, int]]  # (kind, status)
    busy: Counter[str]  # 429 + Retry-After on a large image: memory taken, try again
    backoff: Counter[str]  # 429 + Retry-After on a wrong key: the guesser's back-off
    caught: Counter[str]  # keyed requests refused while a shared address waited (see above)
    unexpected: Counter[str]
    transport_errors: Counter[str]


@dataclass(frozen=True)
class Addresses:
    """Where the clients' requests come from, and the guessing machine's."""

    guesser: str  # source address of the wrong keys
    shared: bool  # the guesser shares the clients' address (no second loopback address)


def judge(kind: Kind, r: httpx.Response, addresses: Addresses, tally: Tally) -> None:
    """Count ``r``, the answer to ``kind``, in ``tally`` (the caller holds its lock)."""
    status = r.status_code
    tally.statuses[status] += 1
    tally.by_kind[kind.name, status] += 1
    if status == 429 and "retry-after" not in r.headers:
        tally.unexpected[f"{kind.name}: 429 without Retry-After"] += 1
    elif addresses.shared and not kind.guesser and is_backoff(r) and status != kind.expect:
        tally.caught[kind.name] += 1
    elif status != kind.expect and status not in kind.also_ok:
        tally.unexpected[f"{kind.name}: {status} (want {kind.expect})"] += 1
    elif status == 429 and kind.guesser:
        if is_backoff(r):
            tally.backoff[kind.name] += 1
        else:
            tally.unexpected[f"{kind.name}: 429 not of the back-off: {r.text[:80]}"] += 1
    elif status == 429:
        tally.busy[kind.name] += 1


def client_loop(
    url: str, kinds: list[Kind], seed: int, stop_at: float, tally: Tally, addresses: Addresses
) -> None:
    """One client: draw a request kind, send it, record status and latency, until ``stop_at``."""
    rng = random.Random(seed)
    weights = [k.weight for k in kinds]
    guessing = httpx.HTTPTransport(local_address=addresses.guesser)
    with (
        httpx.Client(base_url=url, timeout=300) as client,
        httpx.Client(base_url=url, timeout=300, transport=guessing) as guesser,
    ):
        while time.perf_counter() < stop_at:
            kind = rng.choices(kinds, weights)[0]
            t0 = time.perf_counter()
            try:
                r = kind.send(guesser if kind.guesser else client)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.transport_errors[f"{kind.name}: {type(exc).__name__}"] += 1
                continue
            dt = time.perf_counter() - t0
            with tally.lock:
                tally.latencies_s.append(dt)
                judge(kind, r, addresses, tally)


def rss_mb(pid: int) -> float:
    """Resident memory of the process ``pid`` (MiB)."""
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the process ``pid`` since it started (MiB, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    """Run the soak test and print its table; exit code 1 if a goal is missed."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (after warm-up)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-large", action="store_true", help="leave out the 49-megapixel images")
    ap.add_argument("--ceiling-mib", type=float, default=2048.0, help="peak server RSS allowed")
    ap.add_argument(
        "--guesser-address",
        default="127.0.0.2",
        help="source address of the wrong-key requests (127.0.0.1 where no other can be bound)",
    )
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "DB_URL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        _serve(int(args.serve[0]), args.serve[1])
        return 0
    if args.duration <= 0 or args.clients < 1:
        ap.error("--duration must be > 0 and --clients >= 1")

    from flakefinder.synth import random_chip, render_view

    workdir = tempfile.TemporaryDirectory(prefix="flakefinder-soak-")
    db_url = f"sqlite:///{Path(workdir.name) / 'soak.db'}"
    _populate(db_url)
    chip = random_chip(300.0, 300.0, ("graphene",), flakes_per_mm2=200.0, seed=args.seed)
    micrograph = _png(render_view(chip, 150.0, 150.0, 256, 256, 0.2, seed=args.seed))
    kinds = request_mix(micrograph, _tiff_bomb())
    if not args.no_large:
        from memory_ops import large_micrograph

        large = large_micrograph(args.seed)
        kinds += large_kinds(large.png, large.flake_points)

    guesser = args.guesser_address if can_bind(args.guesser_address) else "127.0.0.1"
    addresses = Addresses(guesser, shared=guesser == "127.0.0.1")
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", str(port), db_url]
    server_log = Path(workdir.name) / "server.log"
    with server_log.open("wb") as log:  # the child keeps its own handle
        proc = subprocess.Popen(
            cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.perf_counter() + 120
        while True:
            try:
                httpx.get(f"{url}/api/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise SystemExit("the server process exited") from None
                if time.perf_counter() > deadline:
                    raise SystemExit(f"no server at {url}") from None
                time.sleep(0.2)  # polling for start-up, not timing
        rss_start_mb = rss_mb(proc.pid)

        def run(seconds: float, tally: Tally) -> float:
            stop_at = time.perf_counter() + seconds
            threads = [
                threading.Thread(
                    target=client_loop,
                    args=(url, kinds, args.seed * 1000 + i, stop_at, tally, addresses),
                )
                for i in range(args.clients)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - t0

        def new_tally() -> Tally:
            return Tally(threading.Lock(), [], *(Counter() for _ in range(7)))

        warm = new_tally()
        warmup_s = WARMUP_S if args.no_large else WARMUP_LARGE_S
        run(warmup_s, warm)  # imports, first detector calls, allocator pools
        rss_warm_mb = rss_mb(proc.pid)
        tally = new_tally()
        peak = [rss_warm_mb]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(1.0):
                peak[0] = max(peak[0], rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        wall = run(args.duration, tally)
        sampling.set()
        sampler.join()
        rss_end_mb = rss_mb(proc.pid)
        peak[0] = max(peak[0], peak_rss_mb(proc.pid))  # the kernel's high-water mark
        alive = httpx.get(f"{url}/api/health", timeout=10).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_lines = server_log.read_text(errors="replace").splitlines()
        workdir.cleanup()

    n = len(tally.latencies_s)
    n_busy = sum(tally.busy.values())
    n_backoff = sum(tally.backoff.values()) + sum(tally.caught.values())
    n_5xx = sum(v for k, v in tally.statuses.items() if k >= 500)
    n_tracebacks = sum(line.startswith("Traceback") for line in log_lines)
    growth = (rss_end_mb - rss_warm_mb) / rss_warm_mb
    ok = n_5xx == 0 and not tally.unexpected and not tally.transport_errors and alive
    backoff_seen = n_backoff > 0 or addresses.shared  # shared: 5 wrong in a row are rare
    ok = ok and backoff_seen and n_tracebacks == 0
    ok = ok and growth <= GOAL_RSS_GROWTH and peak[0] <= args.ceiling_mib
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items()))
    print(
        f"soak: {args.clients} clients, {args.duration:g} s after {warmup_s:g} s warm-up,"
        f" {len(kinds)} request kinds (seed {args.seed}), cpus {os.cpu_count()},"
        f" load {os.getloadavg()[0]:.1f}; wrong keys from {addresses.guesser}"
        + (" (shared with the clients)" if addresses.shared else "")
    )
    print()
    print("| measure | value | goal | status |")
    print("|---|---:|---|---|")
    print(f"| requests | {n} |  |  |")
    print(f"| requests/s | {n / wall:.1f} |  |  |")
    if n:
        p50 = statistics.median(tally.latencies_s) * 1e3
        p95 = percentile(tally.latencies_s, 0.95) * 1e3
        print(f"| latency p50 / p95 | {p50:.0f} ms / {p95:.0f} ms |  |  |")
    print(f"| answers by status | {codes} |  |  |")
    print(f"| 5xx | {n_5xx} | 0 | {'pass' if n_5xx == 0 else 'FAIL'} |")
    if not args.no_large:
        print(f"| busy: 429 with Retry-After (large images) | {n_busy} |  |  |")
    wrong = ", ".join(
        f"{code}: {count}"
        for (name, code), count in sorted(tally.by_kind.items())
        if name == "wrong key"
    )
    print(
        f"| wrong keys (from {addresses.guesser}) | {wrong} | 429 with Retry-After after 5"
        f" | {'pass' if n_backoff else 'not required: shared' if backoff_seen else 'FAIL'} |"
    )
    if addresses.shared:
        caught = sum(tally.caught.values())
        print(f"| keyed requests refused in the shared address's back-off | {caught} |  |  |")
    print(
        f"| tracebacks in the server's log (of {len(log_lines)} lines) | {n_tracebacks} | 0"
        f" | {'pass' if n_tracebacks == 0 else 'FAIL'} |"
    )
    n_bad = sum(tally.unexpected.values()) + sum(tally.transport_errors.values())
    print(
        f"| unexpected answers / transport errors | {n_bad} | 0 | {'pass' if not n_bad else 'FAIL'} |"
    )
    print(
        f"| server RSS at start / after warm-up | {rss_start_mb:.0f} / {rss_warm_mb:.0f} MiB |  |  |"
    )
    print(
        f"| server RSS end (peak) | {rss_end_mb:.0f} MiB ({peak[0]:.0f}) | within 10 % of warm"
        f" | {'pass' if growth <= GOAL_RSS_GROWTH else 'FAIL'} ({growth:+.1%}) |"
    )
    under = peak[0] <= args.ceiling_mib
    print(
        f"| server peak RSS | {peak[0]:.0f} MiB | at most {args.ceiling_mib:.0f} MiB"
        f" | {'pass' if under else 'FAIL'} |"
    )
    print(f"| server alive after | {alive} | True | {'pass' if alive else 'FAIL'} |")
    for line in sorted(set(log_lines))[:10]:
        print(f"server log: {line}")
    for label, counter in (("unexpected", tally.unexpected), ("transport", tally.transport_errors)):
        for what, count in counter.most_common(10):
            print(f"{label}: {what} x{count}")
    print(json.dumps({"requests_per_s": round(n / wall, 2), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
