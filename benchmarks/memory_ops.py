"""The server side of ``bench_detect_memory.py`` (and the large image of ``bench_soak.py``).

Each operation starts a fresh server process (``create_app`` under uvicorn with the connection
handling of ``flakefinder serve``, contrast detector, the server's default memory settings),
sends its requests, and reads the server's peak resident memory (``VmHWM`` in
``/proc/PID/status``). Nothing here is imported by the package.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

LARGE_PX = 7000  # the probe's 49-megapixel image
SMALL_PX = 1400  # rendered at 0.2 µm/px, then enlarged 5 x (so 0.04 µm per large pixel)
UM_PER_LARGE_PX = 0.04
MIB = 2**20

# the ceiling each operation must stay under (peak resident memory of the server, MiB)
CEILINGS_MIB = {
    "detect": 768,
    "detect16": 768,
    "batch30": 768,
    "setup60": 512,
    "grow5": 1024,
    "hangup": 768,
}
OPS = tuple(CEILINGS_MIB)


@dataclass(frozen=True)
class LargeImage:
    """A 7000 x 7000 PNG micrograph, its 16-bit grey twin, and points inside its flakes."""

    png: bytes
    png16: bytes
    flake_points: list[tuple[int, int]]  # (x, y) in the large image, largest flakes first


def large_micrograph(seed: int = 0) -> LargeImage:
    """Render a noise-free 1400 x 1400 view of a random graphene chip, enlarge it 5 times."""
    from PIL import Image

    from flakefinder.synth import RenderSettings, random_chip, render_view, view_instances

    chip = random_chip(300.0, 300.0, ("graphene",), flakes_per_mm2=400.0, seed=3 + seed)
    flat = RenderSettings(noise_sigma=0.0, full_well_e=0.0, inhomogeneity=0.0)
    small = render_view(chip, 150.0, 150.0, SMALL_PX, SMALL_PX, 0.2, settings=flat, seed=seed)
    k = LARGE_PX // SMALL_PX
    big = np.repeat(np.repeat(small, k, axis=0), k, axis=1)
    png, png16 = io.BytesIO(), io.BytesIO()
    Image.fromarray(big).save(png, format="PNG", compress_level=9)
    grey16 = big.mean(axis=2).astype(np.uint16) * 257
    Image.fromarray(grey16).save(png16, format="PNG", compress_level=9)
    truth = view_instances(chip, 150.0, 150.0, SMALL_PX, SMALL_PX, 0.2)
    points = []
    for inst in sorted(truth, key=lambda g: -int(g.mask.sum())):
        ys, xs = np.nonzero(inst.mask)
        points.append((int(np.median(xs)) * k + k // 2, int(np.median(ys)) * k + k // 2))
    return LargeImage(png.getvalue(), png16.getvalue(), points)


def serve(port: int, settings: dict[str, object]) -> None:
    """Child process: the server on 127.0.0.1:port (settings unknown to this checkout dropped,
    so that an older checkout runs with its defaults)."""
    import uvicorn

    from flakefinder.server.app import create_app
    from flakefinder.server.settings import ServerSettings

    known = {f.name for f in dataclasses.fields(ServerSettings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in known}
    server_settings = ServerSettings(**values)  # type: ignore[arg-type]
    try:  # as `flakefinder serve` runs it: the guarded h11 protocol, its connection limits
        # (at most half the open-file limit) and flood-proof logging
        from flakefinder.server.connections import quiet_floods, uvicorn_config
    except ImportError:  # a checkout from before the server edges
        uvicorn.run(create_app(server_settings), host="127.0.0.1", port=port, log_level="error")
        return
    server_settings = dataclasses.replace(
        server_settings, limits=server_settings.limits.within_file_limit()
    )
    app = create_app(server_settings)
    config = uvicorn_config(app, "127.0.0.1", port, server_settings.limits, log_level="error")
    with quiet_floods():
        uvicorn.Server(config).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


class Server:
    """A server child process running the code in ``src``."""

    def __init__(self, src: Path, settings: dict[str, object], workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = Path(__file__).resolve().parent / "bench_detect_memory.py"
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
        settings = {"database_url": f"sqlite:///{workdir / 'bench.db'}", **settings}
        cmd = [sys.executable, str(script), "--serve", str(self.port), json.dumps(settings)]
        self.proc = subprocess.Popen(cmd, env=env)
        deadline = time.perf_counter() + 120
        while True:
            try:
                httpx.get(f"{self.url}/api/health", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.perf_counter() > deadline:
                    raise SystemExit("the benchmark server did not start") from None
                time.sleep(0.2)  # polling for start-up, not timing

    def rss_mib(self) -> float:
        return _status_mib(self.proc.pid, "VmRSS")

    def peak_mib(self) -> float:
        return _status_mib(self.proc.pid, "VmHWM")

    def health(self) -> dict[str, object]:
        return dict(httpx.get(f"{self.url}/api/health", timeout=30).json())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Outcome:
    requests: str  # what was sent and what came back
    note: str = ""


def _files(name: str, data: bytes, n: int = 1, field: str = "image") -> list[object]:
    return [(field, (f"{i}-{name}", data, "image/png")) for i in range(n)]


def op_detect(c: httpx.Client, image: LargeImage, sixteen: bool = False) -> Outcome:
    data = image.png16 if sixteen else image.png
    r = c.post("/api/detect", files=_files("large.png", data),
               params={"um_per_px": UM_PER_LARGE_PX})  # fmt: skip
    n = len(r.json().get("flakes", [])) if r.status_code == 200 else 0
    return Outcome(f"1 x {len(data) // 1000} kB: {r.status_code}", f"{n} flakes")


def op_batch(c: httpx.Client, image: LargeImage, server: Server) -> Outcome:
    """A batch of 30; while it runs, one small image from another connection is timed."""
    files = _files("large.png", image.png, 30, "images")
    answer: list[httpx.Response] = []
    batch = threading.Thread(target=lambda: answer.append(
        c.post("/api/detect/batch", files=files, params={"um_per_px": UM_PER_LARGE_PX})))  # fmt: skip
    batch.start()
    waited = 0.0
    while waited < 60 and int(server.health().get("images_decoded", 0)) < 3:  # type: ignore[call-overload]
        time.sleep(0.5)  # polling the server's counter until the batch is well under way
        waited += 0.5
    with httpx.Client(base_url=server.url, timeout=600) as other:
        t = time.perf_counter()
        other.post("/api/detect", files=_files("small.png", _warm_png())).raise_for_status()
        small_s = time.perf_counter() - t
    batch.join()
    r = answer[0]
    note = f"{len(r.json()['results'])} answers" if r.status_code == 200 else r.text[:80]
    note += f"; a small image sent meanwhile: {small_s:.1f} s"
    return Outcome(f"30 x {len(image.png) // 1000} kB: {r.status_code}", note)


def _session(c: httpx.Client, image: LargeImage) -> str:
    base = "/api/setup/sessions/" + c.post("/api/setup/sessions").json()["session"]
    r = c.post(f"{base}/images", files=_files("large.png", image.png))
    r.raise_for_status()
    return base


def op_setup60(c: httpx.Client, image: LargeImage, server: Server) -> Outcome:
    base = _session(c, image)
    before = server.rss_mib()
    codes = set()
    for i in range(60):
        x, y = 20 + 100 * i, 30
        poly = [[x, y], [x + 4, y], [x + 4, y + 4]]
        codes.add(c.post(f"{base}/regions", json={"image_index": 0, "polygon_px": poly}).status_code)
    growth = (server.rss_mib() - before) / 60
    return Outcome(f"upload + 60 outlines: {sorted(codes)}", f"RSS {growth:+.2f} MiB per region")


def op_grow5(c: httpx.Client, image: LargeImage) -> Outcome:
    base = _session(c, image)
    codes: list[int] = []

    def click(point: tuple[int, int]) -> None:
        body = {"image_index": 0, "x_px": point[0], "y_px": point[1]}
        codes.append(c.post(f"{base}/regions", json=body).status_code)

    threads = [threading.Thread(target=click, args=(p,)) for p in image.flake_points[:5]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Outcome(f"upload + 5 simultaneous clicks: {sorted(codes)}")


def op_hangup(image: LargeImage, server: Server) -> Outcome:
    """Send a batch of 30 on a raw socket, close it at once, wait until the server is idle."""
    request = httpx.Request("POST", f"{server.url}/api/detect/batch",
                            files=_files("large.png", image.png, 30, "images"))  # fmt: skip
    body = request.read()
    head = f"POST /api/detect/batch HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "host")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head.encode() + b"\r\n" + body)
    if "images_decoded" not in server.health():
        return Outcome("30 sent, client gone", "(this checkout reports no image counts)")
    last, stable = -1, 0
    while stable < 3:  # idle: nothing decoded or reserved for three polls in a row
        h = server.health()
        now = int(h["images_decoded"])  # type: ignore[call-overload]
        stable = stable + 1 if now == last and not h["image_memory_mb"] else 0
        last = now
        time.sleep(1.0)  # polling the server's counters, not timing
    h = server.health()
    return Outcome("30 sent, client gone", f"{h['images_decoded']} decoded, {h['images_dropped']} dropped")


def run_server_ops(ops: list[str], src: Path, seed: int) -> None:
    """Print the server table for ``ops`` (names from :data:`OPS`)."""
    t0 = time.perf_counter()
    image = large_micrograph(seed)
    print(f"large image: {LARGE_PX} x {LARGE_PX} px, PNG {len(image.png) // 1000} kB"
          f" (16-bit grey {len(image.png16) // 1000} kB); rendered in"
          f" {time.perf_counter() - t0:.0f} s; servers from {src}")  # fmt: skip
    print()
    print("| operation | requests: status | server RSS before (MiB) | peak RSS (MiB) |"
          " ceiling (MiB) | wall (s) | note | status |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|---|")
    runs: dict[str, Callable[[httpx.Client, Server], Outcome]] = {
        "detect": lambda c, s: op_detect(c, image),
        "detect16": lambda c, s: op_detect(c, image, sixteen=True),
        "batch30": lambda c, s: op_batch(c, image, s),
        "setup60": lambda c, s: op_setup60(c, image, s),
        "grow5": lambda c, s: op_grow5(c, image),
        "hangup": lambda c, s: op_hangup(image, s),
    }
    for op in ops:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(src, {"detector": "contrast"}, Path(tmp))
            try:
                with httpx.Client(base_url=server.url, timeout=600) as c:
                    small = c.post("/api/detect", files=_files("warm.png", _warm_png()))
                    small.raise_for_status()  # imports and first call outside the measurement
                    before = server.rss_mib()
                    t = time.perf_counter()
                    outcome = runs[op](c, server)
                    wall = time.perf_counter() - t
                peak = server.peak_mib()
            finally:
                server.close()
        ceiling = CEILINGS_MIB[op]
        verdict = "pass" if peak <= ceiling else "FAIL"
        print(f"| {op} | {outcome.requests} | {before:.0f} | {peak:.0f} | {ceiling} |"
              f" {wall:.1f} | {outcome.note} | {verdict} |")  # fmt: skip


def _warm_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((256, 256, 3), (150, 120, 160), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def many_scan_jpeg(width: int, height: int, extra_scans: int) -> bytes:
    """A progressive JPEG of a flat colour followed by ``extra_scans`` empty DC refinement
    scans (the same construction as ``tests/image_helpers.py``)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), (150, 120, 160), np.uint8)).save(
        buf, format="JPEG", progressive=True, quality=80
    )
    sos = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x00\x03\x00\x00\x00\x10"
    return buf.getvalue()[:-2] + sos * extra_scans + b"\xff\xd9"


