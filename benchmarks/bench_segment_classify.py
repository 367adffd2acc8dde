"""Calibrated contrast vs Mask R-CNN + setup profile vs their union, on realistic synthetic images.

python benchmarks/bench_segment_classify.py                       # shipped model as the segmenter
python benchmarks/bench_segment_classify.py --model DIR --test 12  # e.g. a class-agnostic model

One microscope setup is drawn once (the 2DMatGMM-like preset: graphene on ~90 nm SiO2, 20x,
white-balanced on white, JPEG) and every image is rendered with it, as on a real microscope.
A setup profile is calibrated on ``--calibrate`` images from their exact 1-4-layer ground truth
(``flakefinder.calibration.api.calibrate``, labels mode: the few-shot protocol of issue 8), then
each detector runs on ``--test`` other images. Scores are the real-data ones
(:mod:`flakefinder.evaluate.real`): class-agnostic recall and precision at IoU >= 0.5 among
detections reported as 1-4 layers, and the share of matched flakes given the right layer number.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

W, H = 960, 600


def _setup(seed: int) -> tuple[Any, Any]:
    from flakefinder.synth.realistic import RealisticStyle, draw_camera, draw_optics

    style = RealisticStyle(
        oxide_range_nm=(88.0, 92.0),
        magnification_range=(20.0, 20.0),
        grey_balance_probability=0.0,
        chip_edge_probability=0.0,
    )
    rng = np.random.default_rng(seed)
    return draw_optics(rng, style), draw_camera(rng, style)


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="segmenter model folder")
    ap.add_argument("--calibrate", type=int, default=2)
    ap.add_argument("--test", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score", type=float, default=0.3, help="segmenter score floor")
    ap.add_argument("--detectors", default="contrast,maskrcnn,union")
    args = ap.parse_args()

    from flakefinder.calibration.api import LabelledRegion, calibrate
    from flakefinder.detect.calibrated import CalibratedContrastDetector
    from flakefinder.detect.maskrcnn import MaskRCNNDetector
    from flakefinder.detect.segment_classify import SegmentClassifyDetector, UnionDetector
    from flakefinder.domain import ImagingContext
    from flakefinder.evaluate.real import RealScore, TruthImage
    from flakefinder.synth.realistic import render_realistic

    optics, camera = _setup(args.seed)
    n = args.calibrate + args.test
    samples = [
        render_realistic(
            W, H, ["graphene"], seed=args.seed + 1000 + i, optics=optics, camera=camera
        )
        for i in range(n)
    ]
    cal, test = samples[: args.calibrate], samples[args.calibrate :]
    regions = [
        LabelledRegion(i, inst.mask, inst.n_layers)
        for i, s in enumerate(cal)
        for inst in s.instances
        if inst.n_layers <= 4
    ]
    report = calibrate(
        [s.image for s in cal],
        material="graphene",
        oxide_nm=optics.oxide_thickness_nm,
        um_per_px=optics.um_per_px,
        regions=regions,
        name="synthetic-setup",
    )
    profile = report.profile
    print(
        f"setup: oxide {optics.oxide_thickness_nm:.1f} nm, NA {optics.numerical_aperture:.2f}, "
        f"{optics.um_per_px:.4f} um/px, lamp {optics.lamp_temperature_k:.0f} K, "
        f"JPEG q{camera.jpeg_quality}; profile from {len(regions)} labelled regions on "
        f"{len(cal)} images, layers {profile.table('graphene').layer_counts}"
    )
    ctx = ImagingContext(
        um_per_px=optics.um_per_px, oxide_thickness_nm=90.0, materials=("graphene",)
    )
    contrast = CalibratedContrastDetector(profile)
    seg = MaskRCNNDetector.from_folder(
        args.model, device="cpu", score_threshold=args.score, refine_layers=False, segment_only=True
    )
    combined = SegmentClassifyDetector(seg, profile)
    dets: dict[str, Any] = {
        "contrast": ("calibrated contrast", contrast),
        "maskrcnn": (f"Mask R-CNN ({seg.version}) + profile", combined),
        "union": ("union of both", UnionDetector(combined, contrast)),
    }
    print(
        f"\n{len(test)} test images, {sum(len(s.instances) for s in test)} flakes of 1-40 "
        f"layers, {sum(1 for s in test for i in s.instances if i.n_layers <= 4)} of 1-4 layers"
    )
    print("\n| detector | recall (1-4 L, IoU>=0.5) | precision | exact layer | ms / image |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, s in enumerate(test):
            p = Path(tmp) / f"t{i}.jpg"
            p.write_bytes(s.jpeg)
            paths.append(p)
        for key in args.detectors.split(","):
            label, det = dets[key]
            score = RealScore()
            t0 = time.perf_counter()
            for p, s in zip(paths, test, strict=True):
                thin = [i for i in s.instances if i.n_layers <= 4]
                truth = TruthImage(p, tuple(i.mask for i in thin), tuple(i.n_layers for i in thin))
                score.add(truth, det.detect(s.image, ctx))
            ms = 1000 * (time.perf_counter() - t0) / max(len(test), 1)
            pairs = score.layer_pairs
            right = sum(v for k, v in pairs.items() if k.split("->")[0] == k.split("->")[1])
            exact = right / max(sum(pairs.values()), 1)
            print(f"| {label} | {score.recall:.2f} ({score.n_found}/{score.n_truth}) | "
                  f"{score.precision:.2f} | {exact:.2f} | {ms:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
