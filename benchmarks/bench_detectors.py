"""Benchmark the training-free detectors on synthetic chips.

Prints (1) the time per 1024 x 1024 tile (median of N runs) of the contrast and rule-based
detectors, (2) recall per material and layer count and overall precision of the contrast detector
on a random synthetic chip (detections matched to ground-truth terrace instances by mask IoU >= 0.5),
and (3) overall recall/precision of both detectors at nominal and dimmed illumination (Fig. 2 of the
paper, in numbers), and (4) the calibrated contrast detector (``--setup``): median time per
1920 x 1200 real micrograph (2DMatGMM's graphene pictures from ``--real-dir``, default
``../shared/data/real/2dmatgmm/images``, else the three shipped with flakefinder; profile: the
imported 2DMatGMM graphene table), next to the physics-model contrast detector on the same
pictures, and its class-agnostic recall/precision on synthetic views under four cameras, with a
profile measured on two labelled views per camera.

    .venv/bin/python benchmarks/bench_detectors.py [--quick] [--seed 0] [--repeats 10]
    .venv/bin/python benchmarks/bench_detectors.py --calibrated-only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flakefinder.detect.contrast import ContrastDetector  # noqa: E402
from flakefinder.detect.rulebased import RuleBasedDetector  # noqa: E402
from flakefinder.domain import Detector, ImagingContext  # noqa: E402
from flakefinder.evaluate.matching import match_masks  # noqa: E402
from flakefinder.synth.chip import random_chip  # noqa: E402
from flakefinder.synth.instances import view_instances  # noqa: E402
from flakefinder.synth.render import RenderSettings, render_view  # noqa: E402

MATERIALS = ("graphene", "hBN", "MoS2", "WTe2", "WSe2", "MoSe2")
TILE = 1024
UM_PER_PX = 0.2
LAYER_BINS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 40))


def _bin(n: int) -> str:
    for lo, hi in LAYER_BINS:
        if lo <= n <= hi:
            return f"{lo}" if lo == hi else f"{lo}-{hi}"
    return ">40"


def _tiles(chip_um: float) -> list[tuple[float, float]]:
    step = TILE * UM_PER_PX
    n = max(1, int(chip_um // step))
    return [((i + 0.5) * step, (j + 0.5) * step) for j in range(n) for i in range(n)]


def time_detectors(repeats: int, seed: int) -> dict[str, float]:
    chip = random_chip(
        TILE * UM_PER_PX, TILE * UM_PER_PX, ("graphene",), flakes_per_mm2=400.0, seed=seed
    )
    c = TILE * UM_PER_PX / 2
    img = render_view(chip, c, c, TILE, TILE, UM_PER_PX, seed=seed)
    ctx = ImagingContext(UM_PER_PX, 90.0, ("graphene",))
    out = {}
    detectors: list[Detector] = [ContrastDetector(), RuleBasedDetector()]
    for det in detectors:
        det.detect(img, ctx)  # warm the colour-table caches
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            det.detect(img, ctx)
            times.append(time.perf_counter() - t0)
        out[det.name] = statistics.median(times)
    return out


def evaluate(
    detector: Detector, chip_um: float, materials: tuple[str, ...], illumination: float, seed: int
) -> tuple[dict[tuple[str, str], list[int]], int, int]:
    """Per (material, layer bin): [n_gt, found, exact layer count]; total detections; matched."""
    chip = random_chip(chip_um, chip_um, materials, flakes_per_mm2=300.0, seed=seed)
    ctx = ImagingContext(UM_PER_PX, 90.0, materials)
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    n_det = n_match = 0
    settings = RenderSettings(illumination=illumination)
    for k, (x, y) in enumerate(_tiles(chip_um)):
        img = render_view(chip, x, y, TILE, TILE, UM_PER_PX, settings=settings, seed=seed + k)
        gt = view_instances(chip, x, y, TILE, TILE, UM_PER_PX)
        dets = detector.detect(img, ctx)
        blank = np.zeros((TILE, TILE), dtype=bool)
        m = match_masks(
            [blank if d.mask is None else d.mask for d in dets],
            [g.mask for g in gt],
            scores=[d.confidence for d in dets],
        )
        n_det += len(dets)
        n_match += m.true_positives
        found = m.prediction_for_gt()
        for j, g in enumerate(gt):
            r = rows[(g.material, _bin(g.n_layers))]
            r[0] += 1
            if j in found:
                r[1] += 1
                r[2] += int(dets[found[j]].layer_count == g.n_layers)
    return rows, n_det, n_match


def _real_images(real_dir: Path | None) -> list[np.ndarray]:
    from flakefinder.imaging import load_image

    root = Path(__file__).resolve().parents[1]
    for d in (
        real_dir,
        root.parent / "shared/data/real/2dmatgmm/images",
        root / "src/flakefinder/data/real",
    ):
        if d is not None and d.is_dir() and sorted(d.glob("*.jpg")):
            print(f"  real pictures: {d}")
            return [load_image(p) for p in sorted(d.glob("*.jpg"))]
    raise SystemExit("no real pictures found")


def bench_calibrated(repeats: int, seed: int, real_dir: Path | None, quick: bool) -> None:
    from flakefinder.calibration.gmm import import_gmm
    from flakefinder.detect.calibrated import CalibratedContrastDetector
    from flakefinder.evaluate.synth_cameras import CAMERAS, camera_benchmark

    root = Path(__file__).resolve().parents[1]
    print("\n== calibrated contrast detector (--setup), real 1920x1200 micrographs ==")
    images = _real_images(real_dir)
    profile = import_gmm(
        root / "src/flakefinder/data/real/gmm_graphene_90nm.json",
        material="graphene",
        oxide_nm=90.0,
        um_per_px=0.3844,
    )
    ctx = ImagingContext(0.3844, 90.0, ("graphene",), 0.55, 1.0)
    detectors: list[Detector] = [CalibratedContrastDetector(profile), ContrastDetector()]
    for det in detectors:
        runs = repeats if isinstance(det, CalibratedContrastDetector) else max(1, repeats // 5)
        det.detect(images[0], ctx)  # warm caches
        times, cpu = [], []
        n_found = 0
        for _ in range(runs):
            for im in images:
                t0, c0 = time.perf_counter(), time.process_time()
                found = det.detect(im, ctx)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                n_found += len(found)
        print(
            f"  {det.name:<20} median {statistics.median(times) * 1000:7.1f} ms/image wall, "
            f"{statistics.median(cpu) * 1000:7.1f} ms CPU "
            f"({len(times)} runs on {len(images)} images, {n_found // runs} detections per pass)"
        )
    n_test = 3 if quick else 6
    print("\n== calibrated contrast detector, synthetic views 960x600 at 0.3844 um/px ==")
    print(f"  profile measured on 2 labelled views per camera, scored on {n_test} others;")
    print("  class-agnostic, IoU >= 0.5, thin (1-4 L) flakes >= 20 um^2, detections of 1-4 L")
    print(
        f"  {'camera':<28} {'n_gt':>5} {'found':>5} {'recall':>7} {'n_det':>6} {'precision':>9} {'exact L':>7}"
    )
    for cam in CAMERAS:
        s = camera_benchmark(cam, n_test=n_test, seed=seed)
        print(
            f"  {cam.name:<28} {s.n_truth:>5} {s.n_found:>5} {s.recall:>7.3f} {s.n_detections:>6}"
            f" {s.precision:>9.3f} {s.n_exact:>7}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small chip and few timing repeats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=None, help="timing runs per detector")
    ap.add_argument("--calibrated-only", action="store_true", help="only section (4)")
    ap.add_argument("--real-dir", type=Path, default=None, help="folder of real 20x JPEGs")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 10)
    if args.calibrated_only:
        bench_calibrated(repeats, args.seed, args.real_dir, args.quick)
        return
    chip_um = 2 * TILE * UM_PER_PX if args.quick else 5 * TILE * UM_PER_PX

    print(f"== time per {TILE}x{TILE} tile (median of {repeats}) ==")
    for name, t in time_detectors(repeats, args.seed).items():
        print(f"  {name:<10} {t * 1000:8.1f} ms")

    n_tiles = len(_tiles(chip_um))
    print(f"\n== contrast detector, {chip_um:.0f} um chip ({n_tiles} tiles), IoU >= 0.5 ==")
    rows, n_det, n_match = evaluate(ContrastDetector(), chip_um, MATERIALS, 1.0, args.seed)
    print(f"  {'material':<9} {'layers':>6} {'n_gt':>5} {'found':>5} {'recall':>7} {'n_exact':>7}")
    order = {b: i for i, b in enumerate([_bin(lo) for lo, _ in LAYER_BINS])}
    tot_gt = tot_found = 0
    for (mat, b), (n_gt, found, exact) in sorted(
        rows.items(), key=lambda kv: (MATERIALS.index(kv[0][0]), order[kv[0][1]])
    ):
        tot_gt += n_gt
        tot_found += found
        print(f"  {mat:<9} {b:>6} {n_gt:>5} {found:>5} {found / n_gt:>7.2f} {exact:>7}")
    print(
        f"  overall recall {tot_found / max(tot_gt, 1):.3f} ({tot_found}/{tot_gt}), "
        f"precision {n_match / max(n_det, 1):.3f} ({n_match}/{n_det})"
    )

    print("\n== recall / precision vs illumination (graphene chip) ==")
    for det in (ContrastDetector(), RuleBasedDetector()):
        for illum in (1.0, 0.8, 0.6):
            rows, n_det, n_match = evaluate(det, chip_um, ("graphene",), illum, args.seed + 1)
            n_gt = sum(r[0] for r in rows.values())
            found = sum(r[1] for r in rows.values())
            print(
                f"  {det.name:<10} I={illum:.1f}  recall {found / max(n_gt, 1):.3f} ({found}/{n_gt})"
                f"  precision {n_match / max(n_det, 1):.3f} ({n_match}/{n_det})"
            )
    bench_calibrated(repeats, args.seed, args.real_dir, args.quick)


if __name__ == "__main__":
    main()
