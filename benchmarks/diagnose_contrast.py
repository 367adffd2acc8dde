"""Why does the contrast detector miss ground-truth instances? One line per reason, with numbers.

Renders the same synthetic 6-material chip as ``bench_detectors.py`` (same seed, tiles, settings),
runs :class:`~flakefinder.detect.contrast.ContrastDetector` and, for every ground-truth terrace
instance not matched at mask IoU >= 0.5, assigns the first reason that applies:

* ``merged``      a detection overlaps it (IoU >= 0.2) but is > 1.5x its area (took a neighbour);
* ``partial``     a detection overlaps it (IoU >= 0.2) but is < 0.67x its area (split / eroded);
* ``clip_all``    > 50 % of its pixels have all three channels at >= 254 (no colour left);
* ``clip_some``   > 50 % of its pixels have one or two channels at >= 254;
* ``tiny``        fewer than 2x ``min_area`` pixels (or too narrow: no pixel 3 px from its edge);
* ``faint``       < 50 % of its pixels are foreground (within ``k_sigma`` noise of the substrate);
* ``residual``    its median relative colour is > ``max_residual`` from every table colour;
* ``bulk_label``  its median colour's nearest table entry has > 40 layers;
* ``other``       none of the above (e.g. dropped by colour support / NMS in the region split).

Also prints, per reason, the material/layer-bin counts and the median residual between the measured
colour and the optics model's colour for the true (material, n), which tells a detector error
(model colour correct, label wrong) from a rendering/background error (measured colour off).

    .venv/bin/python benchmarks/diagnose_contrast.py [--quick] [--seed 0] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detectors import MATERIALS, TILE, UM_PER_PX, _bin, _tiles  # noqa: E402

from flakefinder.detect.colours import colour_table  # noqa: E402
from flakefinder.detect.contrast import ContrastDetector  # noqa: E402
from flakefinder.domain import ImagingContext  # noqa: E402
from flakefinder.evaluate.matching import mask_iou_matrix, match_masks  # noqa: E402
from flakefinder.synth.chip import random_chip  # noqa: E402
from flakefinder.synth.instances import view_instances  # noqa: E402
from flakefinder.synth.render import RenderSettings, render_view  # noqa: E402


def diagnose(chip_um: float, seed: int, verbose: bool) -> None:
    det = ContrastDetector()
    chip = random_chip(chip_um, chip_um, MATERIALS, flakes_per_mm2=300.0, seed=seed)
    ctx = ImagingContext(UM_PER_PX, 90.0, MATERIALS)
    table = colour_table(90.0, 0.55, MATERIALS)
    min_px = max(4, int(np.ceil(det.min_area_um2 / UM_PER_PX**2)))
    reasons: Counter[str] = Counter()
    per: dict[str, Counter[str]] = defaultdict(Counter)
    true_res: dict[str, list[float]] = defaultdict(list)
    n_gt = n_found = 0
    for k, (x, y) in enumerate(_tiles(chip_um)):
        img = render_view(
            chip, x, y, TILE, TILE, UM_PER_PX, settings=RenderSettings(), seed=seed + k
        )
        gt = view_instances(chip, x, y, TILE, TILE, UM_PER_PX)
        dets = det.detect(img, ctx)
        masks = [d.mask for d in dets if d.mask is not None]
        m = match_masks(masks, [g.mask for g in gt], scores=[d.confidence for d in dets])
        found = m.prediction_for_gt()
        iou = mask_iou_matrix(masks, [g.mask for g in gt]) if masks and gt else None
        rel, rel_s = det.relative_image(img, ctx)
        sigma = det._noise(rel_s)
        thr = np.maximum(det.k_sigma * sigma, det.min_contrast)
        fg = np.any(np.abs(rel_s - 1.0) > thr, axis=2)
        clip = img >= 254
        for j, g in enumerate(gt):
            n_gt += 1
            if j in found:
                n_found += 1
                continue
            mk = g.mask
            area = int(mk.sum())
            inner = cv2.erode(mk.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            sel = inner if inner.sum() >= 5 else mk
            med = np.median(rel[sel], axis=0)
            ri = table.rows_for(g.material)[g.n_layers - 1] if g.n_layers <= 80 else None
            tr = float(np.linalg.norm(med - table.relative_rgb[ri])) if ri is not None else np.nan
            row, res = table.nearest(med[None, :])
            nc = clip[mk].sum(axis=1)
            reason = "other"
            if iou is not None and float(iou[:, j].max()) >= 0.2:
                i = int(np.argmax(iou[:, j]))
                ratio = masks[i].sum() / max(area, 1)
                reason = "merged" if ratio > 1.5 else "partial" if ratio < 0.67 else "other"
            if reason == "other":
                dt = cv2.distanceTransform(np.pad(mk.astype(np.uint8), 1), cv2.DIST_L2, 3)
                if (nc == 3).mean() > 0.5:
                    reason = "clip_all"
                elif (nc > 0).mean() > 0.5:
                    reason = "clip_some"
                elif area < 2 * min_px or float(dt.max()) < 3.0:
                    reason = "tiny"
                elif fg[mk].mean() < 0.5:
                    reason = "faint"
                elif float(res[0]) > det.max_residual:
                    reason = "residual"
                elif table.label(int(row[0]))[1] > 40:
                    reason = "bulk_label"
            reasons[reason] += 1
            per[reason][f"{g.material} {_bin(g.n_layers)}"] += 1
            true_res[reason].append(tr)
            if verbose:
                lab = table.label(int(row[0]))
                print(
                    f"  tile {k:2d} {g.material:<8} n={g.n_layers:<3} area={area:6d}px "
                    f"clip3={(nc == 3).mean():.2f} clip>0={(nc > 0).mean():.2f} "
                    f"fg={fg[mk].mean():.2f} med={np.round(med, 3)} true_res={tr:.3f} "
                    f"nearest={lab} res={float(res[0]):.3f} -> {reason}"
                )
    print(f"recall {n_found}/{n_gt}; missed {n_gt - n_found}")
    for r, c in reasons.most_common():
        tr = np.nanmedian(true_res[r]) if np.isfinite(true_res[r]).any() else float("nan")
        detail = ", ".join(f"{key}:{v}" for key, v in sorted(per[r].items()))
        print(f"  {r:<10} {c:3d}  median |measured - model(true n)| {tr:.3f}   {detail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2x2 tiles instead of 5x5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="one line per missed instance")
    args = ap.parse_args()
    diagnose((2 if args.quick else 5) * TILE * UM_PER_PX, args.seed, args.verbose)


if __name__ == "__main__":
    main()
