"""Calibration time from 10 images of 1920 x 1200 px (goal: <= 30 s on this machine).

Images are rendered by ``flakefinder.synth`` (graphene on 90 nm SiO2, gamma 2.2, warm white
balance, flakes of 1-4 layers plus bulk); each mode is timed once: labels, masks (layer numbers
from the optics fit) and no labels (regions mined from the images).

    .venv/bin/python benchmarks/bench_calibration.py [--images 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    """Command-line entry point."""
    from flakefinder.calibration import LabelledRegion, calibrate
    from flakefinder.synth import RenderSettings, random_chip, render_view, view_instances

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=10)
    args = ap.parse_args()
    um_per_px = 0.3844
    w, h = 1920, 1200
    chip = random_chip(4000, 3000, ["graphene"], flakes_per_mm2=400.0, seed=1)
    settings = RenderSettings(gamma=2.2, white_balance_rgb=(1.2, 1.0, 0.8))
    images, truth = [], []
    t0 = time.perf_counter()
    for k in range(args.images):
        cx = 500 + (k % 5) * 740
        cy = 500 + (k // 5) * 480
        images.append(render_view(chip, cx, cy, w, h, um_per_px, settings=settings, seed=k))
        truth += [(k, g.mask, g.n_layers) for g in view_instances(chip, cx, cy, w, h, um_per_px)]
    print(
        f"rendered {len(images)} images {w}x{h} in {time.perf_counter() - t0:.1f} s; "
        f"{len(truth)} ground-truth regions"
    )
    thin = [(k, m, n) for k, m, n in truth if n <= 4]  # the layers the issue asks about
    cases: dict[str, list[LabelledRegion] | None] = {
        "labels": [LabelledRegion(k, m, n) for k, m, n in thin],
        "masks": [LabelledRegion(k, m, None) for k, m, n in thin],
        "no labels": None,
    }
    print("\n| mode | regions | time (s) | goal (s) | measured layers | confidence |")
    print("|---|---|---|---|---|---|")
    for mode, regions in cases.items():
        t0 = time.perf_counter()
        rep = calibrate(
            images, material="graphene", oxide_nm=90, um_per_px=um_per_px, regions=regions
        )
        dt = time.perf_counter() - t0
        measured = [
            e.n_layers for e in rep.profile.table("graphene").layers if e.source == "measured"
        ]
        n_regions = len(regions) if regions is not None else len(rep.region_layers)
        print(f"| {mode} | {n_regions} | {dt:.1f} | 30 | {measured} | {rep.confidence:.2f} |")
        if regions is not None and mode == "masks":
            got = np.array([-1 if n is None else n for n in rep.region_layers])
            want = np.array([n for _, _, n in thin])
            print(
                f"<!-- masks mode: {np.mean(got == want):.2f} of regions got their true layer -->"
            )


if __name__ == "__main__":
    main()
