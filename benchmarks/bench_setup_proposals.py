"""Layer numbers proposed by the Setup page (click a flake, calibrate without numbers) on real
graphene micrographs, against the layer numbers of the lab's own colour table.

python benchmarks/bench_setup_proposals.py [--images DIR] [--subsets 8] [--min-area-px 50]

Pictures: the 8 real 2DMatGMM graphene micrographs (90 nm SiO2, 0.3844 um/px) in
``../shared/data/real/2dmatgmm/images``, else the three shipped with flakefinder. Reference: the
lab's per-layer colour table (``gmm_graphene_90nm.json``) run as the calibrated detector; every
instance it finds of at least ``--min-area-px`` pixels is "clicked" at its deepest interior
pixel (``grow_region``, as the page does), plus a few bulk pieces (reference: no layer number).
Each group of pictures of one camera setting is calibrated in masks mode (as the page does
without layer numbers) with all its clicks and with ``--subsets`` random sets of six; a
proposal is right when it equals the reference, "none" when the flake got no layer number
although the reference has one (or the reverse), wrong otherwise.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

# pictures of one camera setting (first 8 characters of the file name); a, b and c are the
# shipped graphene_90nm_{a,b,c}.jpg
GROUPS = {
    "a+b": ("14f99233", "3b9418a4"),
    "a": ("14f99233",),
    "b": ("3b9418a4",),
    "c": ("3b19cc78",),
    "32498b60": ("32498b60",),
    "d5c9b678": ("d5c9b678",),
    "ec96cad0": ("ec96cad0",),
}
SHIPPED = {"14f99233": "graphene_90nm_a", "3b9418a4": "graphene_90nm_b", "3b19cc78": "graphene_90nm_c"}
# bulk graphite pieces (picture, x, y): no layer number
BULK = {"14f99233": ((1080, 250), (1660, 1000)), "3b9418a4": ((900, 600),), "3b19cc78": ((870, 380),)}


def _pictures(folder: Path | None) -> dict[str, np.ndarray]:
    from flakefinder.cli.demo_real import real_data_folder
    from flakefinder.imaging import load_image

    root = Path(__file__).resolve().parents[1]
    for d in (folder, root.parent / "shared/data/real/2dmatgmm/images"):
        if d is not None and d.is_dir() and sorted(d.glob("*.jpg")):
            print(f"pictures: {d}")
            return {p.name[:8]: load_image(p) for p in sorted(d.glob("*.jpg"))}
    print(f"pictures: {real_data_folder()} (the three shipped ones)")
    return {k: load_image(real_data_folder() / f"{v}.jpg") for k, v in SHIPPED.items()}


def main() -> None:
    """Command-line entry point."""
    from scipy import ndimage

    from flakefinder.calibration import LabelledRegion, calibrate
    from flakefinder.calibration.gmm import import_gmm
    from flakefinder.calibration.regions import grow_region
    from flakefinder.cli.demo_real import real_data_folder
    from flakefinder.detect.calibrated import CalibratedContrastDetector
    from flakefinder.domain import ImagingContext
    from flakefinder.errors import CalibrationError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, default=None, help="folder of the 2DMatGMM pictures")
    ap.add_argument("--subsets", type=int, default=8, help="random sets of six clicks per group")
    ap.add_argument("--min-area-px", type=float, default=50.0)
    args = ap.parse_args()
    um_per_px, oxide_nm = 0.3844, 90.0
    pictures = _pictures(args.images)
    gmm = import_gmm(
        real_data_folder() / "gmm_graphene_90nm.json",
        material="graphene",
        oxide_nm=oxide_nm,
        um_per_px=um_per_px,
    )
    ctx = ImagingContext(um_per_px=um_per_px, oxide_thickness_nm=oxide_nm, materials=("graphene",))
    detector = CalibratedContrastDetector(gmm)
    rng = random.Random(0)
    print(
        "\n| pictures | clicked flakes | calibrations | proposals | right | none | wrong "
        "| time per calibration (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    total = [0, 0, 0, 0]
    for group, names in GROUPS.items():
        if not all(n in pictures for n in names):
            continue
        clicks: list[tuple[int, np.ndarray, int | None]] = []
        for k, name in enumerate(names):
            img = pictures[name]
            points = []
            for d in detector.detect(img, ctx):
                if d.area_px >= args.min_area_px and d.mask is not None:
                    depth = ndimage.distance_transform_edt(d.mask)
                    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
                    points.append((int(x), int(y), d.layer_count))
            points += [(x, y, None) for x, y in BULK.get(name, ())]
            for x, y, n in points:
                try:
                    clicks.append((k, grow_region(img, x, y), n))
                except CalibrationError:
                    continue
        sets = [list(range(len(clicks)))] + [
            sorted(rng.sample(range(len(clicks)), min(6, len(clicks))))
            for _ in range(args.subsets)
        ]
        right = none = wrong = 0
        seconds = 0.0
        for chosen in sets:
            t0 = time.perf_counter()
            try:
                report = calibrate(
                    [pictures[n] for n in names],
                    material="graphene",
                    oxide_nm=oxide_nm,
                    um_per_px=um_per_px,
                    regions=[LabelledRegion(clicks[i][0], clicks[i][1]) for i in chosen],
                )
                got = list(report.region_layers)
            except CalibrationError:
                got = [None] * len(chosen)
            seconds += time.perf_counter() - t0
            for i, p in zip(chosen, got, strict=True):
                ref = clicks[i][2]
                if p == ref:
                    right += 1
                elif p is None or ref is None:
                    none += 1
                else:
                    wrong += 1
        n = right + none + wrong
        total = [total[0] + len(sets), total[1] + right, total[2] + none, total[3] + wrong]
        print(
            f"| {group} | {len(clicks)} | {len(sets)} | {n} | {right} | {none} | {wrong} "
            f"| {seconds / len(sets):.1f} |"
        )
    n = sum(total[1:])
    print(
        f"| all | | {total[0]} | {n} | {total[1]} ({100 * total[1] / max(n, 1):.0f} %) "
        f"| {total[2]} | {total[3]} | |"
    )


if __name__ == "__main__":
    main()
