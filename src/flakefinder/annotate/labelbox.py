"""Labelbox: read the NDJSON export (Export v2), one data row per line."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from flakefinder.annotate.shapes import LabeledImage, LabeledShape
from flakefinder.artifacts import parse_json
from flakefinder.errors import DatasetError, JsonInputError


def _objects(row: dict[str, Any]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for project in (row.get("projects") or {}).values():
        labels = project.get("labels") or []
        if labels:  # newest label of the project
            objects.extend((labels[-1].get("annotations") or {}).get("objects") or [])
    return objects


def from_ndjson(path: Path) -> list[LabeledImage]:
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    out = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = parse_json(line, what=where)
            data_row = row["data_row"]
            media = row["media_attributes"]
            width, height = int(media["width"]), int(media["height"])
        except JsonInputError as exc:
            raise DatasetError(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: not a Labelbox export row ({exc})") from None
        name = data_row.get("external_id") or PurePosixPath(str(data_row.get("row_data", ""))).name
        if not name:
            raise DatasetError(f"{where}: data row has neither external_id nor row_data")
        shapes = []
        for obj in _objects(row):
            label = str(obj.get("name") or obj.get("value"))
            if "polygon" in obj:
                pts = tuple((float(p["x"]), float(p["y"])) for p in obj["polygon"])
            elif "bounding_box" in obj:
                b = obj["bounding_box"]
                x0, y0 = float(b["left"]), float(b["top"])
                x1, y1 = x0 + float(b["width"]), y0 + float(b["height"])
                pts = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
            elif "mask" in obj:
                raise DatasetError(
                    f"{where}: object {label!r} is a mask; export polygons from Labelbox"
                )
            else:
                continue  # points, lines: not flake outlines
            shapes.append(LabeledShape(label, pts))
        out.append(LabeledImage(str(name), width, height, tuple(shapes)))
    return out


def to_ndjson_rows(
    images: list[LabeledImage], project_id: str = "flakefinder"
) -> list[dict[str, Any]]:
    """Rows in Labelbox's export layout (used to test the reader and to move data between tools)."""
    return [
        {
            "data_row": {"id": f"row{i}", "external_id": im.file_name, "row_data": im.file_name},
            "media_attributes": {"width": im.width_px, "height": im.height_px},
            "projects": {
                project_id: {
                    "labels": [
                        {
                            "annotations": {
                                "objects": [
                                    {
                                        "name": s.label,
                                        "annotation_kind": "ImagePolygon",
                                        "polygon": [{"x": x, "y": y} for x, y in s.polygon_px],
                                    }
                                    for s in im.shapes
                                ],
                                "classifications": [],
                            }
                        }
                    ]
                }
            },
        }
        for i, im in enumerate(images)
    ]