def run_decode_times() -> None:
    """Print how long pathological JPEGs take: refused, or decoded at the scan limit."""
    from flakefinder.errors import ImageError
    from flakefinder.imaging import decode_image, jpeg_scans

    print("| JPEG | size | scans | decode_image | result | time (s) |")
    print("|---|---:|---:|---|---|---:|")
    cases = [
        ("7000 x 7000, 3000 empty scans", many_scan_jpeg(LARGE_PX, LARGE_PX, 3000), None),
        ("7000 x 7000, 3000 empty scans", many_scan_jpeg(LARGE_PX, LARGE_PX, 3000), 8_000_000),
        ("7000 x 7000, at the limit", many_scan_jpeg(LARGE_PX, LARGE_PX, 90), None),
        ("7000 x 7000, at the limit", many_scan_jpeg(LARGE_PX, LARGE_PX, 90), 8_000_000),
    ]
    for name, data, work in cases:
        t = time.perf_counter()
        try:
            shape = decode_image(data, max_pixels=work).shape
            result = f"{shape[1]} x {shape[0]} px"
        except ImageError as exc:
            result = "refused: " + str(exc).split(": ", 1)[1][:40] + "..."
        how = "full size" if work is None else f"at {work / 1e6:g} MP"
        print(f"| {name} | {len(data) // 1000} kB | {jpeg_scans(data)} | {how} | {result} |"
              f" {time.perf_counter() - t:.2f} |")  # fmt: skip
