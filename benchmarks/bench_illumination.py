"""Illumination sweep (the paper's Fig. 2): recall/precision of each detector vs lamp intensity.

python benchmarks/bench_illumination.py                      # rulebased + contrast
python benchmarks/bench_illumination.py --detectors maskrcnn,rulebased,contrast --model DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="rulebased,contrast")
    ap.add_argument("--model", type=Path, default=None, help="Mask R-CNN model folder")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--score", type=float, default=0.5, help="maskrcnn confidence floor")
    ap.add_argument("--levels", default="1.0,0.9,0.8,0.7,0.6,0.5,0.4")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument(
        "--um-per-px", type=float, default=0.4,
        help="pixel size; 512 px at 0.4 µm is a 1024² scan tile's field of view (the shipped model's scale)",
    )  # fmt: skip
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--materials", default="graphene")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--class-agnostic", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write CSV/markdown/PNG here")
    args = ap.parse_args()

    from flakefinder.detect.registry import create_detector, detector_spec
    from flakefinder.evaluate.illumination import (
        SyntheticSweepConfig,
        illumination_sweep,
        synthetic_views,
    )

    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    dets = [
        create_detector(
            n,
            model=args.model if detector_spec(n).model != "none" else None,
            min_score=args.score,
            device=args.device,
        )
        for n in names
    ]
    cfg = SyntheticSweepConfig(
        materials=tuple(m.strip() for m in args.materials.split(",") if m.strip()),
        n_views=args.views, width_px=args.size, height_px=args.size, seed=args.seed,
        um_per_px=args.um_per_px,
    )  # fmt: skip
    t0 = time.perf_counter()
    views = synthetic_views(cfg)
    res = illumination_sweep(
        dets, views, cfg.context(), illuminations=[float(v) for v in args.levels.split(",")],
        class_agnostic=args.class_agnostic,
    )  # fmt: skip
    dt = time.perf_counter() - t0
    n_gt = sum(len(v.ground_truth) for v in views)
    print(f"{len(views)} views ({args.size} px, seed {args.seed}), {n_gt} GT instances; {dt:.1f} s")
    print(res.to_markdown())
    if args.out is not None:
        print("written:", ", ".join(str(p) for p in res.write(args.out).values()))


if __name__ == "__main__":
    main()
