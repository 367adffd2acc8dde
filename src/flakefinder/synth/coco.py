"""Synthetic COCO instance-segmentation datasets: ``annotations.json`` + ``images/*.png`` (+ the
virtual chips under ``chips/`` so every image can be re-rendered)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.artifacts import write_atomic
from flakefinder.domain import ClassMap
from flakefinder.synth.chip import (
    FlakeDistribution,
    VirtualChip,
    check_materials,
    random_chip,
    save_chip,
)
from flakefinder.synth.instances import MIN_INSTANCE_AREA_PX, GroundTruthInstance, view_instances
from flakefinder.synth.render import RenderSettings, render_view

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def instance_annotation(
    inst: GroundTruthInstance, *, annotation_id: int, image_id: int, class_map: ClassMap
) -> dict[str, Any]:
    """COCO annotation dict (compressed RLE segmentation) of one ground-truth instance."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(inst.mask.astype(np.uint8)))
    x0, y0, x1, y1 = inst.bbox_px
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": class_map.id_of(inst.material, inst.layer_class),
        "segmentation": {
            "size": [int(s) for s in rle["size"]],
            "counts": rle["counts"].decode("ascii"),
        },
        "area": float(inst.area_px),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "iscrowd": 0,
        "attributes": {
            "n_layers": inst.n_layers,
            "material": inst.material,
            "layer_class": inst.layer_class.value,
            "flake_id": inst.flake_id,
        },
    }


def coco_categories(class_map: ClassMap) -> list[dict[str, Any]]:
    from flakefinder.domain import parse_category_name

    return [
        {"id": i + 1, "name": name, "supercategory": parse_category_name(name)[0]}
        for i, name in enumerate(class_map.names)
    ]


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

    materials = check_materials(materials)
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    class_map = ClassMap.for_materials(materials)
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

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
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
        file_name = f"images/{i:06d}.png"
        save_image(out / file_name, img)
        image_id = i + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": width_px,
                "height": height_px,
                "chip_file": chip_file,
                "center_x_um": cx,
                "center_y_um": cy,
                "um_per_px": um_per_px,
                "focus_error_um": focus,
                "illumination": s.illumination,
                "oxide_thickness_nm": chip.oxide_thickness_nm,
                "render_seed": image_seed,
            }
        )
        for inst in view_instances(
            chip, cx, cy, width_px, height_px, um_per_px, min_area_px=min_area_px
        ):
            annotations.append(
                instance_annotation(
                    inst, annotation_id=len(annotations) + 1, image_id=image_id, class_map=class_map
                )
            )
        if progress is not None:
            progress(i + 1, n_images)

    data = {
        "info": {
            "description": "flakefinder synthetic dataset",
            "version": "1",
            "materials": list(materials),
            "seed": seed,
            "um_per_px": um_per_px,
        },
        "licenses": [],
        "categories": coco_categories(class_map),
        "images": images,
        "annotations": annotations,
    }
    path = out / "annotations.json"
    write_atomic(path, json.dumps(data))
    return path
