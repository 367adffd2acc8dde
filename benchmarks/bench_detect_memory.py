"""Peak memory of detection: the ``detect`` command, and the server's operations on large images.

python benchmarks/bench_detect_memory.py                          # all parts below
python benchmarks/bench_detect_memory.py --parts cli --detectors contrast,maskrcnn --counts 2,8,32
python benchmarks/bench_detect_memory.py --parts server,decode    # the server's memory budget
python benchmarks/bench_detect_memory.py --parts server --src ../main/src --ops detect,setup60

``cli``: four distinct realistic synthetic micrographs (``flakefinder.synth.realistic``, JPEG)
are rendered once and copied to make folders of N images. Each ``detect`` run is a fresh
process; its peak resident set size (``ru_maxrss`` of the child) is printed next to N. Memory
that stays flat with N means ``detect`` streams: it holds one batch of images at a time.

``server``: each operation of issue 14's memory probe runs against a fresh ``flakefinder serve``
equivalent (``create_app`` under uvicorn in a child process, contrast detector, server
defaults), on a 7000 x 7000 px PNG micrograph (49 megapixels, about 270 kB: a noise-free
rendered chip view enlarged five times): one detection (8- and 16-bit), a batch of 30, the
Setup page with 60 tiny outlined regions, 5 simultaneous click-to-grow requests, and a batch
whose client hangs up after sending it. Printed: the server's resident memory before the
operation and its peak (``VmHWM`` of the server process), next to the ceiling it must stay
under. ``--src`` runs the servers from another checkout (for before/after numbers).

``decode``: how long a JPEG with thousands of empty progressive scans takes to be refused, and
how long the worst JPEG still accepted (100 scans, 49 megapixels) takes to decode.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory_ops as server_ops

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


def run_cli(args: argparse.Namespace) -> None:
    """The ``detect`` command's table."""
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


def main() -> None:
    """Print the tables."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--parts", default="cli,server,decode", help="cli, server, decode")
    ap.add_argument("--counts", default="2,8,32")
    ap.add_argument("--detectors", default="contrast")
    ap.add_argument("--unique", type=int, default=4, help="distinct images rendered")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overlays", action="store_true", help="also write overlay PNGs")
    ap.add_argument("--ops", default=",".join(server_ops.OPS), help="server operations to run")
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                    help="source folder the servers run from (another checkout: before/after)")
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "SETTINGS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        server_ops.serve(int(args.serve[0]), json.loads(args.serve[1]))
        return
    parts = set(args.parts.split(","))
    if "cli" in parts:
        run_cli(args)
        print()
    if "server" in parts:
        server_ops.run_server_ops(args.ops.split(","), args.src, args.seed)
        print()
    if "decode" in parts:
        server_ops.run_decode_times()


if __name__ == "__main__":
    main()
