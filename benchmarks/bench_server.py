"""Benchmark the inference server: throughput, latency and the share of time outside the model.

Starts ``flakefinder.server.app.create_app(ServerSettings(detector="contrast", materials=("graphene",)))``
under a real uvicorn in a child process (so the clients do not share its GIL), renders one synthetic
1024 x 1024 micrograph (``flakefinder.synth``), and POSTs it to ``/api/detect`` from 1, 4 and 16
concurrent clients (httpx, one thread each). Per concurrency it prints a markdown row with:

* requests/s and client latency p50 / p95;
* model ms/img: detector time per image (a batch's ``timing.model_ms`` divided by its ``batch_size``);
* server outside model: share of the server's request time (``timing.total_ms``) not spent waiting
  for or inside the detector, i.e. reading the upload, decoding it and building the answer
  (``(total_ms - queue_ms - model_ms) / total_ms``); goal <= 10 %;
* client outside model: the same share of the latency the client sees (adds HTTP, multipart parsing
  and JSON serialization);
* model busy: detector time / wall time. At saturation (more clients than cores) 100 % minus this is
  the throughput lost to everything that is not the model.

    .venv/bin/python benchmarks/bench_server.py [--requests 40] [--clients 1,4,16] [--format png]

The client and the server share this machine's cores, so at high concurrency the clients' own work
(upload, JSON parsing) competes with the server.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx
import numpy as np

from flakefinder.synth import random_chip, render_view

TILE_PX = 1024
UM_PER_PX = 0.2
GOAL_OUTSIDE = 0.10


def _serve(port: int, max_batch: int) -> None:
    """Child process: the contrast-detector server on 127.0.0.1:port until killed."""
    import uvicorn

    from flakefinder.server.app import create_app
    from flakefinder.server.settings import ServerSettings

    settings = ServerSettings(
        detector="contrast", materials=("graphene",), um_per_px=UM_PER_PX, max_batch=max_batch
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def micrograph(seed: int) -> np.ndarray:
    """A 1024 x 1024 synthetic graphene micrograph with several flakes in view."""
    view_um = TILE_PX * UM_PER_PX
    chip = random_chip(3 * view_um, 3 * view_um, ["graphene"], flakes_per_mm2=300.0, seed=seed)
    return render_view(chip, 1.5 * view_um, 1.5 * view_um, TILE_PX, TILE_PX, UM_PER_PX, seed=seed)


def encode(image: np.ndarray, fmt: str) -> tuple[str, bytes, str]:
    buf = io.BytesIO()
    if fmt == "png":
        from PIL import Image

        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
        return "tile.png", buf.getvalue(), "image/png"
    if fmt == "tiff":
        import tifffile

        tifffile.imwrite(buf, image)
        return "tile.tif", buf.getvalue(), "image/tiff"
    raise SystemExit(f"unknown --format {fmt!r} (png or tiff)")


@dataclass
class Sample:
    latency_ms: float
    total_ms: float
    queue_ms: float
    model_ms: float
    batch_size: int
    n_flakes: int


def run_level(
    url: str, upload: tuple[str, bytes, str], clients: int, n_requests: int
) -> tuple[list[Sample], float]:
    """``n_requests`` POSTs shared by ``clients`` threads; returns the samples and the wall time."""
    samples: list[Sample] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300.0) as client:
            client.get("/api/health")  # open the connection before the clock starts
            barrier.wait()
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                t0 = time.perf_counter()
                r = client.post("/api/detect", files={"image": upload})
                latency = (time.perf_counter() - t0) * 1e3
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                    continue
                body = r.json()
                t = body["timing"]
                s = Sample(
                    latency,
                    t["total_ms"],
                    t["queue_ms"],
                    t["model_ms"],
                    body["batch_size"],
                    len(body["flakes"]),
                )
                with lock:
                    samples.append(s)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, first: {errors[0]}")
    return samples, wall


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def row(clients: int, samples: list[Sample], wall: float) -> tuple[str, float]:
    n = len(samples)
    model_per_img = sum(s.model_ms / s.batch_size for s in samples)  # each batch counted once
    waiting = sum(s.queue_ms + s.model_ms for s in samples)
    total = sum(s.total_ms for s in samples)
    latency = [s.latency_ms for s in samples]
    server_out = (total - waiting) / total
    client_out = (sum(latency) - waiting) / sum(latency)
    busy = model_per_img / 1e3 / wall
    cells = [
        f"{clients}",
        f"{n}",
        f"{n / wall:.2f}",
        f"{percentile(latency, 50):.0f}",
        f"{percentile(latency, 95):.0f}",
        f"{model_per_img / n:.0f}",
        f"{statistics.mean(s.batch_size for s in samples):.1f}",
        f"{100 * server_out:.1f} %",
        f"{100 * client_out:.1f} %",
        f"{100 * busy:.0f} %",
        "yes" if server_out <= GOAL_OUTSIDE else "**no**",
    ]
    return "| " + " | ".join(cells) + " |", server_out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    ap.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    ap.add_argument("--format", default="png", help="upload format: png or tiff")
    ap.add_argument("--max-batch", type=int, default=8, help="ServerSettings.max_batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--url", help="benchmark a running server instead of starting one")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.max_batch)
        return 0
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.requests < 1 or not levels or min(levels) < 1:
        ap.error("--requests and every --clients level must be at least 1")

    t0 = time.perf_counter()
    upload = encode(micrograph(args.seed), args.format)
    print(
        f"micrograph: {TILE_PX}x{TILE_PX} px synthetic graphene, {args.format} "
        f"{len(upload[1]) / 1e6:.2f} MB (rendered in {time.perf_counter() - t0:.1f} s)"
    )

    proc: subprocess.Popen[bytes] | None = None
    url = args.url
    if url is None:
        port = _free_port()
        cmd = [sys.executable, __file__, "--serve", str(port), "--max-batch", str(args.max_batch)]
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.perf_counter() + 120
        while True:
            try:
                health = httpx.get(f"{url}/api/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if proc is not None and proc.poll() is not None:
                    raise SystemExit("the server process exited") from None
                if time.perf_counter() > deadline:
                    raise SystemExit(f"no server at {url}") from None
                time.sleep(0.2)  # polling for start-up, not timing
        print(f"server: {url}, detector {health['detector']}, cpus {os.cpu_count()}")
        run_level(url, upload, 1, 2)  # warm-up: imports, first model call

        header = (
            "| clients | requests | req/s | p50 ms | p95 ms | model ms/img | mean batch "
            "| server outside model | client outside model | model busy | ≤ 10 % |"
        )
        print()
        print(header)
        print("|" + "---:|" * (header.count("|") - 1), flush=True)
        worst = 0.0
        for clients in levels:
            samples, wall = run_level(url, upload, clients, max(args.requests, clients))
            text, outside = row(clients, samples, wall)
            worst = max(worst, outside)
            print(text, flush=True)
        flakes = {s.n_flakes for s in samples}
        print(
            f"\nflakes per image: {sorted(flakes)}; worst server share outside the model "
            f"{100 * worst:.1f} % (goal ≤ {100 * GOAL_OUTSIDE:.0f} %)"
        )
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
