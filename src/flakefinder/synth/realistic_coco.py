"""COCO datasets of realistic micrographs (``flakefinder synth OUT --style realistic``).

Writes ``OUT/images/NNNNNN.jpg`` (the camera's JPEG bytes, unchanged) and ``OUT/annotations.json``
with the same categories and annotation layout as :func:`flakefinder.synth.coco.export_coco`
(``ClassMap.for_materials``; ``attributes`` {n_layers, material, layer_class, flake_id}); each
image entry also records the drawn optics and camera (``render``) and its pixel size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.artifacts import write_atomic
from flakefinder.domain import ClassMap
from flakefinder.synth.chip import check_materials
from flakefinder.synth.coco import coco_categories, instance_annotation
from flakefinder.synth.realistic import RealisticStyle, render_realistic

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def export_realistic_coco(
    out_dir: str | Path,
    *,
    n_images: int,
    materials: Sequence[str],
    width_px: int = 512,
    height_px: int = 512,
    seed: int = 0,
    style: RealisticStyle = RealisticStyle(),
    min_area_px: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render ``n_images`` realistic random micrographs and write a COCO dataset.

    Parameters
    ----------
    out_dir : str or Path
        Dataset folder (``images/`` and ``annotations.json`` are written into it).
    n_images : int
        Number of images.
    materials : sequence of str
        Materials; each image draws one of them.
    width_px, height_px : int
        Image size.
    seed : int
        Dataset seed (image ``i`` uses the ``i``-th spawned seed: deterministic bytes).
    style : RealisticStyle
        Ranges the renderer draws from.
    min_area_px : int
        Smallest ground-truth instance.
    progress : callable, optional
        ``progress(done, total)`` after each image.

    Returns
    -------
    Path
        The ``annotations.json`` written (last, after every image).
    """
    mats = check_materials(materials)
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    class_map = ClassMap.for_materials(mats)
    seeds = np.random.SeedSequence(seed).spawn(max(n_images, 1))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(n_images):
        image_seed = int(seeds[i].generate_state(1)[0])
        sample = render_realistic(
            width_px, height_px, mats, seed=image_seed, style=style, min_area_px=min_area_px
        )
        file_name = f"images/{i:06d}.jpg"
        write_atomic(out / file_name, sample.jpeg)
        image_id = i + 1
        meta = sample.metadata()
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": width_px,
                "height": height_px,
                "um_per_px": meta["um_per_px"],
                "oxide_thickness_nm": sample.optics.oxide_thickness_nm,
                "render_seed": image_seed,
                "render": meta,
            }
        )
        for inst in sample.instances:
            annotations.append(
                instance_annotation(
                    inst, annotation_id=len(annotations) + 1, image_id=image_id, class_map=class_map
                )
            )
        if progress is not None:
            progress(i + 1, n_images)
    data = {
        "info": {
            "description": "flakefinder synthetic dataset (realistic style)",
            "version": "1",
            "style": "realistic",
            "materials": list(mats),
            "seed": seed,
        },
        "licenses": [],
        "categories": coco_categories(class_map),
        "images": images,
        "annotations": annotations,
    }
    path = out / "annotations.json"
    write_atomic(path, json.dumps(data))
    return path
