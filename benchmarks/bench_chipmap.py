"""Chip map benchmark: page load and viewport queries on a chip with 50,000 (or 500,000) flakes.

Fills a temporary SQLite database (WAL) with one chip of ``--flakes`` flakes (12-vertex outlines,
2–40 µm, uniformly spread over a ``--chip-mm`` square chip scanned as 1 mm tiles without image
files), then serves the web UI from ``create_app`` and times, in process (``TestClient``: no
network, no browser), the requests the map page makes:

* ``GET /chips/1`` (the page, with the first view rendered in it), ``/chips/1/mosaic.png`` and
  the coarsest mosaic tile ``/chips/1/mosaic/0/0/0.png``;
* ``GET /api/chips/1/map`` for views of the whole chip, 1/4, 1/16 and one 200 µm field, for pans
  of a zoomed-in view across the chip, and with a material filter.

Each row gives the median and maximum wall time over ``--repeats`` requests, the response size and
what came back (flakes or clusters). With ``--browser`` it also opens the page in headless chromium
(Playwright, Debian's chromium) and times navigation until the first flakes or clusters are drawn.

    .venv/bin/python benchmarks/bench_chipmap.py                  # 50k flakes
    .venv/bin/python benchmarks/bench_chipmap.py --flakes 500000  # the issue's 500k
    .venv/bin/python benchmarks/bench_chipmap.py --browser        # plus chromium page load
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

MATERIALS = ("graphene", "hBN", "MoS2", "WTe2")
TILE_UM = 1000.0
BATCH = 20_000


def fill(url: str, n_flakes: int, chip_mm: float, seed: int) -> None:
    """One chip, one finished scan of 1 mm tiles (no files), ``n_flakes`` random flakes."""
    import numpy as np
    from sqlalchemy import insert

    from flakefinder.db import Database
    from flakefinder.db.models import FlakeRow, ImageRow, ScanRow, utcnow

    rng = np.random.default_rng(seed)
    db = Database(url)
    db.migrate()
    chip = db.add_chip("bench-chip", list(MATERIALS), 90.0)
    scan = db.start_scan(
        chip,
        settings={},
        objective="20x",
        um_per_px=0.5,
        detector="bench",
        detector_version="1",
        n_tiles_planned=1,
    )
    side_um = chip_mm * 1000.0
    n_side = max(1, math.ceil(side_um / TILE_UM))
    now = utcnow()
    with db.session() as s:
        s.execute(
            insert(ImageRow),
            [
                {
                    "scan_id": scan,
                    "tile_index": i * n_side + j,
                    "x_um": (j + 0.5) * TILE_UM,
                    "y_um": (i + 0.5) * TILE_UM,
                    "z_um": 0.0,
                    "width_px": 2000,
                    "height_px": 2000,
                    "um_per_px": TILE_UM / 2000,
                    "file_path": None,
                    "acquired_at": now,
                }
                for i in range(n_side)
                for j in range(n_side)
            ],
        )
        s.get(ScanRow, scan).status = "finished"  # type: ignore[union-attr]
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for start in range(0, n_flakes, BATCH):
        k = min(BATCH, n_flakes - start)
        cx = rng.uniform(0, side_um, k)
        cy = rng.uniform(0, side_um, k)
        r = rng.uniform(1, 20, k)
        mats = rng.integers(0, len(MATERIALS), k)
        rows = []
        for i in range(k):
            xs, ys = cx[i] + r[i] * np.cos(angles), cy[i] + r[i] * 0.7 * np.sin(angles)
            poly = [[round(float(x), 3), round(float(y), 3)] for x, y in zip(xs, ys, strict=True)]
            rows.append(
                {
                    "scan_id": scan,
                    "image_id": None,
                    "chip_id": chip,
                    "material": MATERIALS[int(mats[i])],
                    "layer_class": "few",
                    "layer_count": 3,
                    "confidence": 0.9,
                    "polygon_um": poly,
                    "polygon_px": poly,
                    "bbox_x_min_um": float(xs.min()),
                    "bbox_y_min_um": float(ys.min()),
                    "bbox_x_max_um": float(xs.max()),
                    "bbox_y_max_um": float(ys.max()),
                    "bbox_px": [0.0, 0.0, 1.0, 1.0],
                    "area_um2": float(np.pi * r[i] * r[i] * 0.7),
                    "centroid_x_um": float(cx[i]),
                    "centroid_y_um": float(cy[i]),
                    "contrast_rgb": None,
                    "detector": "bench",
                    "detector_version": "1",
                    "status": "new",
                    "notes": "",
                    "created_at": now,
                }
            )
        with db.session() as s:
            s.execute(insert(FlakeRow), rows)
    db.close()


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median and max wall time (ms) of ``fn`` and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), max(times), out


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """``app`` on a real uvicorn at 127.0.0.1 (free port) in a thread; yields the base URL."""
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def browser_load_ms(app: Any, repeats: int) -> list[float] | str:
    """Chromium navigation to the map until the first flake or cluster is drawn (ms each)."""
    chromium = os.environ.get("FLAKEFINDER_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        return "no chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "no playwright"
    out = []
    with uvicorn_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        for _ in range(repeats):
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(f"{url}/chips/1")
            page.wait_for_selector("#chipmap .flake-outline, #chipmap .cluster", timeout=20_000)
            page.wait_for_load_state("load")
            out.append((time.perf_counter() - t0) * 1e3)
            page.close()
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flakes", type=int, default=50_000)
    ap.add_argument("--chip-mm", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--browser", action="store_true", help="also time the page in chromium")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from flakefinder.server.app import create_app
    from flakefinder.server.settings import ServerSettings

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'chipmap.db'}"
        t0 = time.perf_counter()
        fill(url, args.flakes, args.chip_mm, args.seed)
        fill_s = time.perf_counter() - t0
        app = create_app(ServerSettings(detector="none", database_url=url))
        side = args.chip_mm * 1000.0
        print(
            f"# chip map: {args.flakes} flakes on a {args.chip_mm:g} mm chip (filled in {fill_s:.1f} s)"
        )
        print(
            f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, SQLite WAL"
        )
        print()
        print("| request | median ms | max ms | bytes | answer |")
        print("|---|---:|---:|---:|---|")
        with TestClient(app, base_url="http://localhost") as client:  # a name it answers to

            def row(name: str, path: str) -> None:
                med, worst, r = timed(lambda: client.get(path), args.repeats)
                if r.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {r.status_code} {r.text[:200]}")
                answer = ""
                if r.headers["content-type"].startswith("application/json"):
                    body = r.json()
                    n = len(body["flakes"]) or len(body["clusters"])
                    answer = f"{body['mode']}: {n} of {body['total']} flakes"
                    if body["mode"] == "clusters":
                        answer = f"{len(body['clusters'])} clusters of {body['total']} flakes"
                print(f"| {name} | {med:.1f} | {worst:.1f} | {len(r.content)} | {answer} |")

            row("page `/chips/1` (HTML)", "/chips/1")
            row("mosaic.png (cached after the first)", "/chips/1/mosaic.png")
            row("mosaic tile 0/0/0 (cached after the first)", "/chips/1/mosaic/0/0/0.png")

            def view(x0: float, y0: float, w: float, extra: str = "") -> str:
                return f"/api/chips/1/map?x0={x0}&y0={y0}&x1={x0 + w}&y1={y0 + w}{extra}"

            for frac, label in ((1, "whole chip"), (2, "1/4 chip"), (4, "1/16 chip")):
                row(f"view: {label}", view(0, 0, side / frac))
            row("view: 200 µm field", view(side / 2, side / 2, 200))
            row("view: 500 µm field", view(side / 3, side / 3, 500))
            med_pan = []
            for k in range(10):  # a zoomed-in view dragged across the chip
                x = (side - 500) * k / 9
                m, _, _ = timed(lambda x=x: client.get(view(x, x, 500)), 1)
                med_pan.append(m)
            print(
                f"| pan: 10 views of 500 µm along the diagonal | {statistics.median(med_pan):.1f}"
                f" | {max(med_pan):.1f} | | |"
            )
            row("view: whole chip, material=hBN", view(0, 0, side, "&material=hBN"))
            row("view: 1/16 chip, material=hBN", view(0, 0, side / 4, "&material=hBN"))
        if args.browser:
            load = browser_load_ms(app, 3)
            print()
            if isinstance(load, str):
                print(f"chromium page load: skipped ({load})")
            else:
                print(
                    "chromium page load until the map is drawn (ms, 3 runs, first cold): "
                    + ", ".join(f"{v:.0f}" for v in load)
                )


if __name__ == "__main__":
    main()
