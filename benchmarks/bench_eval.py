"""mAP@50 and the paper's image-level precision/recall of a detector on a held-out synthetic set.

The set is rendered with ``flakefinder.synth.export_coco`` from a fixed seed (different from
the training seeds), so numbers are comparable between runs and machines::

    python benchmarks/bench_eval.py --detector contrast
    python benchmarks/bench_eval.py --detector maskrcnn --model models/graphene --images 100
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="contrast", help="maskrcnn, contrast or rulebased")
    ap.add_argument("--model", type=Path, default=None, help="Mask R-CNN model folder")
    ap.add_argument("--device", default="auto", help="maskrcnn: cpu, cuda or auto")
    ap.add_argument("--score", type=float, default=0.05, help="maskrcnn confidence floor")
    ap.add_argument("--decision-score", type=float, default=0.0, help="image-level threshold")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument(
        "--um-per-px", type=float, default=0.4,
        help="pixel size; 512 px at 0.4 µm is a 1024² scan tile's field of view (the shipped model's scale)",
    )  # fmt: skip
    ap.add_argument("--size", type=int, default=512, help="image width = height (px)")
    ap.add_argument("--materials", default="graphene")
    ap.add_argument("--seed", type=int, default=20240917, help="held-out set seed")
    ap.add_argument("--keep", type=Path, default=None, help="write the set and outputs here")
    args = ap.parse_args()

    from flakefinder.detect.registry import create_detector
    from flakefinder.evaluate.cocodata import load_coco
    from flakefinder.evaluate.run import evaluate_results, run_detector, write_report
    from flakefinder.synth import export_coco

    tmp = None
    root = args.keep
    if root is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    mats = [m.strip() for m in args.materials.split(",") if m.strip()]
    t0 = time.perf_counter()
    export_coco(
        root / "data", n_images=args.images, materials=mats, width_px=args.size,
        height_px=args.size, seed=args.seed, um_per_px=args.um_per_px,
    )  # fmt: skip
    t_gen = time.perf_counter() - t0
    det = create_detector(
        args.detector, model=args.model, min_score=args.score, device=args.device
    )
    gt, image_root = load_coco(root / "data")
    t0 = time.perf_counter()
    results, dropped = run_detector(det, gt, image_root)
    t_det = time.perf_counter() - t0
    rep = evaluate_results(
        gt, results, score_threshold=args.decision_score, detector=det.name,
        detector_version=det.version, n_dropped=dropped,
    )  # fmt: skip
    if args.keep is not None:
        write_report(rep, results, root / "eval")

    def f(v: float) -> str:
        return "n/a" if math.isnan(v) else f"{v:.3f}"

    c, il = rep.coco, rep.image_level
    print(f"detector {det.name} {det.version}; {len(gt['images'])} images {args.size}px, "
          f"{c.n_ground_truth} GT instances, seed {args.seed}")  # fmt: skip
    print(
        f"generation {t_gen:.1f} s, detection {t_det:.1f} s ({1000 * t_det / max(1, len(gt['images'])):.0f} ms/image)"
    )
    print()
    print("| detector | mask mAP | mask mAP@50 | box mAP@50 | img TP | img FP | img FN | img TN | "
          "img precision | img recall | flake precision | flake recall |")  # fmt: skip
    print("|---" * 12 + "|")
    print(f"| {det.name} | {f(c.mask_ap)} | {f(c.mask_ap50)} | {f(c.box_ap50)} | {il.tp} | {il.fp} | "
          f"{il.fn} | {il.tn} | {f(il.precision)} | {f(il.recall)} | {f(il.flake_precision)} | "
          f"{f(il.flake_recall)} |")  # fmt: skip
    print()
    print(c.to_markdown())
    print(rep.class_confusion.to_markdown())
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
