"""Export model predictions for annotation tools and import corrected labels as one COCO dataset."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from flakefinder.annotate import labelbox, labelme, labelstudio
from flakefinder.annotate.shapes import (
    LabeledImage,
    apply_label_map,
    from_coco,
    read_json,
    shapes_from_detections,
    to_coco,
)
from flakefinder.domain import ClassMap, Detector, ImagingContext
from flakefinder.errors import DatasetError

FORMATS = ("labelstudio", "cvat", "coco", "labelme", "labelbox")


def predict_images(
    image_paths: list[Path],
    detector: Detector,
    context: ImagingContext,
    *,
    root: Path | None = None,
) -> list[LabeledImage]:
    """Run ``detector`` over images; file names are kept relative to ``root`` (or bare names)."""
    from flakefinder.imaging import load_image

    out = []
    for p in image_paths:
        image = load_image(p)
        name = str(p.relative_to(root)) if root is not None else p.name
        shapes = shapes_from_detections(detector.detect(image, context))
        out.append(LabeledImage(name, image.shape[1], image.shape[0], shapes))
    return out


def export_preannotations(
    images: list[LabeledImage], out_dir: Path, *, class_map: ClassMap, model_version: str = ""
) -> dict[str, Path]:
    """Write Label Studio tasks (+ labelling config), COCO for CVAT, and labelme files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tasks = labelstudio.to_tasks(images, model_version=model_version)
    written["labelstudio"] = out_dir / "labelstudio_tasks.json"
    written["labelstudio"].write_text(json.dumps(tasks, indent=1))
    written["labelstudio_config"] = out_dir / "labelstudio_config.xml"
    written["labelstudio_config"].write_text(labelstudio.label_config(class_map.names))
    written["cvat"] = out_dir / "cvat_coco.json"
    written["cvat"].write_text(json.dumps(to_coco(images, class_map), indent=1))
    lm_dir = out_dir / "labelme"
    lm_dir.mkdir(exist_ok=True)
    for im in images:
        (lm_dir / (Path(im.file_name).stem + ".json")).write_text(
            json.dumps(labelme.to_file(im), indent=1)
        )
    written["labelme"] = lm_dir
    return written


def _image_sizes(image_dir: Path | None) -> dict[str, tuple[int, int]]:
    if image_dir is None:
        return {}
    from PIL import Image

    from flakefinder.imaging import IMAGE_SUFFIXES

    sizes = {}
    for p in sorted(image_dir.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(p) as im:
                sizes[str(p.relative_to(image_dir))] = im.size
                sizes.setdefault(p.name, im.size)
    return sizes


def read_annotations(
    paths: list[Path], fmt: str, *, image_dir: Path | None = None
) -> list[LabeledImage]:
    """Read corrected annotations in one of :data:`FORMATS`; images from several files are merged."""
    readers: dict[str, Callable[[Path], list[LabeledImage]]] = {
        "labelstudio": lambda p: labelstudio.from_export(
            read_json(p), image_sizes=_image_sizes(image_dir), where=str(p)
        ),
        "cvat": lambda p: from_coco(read_json(p), where=str(p)),
        "coco": lambda p: from_coco(read_json(p), where=str(p)),
        "labelme": lambda p: [labelme.from_file(p)],
        "labelbox": labelbox.from_ndjson,
    }
    if fmt not in readers:
        raise DatasetError(f"unknown annotation format {fmt!r}; choose one of {', '.join(FORMATS)}")
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    merged: dict[str, LabeledImage] = {}
    for f in files:
        for im in readers[fmt](f):
            prev = merged.get(im.file_name)
            if prev is None:
                merged[im.file_name] = im
            else:
                if (prev.width_px, prev.height_px) != (im.width_px, im.height_px):
                    raise DatasetError(
                        f"image {im.file_name} has two different sizes in the annotations"
                    )
                merged[im.file_name] = LabeledImage(
                    im.file_name, im.width_px, im.height_px, prev.shapes + im.shapes
                )
    return list(merged.values())


def import_dataset(
    paths: list[Path],
    fmt: str,
    out_dir: Path,
    *,
    image_dir: Path | None = None,
    label_map: Mapping[str, str] | None = None,
    class_map: ClassMap | None = None,
) -> Path:
    """Corrected labels -> ``out_dir/annotations.json`` (+ ``images/`` copied from ``image_dir``).

    Every image the annotations name must exist in ``image_dir`` when one is given; a
    missing image is an error rather than a silently shorter dataset.
    """
    images = apply_label_map(read_annotations(paths, fmt, image_dir=image_dir), label_map or {})
    coco = to_coco(images, class_map)
    out_dir.mkdir(parents=True, exist_ok=True)
    if image_dir is not None:
        missing = [im.file_name for im in images if not (image_dir / im.file_name).is_file()]
        if missing:
            raise DatasetError(
                f"{len(missing)} annotated images are not in {image_dir}: {missing[:5]}"
            )
        for im in images:
            dst = out_dir / "images" / im.file_name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image_dir / im.file_name, dst)
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(coco, indent=1))
    return path
