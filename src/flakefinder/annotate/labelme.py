"""labelme: one JSON file per image with polygon/rectangle shapes."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from flakefinder.annotate.shapes import LabeledImage, LabeledShape, read_json
from flakefinder.errors import DatasetError


def from_file(path: Path) -> LabeledImage:
    data = read_json(path)
    try:
        width, height = int(data["imageWidth"]), int(data["imageHeight"])
        name = PurePath(str(data["imagePath"]).replace("\\", "/")).name
        raw_shapes = data.get("shapes", [])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a labelme file (missing {exc})") from None
    shapes = []
    for k, s in enumerate(raw_shapes):
        kind = s.get("shape_type") or "polygon"
        pts = [(float(x), float(y)) for x, y in s["points"]]
        if kind == "rectangle":
            (x0, y0), (x1, y1) = pts[0], pts[1]
            pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        elif kind != "polygon":
            raise DatasetError(
                f"{path}: shape {k} is a {kind}; only polygons and rectangles describe flakes"
            )
        shapes.append(LabeledShape(str(s["label"]), tuple(pts), None, dict(s.get("flags") or {})))
    return LabeledImage(name, width, height, tuple(shapes))


def to_file(image: LabeledImage) -> dict[str, Any]:
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {
                "label": s.label,
                "points": [list(p) for p in s.polygon_px],
                "group_id": None,
                "description": "" if s.score is None else f"score={s.score:.3f}",
                "shape_type": "polygon",
                "flags": {},
            }
            for s in image.shapes
        ],
        "imagePath": image.file_name,
        "imageData": None,
        "imageHeight": image.height_px,
        "imageWidth": image.width_px,
    }
