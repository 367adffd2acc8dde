"""COCO datasets of realistic micrographs (``flakefinder synth OUT --style realistic``).

Writes ``OUT/images/NNNNNN.jpg`` (the camera's JPEG bytes, unchanged) and ``OUT/annotations.json``
with the same categories and annotation layout as :func:`flakefinder.synth.coco.export_coco`
(``ClassMap.for_materials``; ``attributes`` {n_layers, material, layer_class, flake_id}); each
image entry also records the drawn optics and camera (``render``) and its pixel size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flakefinder.artifacts import write_atomic
from flakefinder.synth.coco_writer import CocoDatasetWriter
from flakefinder.synth.realistic import RealisticStyle, render_realistic

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


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
    writer = CocoDatasetWriter(
        out_dir, materials=materials, n_images=n_images, progress=progress
    )
    mats = writer.materials
    seeds = np.random.SeedSequence(seed).spawn(max(n_images, 1))
    for i in range(n_images):
        image_seed = int(seeds[i].generate_state(1)[0])
        sample = render_realistic(
            width_px, height_px, mats, seed=image_seed, style=style, min_area_px=min_area_px
        )
        file_name, file_path = writer.image_path(i, ".jpg")
        write_atomic(file_path, sample.jpeg)
        meta = sample.metadata()
        writer.add_image(
            file_name,
            width_px=width_px,
            height_px=height_px,
            instances=sample.instances,
            fields={
                "um_per_px": meta["um_per_px"],
                "oxide_thickness_nm": sample.optics.oxide_thickness_nm,
                "render_seed": image_seed,
                "render": meta,
            },
        )
    return writer.write(
        {
            "description": "flakefinder synthetic dataset (realistic style)",
            "version": "1",
            "style": "realistic",
            "materials": list(mats),
            "seed": seed,
        }
    )
