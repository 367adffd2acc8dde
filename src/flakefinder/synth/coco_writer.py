"""The one writer of flakefinder's synthetic COCO datasets (every ``flakefinder synth`` style).

:class:`CocoDatasetWriter` owns the dataset layout: the ``images/`` folder, the categories
(``ClassMap.for_materials``: ids 1..N such as ``graphene_mono``, supercategory = material), image
entries numbered from 1 with ``id, file_name, width, height`` first and the style's own fields
after them, one annotation per ground-truth instance (compressed RLE, ``attributes`` {n_layers,
material, layer_class, flake_id}), and ``annotations.json`` written last, through a temporary file.
The styles (:mod:`flakefinder.synth.coco`, :mod:`flakefinder.synth.realistic_coco`) only render.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.artifacts import write_atomic
from flakefinder.coco import encode_rle
from flakefinder.domain import ClassMap, parse_category_name
from flakefinder.synth.chip import check_materials

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from flakefinder.synth.instances import GroundTruthInstance


def instance_annotation(
    inst: GroundTruthInstance, *, annotation_id: int, image_id: int, class_map: ClassMap
) -> dict[str, Any]:
    """COCO annotation dict (compressed RLE segmentation) of one ground-truth instance."""
    x0, y0, x1, y1 = inst.bbox_px
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": class_map.id_of(inst.material, inst.layer_class),
        "segmentation": encode_rle(inst.mask),
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
    """COCO ``categories`` of ``class_map``: ids 1..N, supercategory = the material."""
    return [
        {"id": i + 1, "name": name, "supercategory": parse_category_name(name)[0]}
        for i, name in enumerate(class_map.names)
    ]


class CocoDatasetWriter:
    """Collects image entries and their instances, then writes ``annotations.json``.

    Parameters
    ----------
    out_dir
        Dataset folder; ``out_dir/images`` is created.
    materials
        The dataset's materials (checked against the optics database; order kept).
    n_images
        How many images the caller will add (validated here: ``>= 0``).
    progress
        ``progress(done, n_images)`` after each :meth:`add_image`, or None.

    Raises
    ------
    UnknownMaterialError
        For a material the optics database lacks (from ``check_materials``).
    ValueError
        For a negative ``n_images``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        materials: Sequence[str],
        n_images: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.materials = check_materials(materials)
        if n_images < 0:
            raise ValueError(f"n_images must be >= 0, got {n_images}")
        self.n_images = n_images
        self._progress = progress
        self.root = Path(out_dir)
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        self.class_map = ClassMap.for_materials(self.materials)
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []

    def image_path(self, index: int, suffix: str) -> tuple[str, Path]:
        """``images/NNNNNN<suffix>`` of the ``index``-th image (from 0): relative and absolute."""
        file_name = f"images/{index:06d}{suffix}"
        return file_name, self.root / file_name

    def add_image(
        self,
        file_name: str,
        *,
        width_px: int,
        height_px: int,
        instances: Iterable[GroundTruthInstance],
        fields: Mapping[str, Any],
    ) -> int:
        """Record one image (already written at ``file_name``) and its instances; returns its id."""
        image_id = len(self._images) + 1
        self._images.append(
            {"id": image_id, "file_name": file_name, "width": width_px, "height": height_px}
            | dict(fields)
        )
        for inst in instances:
            self._annotations.append(
                instance_annotation(
                    inst,
                    annotation_id=len(self._annotations) + 1,
                    image_id=image_id,
                    class_map=self.class_map,
                )
            )
        if self._progress is not None:
            self._progress(image_id, self.n_images)
        return image_id

    def write(self, info: Mapping[str, Any]) -> Path:
        """Write ``annotations.json`` (compact JSON, atomically) and return its path."""
        data = {
            "info": dict(info),
            "licenses": [],
            "categories": coco_categories(self.class_map),
            "images": self._images,
            "annotations": self._annotations,
        }
        path = self.root / "annotations.json"
        write_atomic(path, json.dumps(data))
        return path
