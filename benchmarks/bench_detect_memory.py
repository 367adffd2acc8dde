"""Peak memory of ``flakefinder detect`` vs the number of 1920 x 1200 images in the folder.

python benchmarks/bench_detect_memory.py                          # contrast detector, 2/8/32 images
python benchmarks/bench_detect_memory.py --detectors contrast,maskrcnn --counts 2,8,32

Four distinct realistic synthetic micrographs (``flakefinder.synth.realistic``, JPEG) are rendered
once and copied to make folders of N images. Each ``detect`` run is a fresh process; its peak
resident set size (``ru_maxrss`` of the child) is printed next to N. Memory that stays flat with
N means ``detect`` streams: it holds one batch of images at a time, never the whole folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def make_images(folder: Path, n_unique: int, seed: int) -> list[Path]:
    """Render ``n_unique`` 1920 x 1200 realistic JPEGs (graphene, 20x-like preset)."""
    from flakefinder.synth.realistic import RealisticStyle, render_realistic

    style = RealisticStyle(
        oxide_range_nm=(88.0, 92.0), magnification_range=(20.0, 20.0), grey_balance_probability=0.0
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n_unique):
        p = folder / f"u{i}.jpg"
        p.write_bytes(render_realistic(1920, 1200, ["graphene"], seed=seed + i, style=style).jpeg)
        out.append(p)
    return out


def peak_rss_mb(args: list[str]) -> tuple[float, int, float]:
    """(peak RSS in MB, exit code, seconds) of one command in a fresh process."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False
    )
    dt = time.perf_counter() - t0
    kb, rc = res.stdout.split()[-2:]
    return int(kb) / 1024.0, int(rc), dt


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2,8,32")
    ap.add_argument("--detectors", default="contrast")
    ap.add_argument("--unique", type=int, default=4, help="distinct images rendered")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overlays", action="store_true", help="also write overlay PNGs")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uniq = make_images(root / "unique", args.unique, args.seed)
        print("| detector | images | peak RSS (MB) | wall (s) | flakes |")
        print("|---|---|---|---|---|")
        for det in args.detectors.split(","):
            for n in counts:
                folder = root / f"n{n}"
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                for i in range(n):
                    shutil.copyfile(uniq[i % len(uniq)], folder / f"img{i:03d}.jpg")
                out = root / f"out_{det}_{n}"
                cmd = [sys.executable, "-m", "flakefinder.cli.main", "detect", str(folder),
                       "--out", str(out), "--detector", det, "--um-per-px", "0.3844",
                       "--device", "cpu"]  # fmt: skip
                if not args.overlays:
                    cmd.append("--no-overlays")
                mb, rc, dt = peak_rss_mb(cmd)
                flakes = "-"
                if rc == 0:
                    flakes = str(len(json.loads((out / "detections.json").read_text())))
                print(
                    f"| {det} | {n} | {mb:.0f} | {dt:.1f} | {flakes if rc == 0 else f'exit {rc}'} |"
                )


if __name__ == "__main__":
    main()
