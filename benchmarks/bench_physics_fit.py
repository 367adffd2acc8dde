"""Optics + camera fit on real 2DMatGMM colour tables: fit a few layers, predict the others.

Same procedure for every table (``flakefinder.calibration.physics.fit_physics`` with its default
priors): graphene on 90 nm SiO2 fitted on 1-2 layers, predicting 3-4; WSe2 on 70 nm fitted on
1 layer, predicting 2-3. Prints, per layer and channel (R G B), the measured contrast, the
prediction and the absolute error, then the largest error per table.

Also a synthetic check with known truth: images rendered by ``flakefinder.synth`` with several
cameras (gamma, white balance, grey and violet substrates) are calibrated from labelled 1-2 layer
flakes, and the predicted 3-4 layer contrasts are compared with the 3-4 layer flakes measured in
the same images.

    .venv/bin/python benchmarks/bench_physics_fit.py [--tables DIR] [--no-synthetic]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from flakefinder.calibration.physics import fit_physics

HERE = Path(__file__).resolve().parent
DEFAULT_TABLES = HERE.parent / "tests" / "data" / "2dmatgmm"
CASES = (
    ("graphene", "graphene_90nm.json", 90.0, (1, 2)),
    ("WSe2", "wse2_70nm.json", 70.0, (1,)),
)


def load_table(path: Path) -> dict[int, np.ndarray]:
    """Layer -> RGB contrast from a 2DMatGMM file."""
    data = json.loads(path.read_text())
    return {
        int(k): np.array([v["contrast"]["r"], v["contrast"]["g"], v["contrast"]["b"]])
        for k, v in data.items()
    }


def real_tables(folder: Path) -> float:
    """Print the real-table table; return the largest prediction error."""
    worst = 0.0
    print("## Physics fit on 2DMatGMM tables (fit on some layers, predict the rest)\n")
    print("| material / oxide | layer | role | measured R G B | model R G B | abs error R G B |")
    print("|---|---|---|---|---|---|")
    for material, file, oxide, fit_on in CASES:
        table = load_table(folder / file)
        t0 = time.perf_counter()
        fit = fit_physics(material, oxide, {n: table[n] for n in fit_on})
        dt = time.perf_counter() - t0
        layers = sorted(table)
        pred = fit.predict(layers)
        pmax = 0.0
        for n, p in zip(layers, pred, strict=True):
            err = np.abs(p - table[n])
            role = "fitted" if n in fit_on else "predicted"
            if role == "predicted":
                pmax = max(pmax, float(err.max()))
            print(
                f"| {material} / {oxide:g} nm | {n} | {role} | "
                + " ".join(f"{v:+.3f}" for v in table[n])
                + " | "
                + " ".join(f"{v:+.3f}" for v in p)
                + " | "
                + " ".join(f"{v:.3f}" for v in err)
                + " |"
            )
        q = fit.params
        print(
            f"\n{material}: largest error on predicted layers {pmax:.3f}; fit took {dt:.1f} s; "
            f"oxide {q.oxide_scale * oxide:.1f} nm, NA {q.numerical_aperture:.2f}, "
            f"gamma {q.gamma:.2f}\n"
        )
        worst = max(worst, pmax)
    return worst


def synthetic() -> None:
    """Labelled 1-2 layer flakes in rendered images; predicted vs measured 3-4 layers."""
    from flakefinder.calibration import LabelledRegion, calibrate
    from flakefinder.calibration.background import contrast_image, estimate_background
    from flakefinder.calibration.gaussians import flake_stat
    from flakefinder.synth import (
        RenderSettings,
        SynthFlake,
        Terrace,
        VirtualChip,
        render_view,
        view_instances,
    )

    def square(cx: float, cy: float, r: float) -> tuple[tuple[float, float], ...]:
        return ((cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r))

    cameras = {
        "linear, grey-balanced": RenderSettings(gamma=1.0, substrate_level=0.6),
        "gamma 2.2, warm WB": RenderSettings(gamma=2.2, white_balance_rgb=(1.3, 1.0, 0.7)),
        "gamma 1.8, violet": RenderSettings(gamma=1.8, white_balance_rgb=(0.9, 0.8, 1.3)),
        "gamma 1.4, NA 0.3": RenderSettings(gamma=1.4, numerical_aperture=0.3),
    }
    layers = (1, 2, 3, 4, 1, 2, 3, 4)
    flakes = tuple(
        SynthFlake(i, "graphene", (Terrace(square(20 + (i % 4) * 40, 20 + (i // 4) * 40, 12), n),))
        for i, n in enumerate(layers)
    )
    chip = VirtualChip(180, 100, 90.0, ("graphene",), flakes, (), 0)
    print("## Synthetic images: fit on labelled 1-2 layers, predict 3-4\n")
    print("| camera | layer | measured R G B | predicted R G B | abs error max |")
    print("|---|---|---|---|---|")
    for label, settings in cameras.items():
        image = render_view(chip, 90, 50, 460, 250, 0.4, settings=settings, seed=0)
        inst = view_instances(chip, 90, 50, 460, 250, 0.4)
        regions = [LabelledRegion(0, g.mask, g.n_layers) for g in inst if g.n_layers <= 2]
        report = calibrate(
            [image], material="graphene", oxide_nm=90, um_per_px=0.4, regions=regions
        )
        contrast = contrast_image(image, estimate_background(image))
        table = report.profile.table("graphene")
        for n in (3, 4):
            meds = [
                s.median_rgb
                for g in inst
                if g.n_layers == n
                and (s := flake_stat(contrast, g.mask, image_index=0, region_index=0)) is not None
            ]
            measured = np.mean(meds, axis=0)
            pred = table.layer(n).mean
            print(
                f"| {label} | {n} | "
                + " ".join(f"{v:+.3f}" for v in measured)
                + " | "
                + " ".join(f"{v:+.3f}" for v in pred)
                + f" | {np.abs(pred - measured).max():.3f} |"
            )
    print()


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tables", type=Path, default=DEFAULT_TABLES, help="folder of 2DMatGMM JSON")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the rendered-image check")
    args = ap.parse_args()
    worst = real_tables(args.tables)
    print(f"goal: 0.02 absolute contrast per channel on predicted layers; worst {worst:.3f}\n")
    if not args.no_synthetic:
        synthetic()


if __name__ == "__main__":
    main()
