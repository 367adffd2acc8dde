"""Synthetic COCO instance-segmentation datasets: ``annotations.json`` + ``images/*.png`` (+ the
virtual chips under ``chips/`` so every image can be re-rendered)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.synth.chip import FlakeDistribution, VirtualChip, random_chip, save_chip
from flakefinder.synth.coco_writer import CocoDatasetWriter
from flakefinder.synth.instances import MIN_INSTANCE_AREA_PX, view_instances
from flakefinder.synth.render import RenderSettings, render_view

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


def _pick_center(
    rng: np.random.Generator,
    chip: VirtualChip,
    view_w_um: float,
    view_h_um: float,
    empty_fraction: float,
) -> tuple[float, float]:
    """A view centre: around a (preferably thin) flake most of the time, else anywhere."""
    thin = [f for f in chip.flakes if f.n_layers <= 10]
    thick = [f for f in chip.flakes if not f.is_bulk and f.n_layers > 10]
    pool = thin if thin and rng.random() < 0.6 else (thick or thin)
    if not pool or rng.random() < empty_fraction:
        return (
            float(rng.uniform(view_w_um / 2, max(chip.width_um - view_w_um / 2, view_w_um / 2))),
            float(rng.uniform(view_h_um / 2, max(chip.height_um - view_h_um / 2, view_h_um / 2))),
        )
    f = pool[int(rng.integers(len(pool)))]
    x0, y0, x1, y1 = f.bbox_um
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (
        cx + float(rng.uniform(-0.3, 0.3)) * view_w_um,
        cy + float(rng.uniform(-0.3, 0.3)) * view_h_um,
    )


def export_coco(
    out_dir: str | Path,
    *,
    n_images: int,
    materials: Sequence[str],
    width_px: int = 1024,
    height_px: int = 1024,
    um_per_px: float = 0.2,
    seed: int = 0,
    oxide_thickness_nm: float = 90.0,
    illumination_range: tuple[float, float] = (0.75, 1.15),
    inhomogeneity_range: tuple[float, float] = (0.0, 0.2),
    focus_error_range_um: tuple[float, float] = (0.0, 0.8),
    white_balance_jitter: float = 0.05,
    empty_fraction: float = 0.1,
    flakes_per_mm2: float = 40.0,
    distribution: FlakeDistribution | None = None,
    settings: RenderSettings = RenderSettings(),
    min_area_px: int = MIN_INSTANCE_AREA_PX,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render ``n_images`` views of random single-material chips and write a COCO dataset.

    Writes ``out_dir/images/NNNNNN.png``, ``out_dir/chips/chip_<material>.json`` and
    ``out_dir/annotations.json`` (returned). Categories are ``ClassMap.for_materials(materials)``
    (ids 1..N, e.g. ``graphene_mono``, supercategory = material). Each image entry also records
    its chip file, view centre, focus error and illumination; each annotation carries
    ``attributes`` {n_layers, material, layer_class, flake_id}. Deterministic for ``seed``.
    """
    from flakefinder.imaging import save_image

    writer = CocoDatasetWriter(
        out_dir, materials=materials, n_images=n_images, progress=progress
    )
    materials, out = writer.materials, writer.root
    seeds = np.random.SeedSequence(seed).spawn(len(materials) + 1)
    rng = np.random.default_rng(seeds[-1])
    view_w, view_h = width_px * um_per_px, height_px * um_per_px
    per_chip = -(-max(n_images, 1) // len(materials))
    side = min(max(2000.0, float(np.sqrt(per_chip * view_w * view_h * 4.0))), 10000.0)
    chips: list[tuple[VirtualChip, str]] = []
    for m, ss in zip(materials, seeds[:-1], strict=True):
        chip_seed = int(ss.generate_state(1)[0])
        chip = random_chip(
            side,
            side,
            [m],
            oxide_thickness_nm=oxide_thickness_nm,
            flakes_per_mm2=flakes_per_mm2,
            distribution=distribution,
            seed=chip_seed,
        )
        name = f"chips/chip_{m}.json"
        save_chip(chip, out / name)
        chips.append((chip, name))

    for i in range(n_images):
        chip, chip_file = chips[i % len(chips)]
        cx, cy = _pick_center(rng, chip, view_w, view_h, empty_fraction)
        focus = float(rng.uniform(*focus_error_range_um)) * float(rng.choice([-1.0, 1.0]))
        wb = 1.0 + rng.uniform(-white_balance_jitter, white_balance_jitter, 3)
        s = replace(
            settings,
            illumination=float(rng.uniform(*illumination_range)),
            inhomogeneity=float(rng.uniform(*inhomogeneity_range)),
            gradient_xy=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
            white_balance_rgb=(float(wb[0]), float(wb[1]), float(wb[2])),
        )
        image_seed = int(rng.integers(2**31))
        img = render_view(
            chip,
            cx,
            cy,
            width_px,
            height_px,
            um_per_px,
            focus_error_um=focus,
            settings=s,
            seed=image_seed,
        )
        file_name, file_path = writer.image_path(i, ".png")
        save_image(file_path, img)
        writer.add_image(
            file_name,
            width_px=width_px,
            height_px=height_px,
            instances=view_instances(
                chip, cx, cy, width_px, height_px, um_per_px, min_area_px=min_area_px
            ),
            fields={
                "chip_file": chip_file,
                "center_x_um": cx,
                "center_y_um": cy,
                "um_per_px": um_per_px,
                "focus_error_um": focus,
                "illumination": s.illumination,
                "oxide_thickness_nm": chip.oxide_thickness_nm,
                "render_seed": image_seed,
            },
        )

    return writer.write(
        {
            "description": "flakefinder synthetic dataset",
            "version": "1",
            "materials": list(materials),
            "seed": seed,
            "um_per_px": um_per_px,
        }
    )
