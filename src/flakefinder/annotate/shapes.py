"""Tool-neutral annotation values shared by every format reader and writer (numpy free).

A :class:`LabeledImage` is one image with its polygons; every reader returns a list of them and
every writer takes one. Labels are detection category names such as ``graphene_mono``
(see :func:`flakefinder.domain.category_name`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flakefinder.artifacts import load_json_file
from flakefinder.domain import ClassMap, Detection, LayerClass, parse_category_name
from flakefinder.errors import DatasetError
from flakefinder.geometry import polygon_area, polygon_bbox

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class LabeledShape:
    label: str
    polygon_px: Polygon  # (x, y) pixel vertices, not closed
    score: float | None = None  # present for model pre-annotations
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabeledImage:
    file_name: str  # path relative to the dataset's image folder
    width_px: int
    height_px: int
    shapes: tuple[LabeledShape, ...] = ()


def shapes_from_detections(detections: Iterable[Detection]) -> tuple[LabeledShape, ...]:
    out = []
    for d in detections:
        attrs: dict[str, Any] = {"material": d.material, "layer_class": d.layer_class.value}
        if d.layer_count is not None:
            attrs["n_layers"] = int(d.layer_count)
        out.append(LabeledShape(d.category, tuple(d.polygon_px), float(d.confidence), attrs))
    return tuple(out)


def check_polygon(points: Polygon, *, where: str) -> Polygon:
    if len(points) < 3:
        raise DatasetError(f"{where}: polygon has {len(points)} vertices; at least 3 are needed")
    return points


def polygon_bbox_xywh(points: Polygon) -> list[float]:
    x0, y0, x1, y1 = polygon_bbox(points)
    return [x0, y0, x1 - x0, y1 - y0]


def apply_label_map(images: list[LabeledImage], label_map: Mapping[str, str]) -> list[LabeledImage]:
    """Rename labels (e.g. ``{"graphene 1L": "graphene_mono"}``); unmapped labels stay."""
    if not label_map:
        return images
    return [
        LabeledImage(
            im.file_name,
            im.width_px,
            im.height_px,
            tuple(
                LabeledShape(label_map.get(s.label, s.label), s.polygon_px, s.score, s.attributes)
                for s in im.shapes
            ),
        )
        for im in images
    ]


def class_map_for(images: Iterable[LabeledImage], class_map: ClassMap | None) -> ClassMap:
    """The class map to write: ``class_map`` (checked) or the one the labels imply."""
    labels = sorted({s.label for im in images for s in im.shapes})
    bad = []
    for label in labels:
        try:
            parse_category_name(label)
        except ValueError:
            bad.append(label)
    if bad:
        raise DatasetError(
            f"labels {bad} are not detection categories of the form <material>_<mono|few|thick>; "
            "rename them with a label map (--label-map old=new)"
        )
    if class_map is None:
        materials = sorted({parse_category_name(label)[0] for label in labels})
        return ClassMap.for_materials(materials)
    unknown = [label for label in labels if label not in class_map.names]
    if unknown:
        raise DatasetError(f"labels {unknown} are not in the class map {list(class_map.names)}")
    return class_map


def label_attributes(label: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of a shape with the label winning over stale ones.

    A region relabelled in a tool (say from ``graphene_few`` to ``graphene_thick``) may keep
    the attributes of its old label; ``material`` and ``layer_class`` always follow the label,
    and an ``n_layers`` outside the label's class is dropped.
    """
    material, layer_class = parse_category_name(label)
    attrs = {k: v for k, v in attributes.items() if k not in ("material", "layer_class")}
    n = attrs.get("n_layers")
    if n is not None:
        try:
            consistent = LayerClass.from_layers(int(n)) == layer_class
        except (TypeError, ValueError):
            consistent = False
        if not consistent:
            del attrs["n_layers"]
    return {"material": material, "layer_class": layer_class.value, **attrs}


def to_coco(images: list[LabeledImage], class_map: ClassMap | None = None) -> dict[str, Any]:
    """One COCO instance-segmentation dataset (polygon segmentation) from labelled images."""
    cmap = class_map_for(images, class_map)
    coco_images = []
    annotations: list[dict[str, Any]] = []
    seen: set[str] = set()
    for image_id, im in enumerate(images, start=1):
        if im.file_name in seen:
            raise DatasetError(f"image {im.file_name!r} appears twice; merge its annotations first")
        seen.add(im.file_name)
        coco_images.append(
            {
                "id": image_id,
                "file_name": im.file_name,
                "width": im.width_px,
                "height": im.height_px,
            }
        )
        for s in im.shapes:
            poly = check_polygon(s.polygon_px, where=f"{im.file_name} label {s.label}")
            material, layer_class = parse_category_name(s.label)
            attrs = label_attributes(s.label, s.attributes)
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cmap.id_of(material, layer_class),
                "segmentation": [[c for p in poly for c in p]],
                "bbox": polygon_bbox_xywh(poly),
                "area": polygon_area(poly),
                "iscrowd": 0,
                "attributes": attrs,
            }
            if s.score is not None:
                ann["score"] = s.score
            annotations.append(ann)
    categories = [
        {"id": i + 1, "name": name, "supercategory": parse_category_name(name)[0]}
        for i, name in enumerate(cmap.names)
    ]
    return {"images": coco_images, "annotations": annotations, "categories": categories}


def from_coco(data: Mapping[str, Any], *, where: str = "COCO file") -> list[LabeledImage]:
    """Read a COCO dataset with polygon segmentations (CVAT's COCO 1.0 export, ours)."""
    try:
        cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        images = {int(i["id"]): i for i in data["images"]}
        anns = list(data.get("annotations", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: not a COCO dataset ({exc})") from None
    by_image: dict[int, list[LabeledShape]] = {i: [] for i in images}
    for a in anns:
        image_id = int(a["image_id"])
        if image_id not in images:
            raise DatasetError(f"{where}: annotation {a.get('id')} names unknown image {image_id}")
        cat = int(a["category_id"])
        if cat not in cats:
            raise DatasetError(f"{where}: annotation {a.get('id')} names unknown category {cat}")
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            raise DatasetError(
                f"{where}: annotation {a.get('id')} is an RLE mask; export polygons from the tool"
            )
        if not seg:
            continue  # empty mask: dropped (documented in the CLI help)
        for ring in seg:
            pts = tuple((float(ring[i]), float(ring[i + 1])) for i in range(0, len(ring) - 1, 2))
            if len(pts) < 3:
                continue
            attrs = dict(a.get("attributes") or {})
            attrs = {k: v for k, v in attrs.items() if k in ("n_layers", "material", "layer_class")}
            score = a.get("score")
            by_image[image_id].append(
                LabeledShape(cats[cat], pts, None if score is None else float(score), attrs)
            )
    return [
        LabeledImage(
            str(images[i]["file_name"]),
            int(images[i]["width"]),
            int(images[i]["height"]),
            tuple(by_image[i]),
        )
        for i in sorted(images)
    ]


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    return load_json_file(path, error=DatasetError)
