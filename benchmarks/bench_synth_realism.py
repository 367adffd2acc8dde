"""Synthetic vs real micrographs: image statistics of the realistic and legacy renderers next to
the 8 real 2DMatGMM graphene images, and a side-by-side picture.

python benchmarks/bench_synth_realism.py                         # table + docs/synthetic_vs_real.png
python benchmarks/bench_synth_realism.py --synthetic 32 --no-picture

Every image is compared at 960 x 600 px (real 1920 x 1200 images are averaged down 2 x 2).
Statistics per image:

- substrate level: brightest channel of the substrate colour (per-channel histogram mode) / 255;
- substrate chroma: (max - min) / max of the substrate colour (0 = grey);
- bulk share: share of pixels brighter than 1.35 x the substrate (mean over channels);
- object share: share of pixels that differ from the substrate by more than 10 % in any channel;
- edge density: share of Canny edge pixels (grey, thresholds 40 / 120);
- colour-histogram distance: Bhattacharyya distance between the pooled 8 x 8 x 8 RGB histogram of
  a set and that of the real images (real vs real: one half of the real images against the other).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

_REL = "shared/data/real/2dmatgmm/images"
REAL_DIR = next(
    (p / _REL for p in Path(__file__).resolve().parents if (p / _REL).is_dir()),
    Path("../shared/data/real/2dmatgmm/images"),
)
W, H = 960, 600


def substrate_rgb(img: np.ndarray) -> np.ndarray:
    """Per-channel histogram mode (the substrate dominates every micrograph)."""
    out = np.empty(3)
    for c in range(3):
        hist = np.bincount(img[:, :, c].ravel(), minlength=256).astype(float)
        hist = np.convolve(hist, np.ones(5) / 5, mode="same")
        out[c] = float(np.argmax(hist))
    return np.maximum(out, 1.0)


def stats(img: np.ndarray) -> dict[str, float]:
    """The statistics of one RGB uint8 image (see the module docstring)."""
    sub = substrate_rgb(img)
    rel = img.astype(np.float32) / sub[None, None, :].astype(np.float32)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, 40, 120)
    return {
        "level": float(sub.max() / 255.0),
        "chroma": float((sub.max() - sub.min()) / sub.max()),
        "bulk": float((rel.mean(axis=2) > 1.35).mean()),
        "objects": float((np.abs(rel - 1.0).max(axis=2) > 0.10).mean()),
        "edges": float((edges > 0).mean()),
    }


def colour_hist(images: list[np.ndarray]) -> np.ndarray:
    """Pooled, normalised 8 x 8 x 8 RGB histogram."""
    h = np.zeros((8, 8, 8), dtype=np.float32)
    for img in images:
        h += cv2.calcHist([img], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3)
    return h / max(float(h.sum()), 1.0)


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance between two normalised histograms (0 = equal, 1 = disjoint)."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def load_real(folder: Path) -> list[np.ndarray]:
    """The real images, RGB, averaged down to W x H."""
    out = []
    for p in sorted(folder.glob("*.jpg")):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read {p}")
        out.append(cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA)[:, :, ::-1].copy())
    if not out:
        raise SystemExit(f"no real images in {folder}")
    return out


def realistic_images(n: int, seed: int, style_name: str) -> list[np.ndarray]:
    """``n`` realistic renders (random style, or the 2DMatGMM-like preset)."""
    from flakefinder.synth.realistic import RealisticStyle, render_realistic

    style = RealisticStyle()
    if style_name == "2dmatgmm":
        style = RealisticStyle(
            oxide_range_nm=(88.0, 92.0),
            magnification_range=(10.0, 10.0),  # 20x seen at half resolution, as the real rows
            grey_balance_probability=0.0,
            srgb_probability=0.0,
            gamma_range=(1.0, 1.3),
            saturation_range=(2.0, 3.5),
            blur_range_px=(0.3, 0.8),
            substrate_level_range=(0.45, 0.7),
            clutter_scale=0.6,
            chip_edge_probability=0.0,
        )
    return [
        render_realistic(W, H, ["graphene"], seed=seed + i, style=style).image for i in range(n)
    ]


def legacy_images(n: int, seed: int) -> list[np.ndarray]:
    """``n`` renders of the legacy renderer at the real images' field of view (0.7688 µm/px)."""
    from flakefinder.synth import random_chip, render_view

    um = 0.7688
    chip = random_chip(3000.0, 3000.0, ["graphene"], flakes_per_mm2=40.0, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cx, cy = rng.uniform(W * um / 2, 3000 - W * um / 2, 2)
        out.append(render_view(chip, float(cx), float(cy), W, H, um, seed=i))
    return out


def row(name: str, images: list[np.ndarray], real_hist: np.ndarray) -> str:
    """One markdown table row: mean ± sd of each statistic and the histogram distance."""
    s = [stats(im) for im in images]

    def ms(key: str, scale: float = 100.0) -> str:
        v = np.array([d[key] for d in s]) * scale
        return f"{v.mean():.1f} ± {v.std():.1f}"

    d = hist_distance(colour_hist(images), real_hist)
    return (
        f"| {name} | {len(images)} | {ms('level')} | {ms('chroma')} | {ms('bulk')} | "
        f"{ms('objects')} | {ms('edges')} | {d:.2f} |"
    )


def picture(real: list[np.ndarray], synth: list[np.ndarray], path: Path, rows: int = 4) -> None:
    """Side-by-side grid: real on the left, synthetic on the right (PNG, 256 colours)."""
    from PIL import Image

    tw, th = 320, 200
    tiles = []
    for i in range(rows):
        a = cv2.resize(real[i % len(real)], (tw, th), interpolation=cv2.INTER_AREA)
        b = cv2.resize(synth[i % len(synth)], (tw, th), interpolation=cv2.INTER_AREA)
        gap = np.full((th, 6, 3), 255, np.uint8)
        tiles.append(np.hstack([a, gap, b]))
        tiles.append(np.full((6, 2 * tw + 6, 3), 255, np.uint8))
    grid = np.vstack(tiles[:-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(grid).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    img.save(path, optimize=True)


def main() -> None:
    """Print the table (and write the picture)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REAL_DIR)
    ap.add_argument("--synthetic", type=int, default=16, help="synthetic images per row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--picture", type=Path, default=Path("docs/synthetic_vs_real.png"))
    ap.add_argument("--no-picture", action="store_true")
    args = ap.parse_args()

    real = load_real(args.real)
    real_hist = colour_hist(real)
    half = len(real) // 2
    d_rr = hist_distance(colour_hist(real[:half]), colour_hist(real[half:]))
    timed: dict[str, float] = {}

    def make(name: str, fn: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = fn()
        timed[name] = (time.perf_counter() - t0) / max(len(out), 1)
        return out

    n, seed = args.synthetic, args.seed
    preset = make("realistic, 2DMatGMM-like preset", lambda: realistic_images(n, seed, "2dmatgmm"))
    rand = make("realistic, random (default)", lambda: realistic_images(n, seed, "random"))
    legacy = make("legacy renderer", lambda: legacy_images(n, seed))
    print(
        "| images | n | substrate level % | substrate chroma % | bulk share % | object share % "
        "| edge density % | colour-hist distance to real |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        row("real 2DMatGMM graphene (20x)", real, real_hist).replace(
            " 0.00 |", f" {d_rr:.2f} (half vs half) |"
        )
    )
    print(row("synthetic realistic, 2DMatGMM-like preset", preset, real_hist))
    print(row("synthetic realistic, random (default style)", rand, real_hist))
    print(row("synthetic legacy renderer", legacy, real_hist))
    print()
    for name, t in timed.items():
        print(f"render time {name}: {1000 * t:.0f} ms per {W}x{H} image")
    if not args.no_picture:
        picture(real, preset[:2] + rand[:2], args.picture)
        size_kb = args.picture.stat().st_size / 1024
        print(
            f"wrote {args.picture} ({size_kb:.0f} kB): real left, synthetic right "
            "(rows 1-2: 2DMatGMM-like preset, rows 3-4: random style)"
        )


if __name__ == "__main__":
    main()
