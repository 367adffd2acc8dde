"""Mask R-CNN inference time per 1024² image for each backbone, next to the paper's 200 ms (V100).

    python benchmarks/bench_maskrcnn.py [--device cpu|cuda] [--runs 5] [--model DIR]

Each backbone is built with random weights (weights="none", nothing downloaded) at
image_size 1024 and timed end to end through ``MaskRCNNDetector.detect`` on a synthetic
micrograph (letterboxing, forward pass, mask to polygon; layer refinement off). Random heads
keep up to ``box_detections_per_img`` boxes, so the ROI/mask part is at its most expensive:
these times are upper bounds for trained models. ``--model DIR`` adds a row for a trained model
folder (e.g. the shipped default) at its own image size, with refinement on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BACKBONES = ("mobilenet_v3_fpn", "resnet50_fpn", "resnet101_fpn")
MATERIALS = ("graphene", "hBN", "MoS2", "WTe2")


def _time(detector, image, context, runs: int, sync) -> float:  # type: ignore[no-untyped-def]
    detector.detect(image, context)  # warm-up (allocations, cuDNN autotune)
    sync()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        detector.detect(image, context)
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    ap.add_argument("--model", type=Path, default=None, help="also time this model folder")
    args = ap.parse_args()

    import torch

    from flakefinder.detect.maskrcnn import MaskRCNNDetector
    from flakefinder.detect.maskrcnn_model import ModelConfig, build_model, count_parameters
    from flakefinder.domain import ImagingContext
    from flakefinder.synth.chip import random_chip
    from flakefinder.synth.render import render_view

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    chip = random_chip(600.0, 600.0, ("graphene",), seed=7)
    image = render_view(chip, 300.0, 300.0, 1024, 1024, 0.2, seed=0)
    ctx = ImagingContext(um_per_px=0.2, materials=("graphene",))
    name = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {name}; torch {torch.__version__}; median of {args.runs} runs after one warm-up\n"
    )
    print("| model | weights | image size | parameters | ms per image | paper (V100) |")
    print("|---|---|---:|---:|---:|---:|")
    for backbone in [b for b in args.backbones.split(",") if b]:
        cfg = ModelConfig.for_materials(MATERIALS, backbone=backbone, image_size=1024)
        model = build_model(cfg, weights="none")
        det = MaskRCNNDetector(model, cfg, device=args.device, refine_layers=False)
        ms = 1000 * _time(det, image, ctx, args.runs, sync)
        print(
            f"| {backbone} | random | 1024 | {count_parameters(model) / 1e6:.1f} M | {ms:.0f} | 200 |",
            flush=True,
        )
    if args.model is not None:
        det = MaskRCNNDetector.from_folder(args.model, device=args.device)
        ms = 1000 * _time(det, image, ctx, args.runs, sync)
        params = count_parameters(det.model) / 1e6  # type: ignore[attr-defined]
        print(
            f"| {det.config.backbone} ({args.model.name}) | trained | {det.config.image_size} | {params:.1f} M | {ms:.0f} | 200 |"
        )  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
