"""Label Studio: polygon pre-annotations out, corrected JSON exports back in.

Label Studio stores polygon vertices in percent of the image width and height
(``value.points``) together with ``original_width``/``original_height``; we convert exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from flakefinder.annotate.shapes import LabeledImage, LabeledShape
from flakefinder.errors import DatasetError

FROM_NAME = "label"
TO_NAME = "image"


def label_config(labels: Iterable[str]) -> str:
    """The labelling interface XML that matches the exported tasks."""
    items = "\n".join(f'    <Label value="{label}"/>' for label in labels)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <PolygonLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n'
        f"{items}\n  </PolygonLabels>\n</View>\n"
    )


def to_tasks(
    images: Iterable[LabeledImage],
    *,
    image_url_prefix: str = "/data/local-files/?d=",
    model_version: str = "",
) -> list[dict[str, Any]]:
    """Label Studio tasks with the shapes as ``predictions`` (pre-annotations)."""
    tasks = []
    for im in images:
        results = []
        for k, s in enumerate(im.shapes):
            result: dict[str, Any] = {
                "id": f"r{k}",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": "polygonlabels",
                "original_width": im.width_px,
                "original_height": im.height_px,
                "image_rotation": 0,
                "value": {
                    "points": [
                        [100.0 * x / im.width_px, 100.0 * y / im.height_px] for x, y in s.polygon_px
                    ],
                    "polygonlabels": [s.label],
                },
            }
            if s.score is not None:
                result["score"] = s.score
            if s.attributes:
                result["meta"] = {"attributes": dict(s.attributes)}
            results.append(result)
        scores = [s.score for s in im.shapes if s.score is not None]
        tasks.append(
            {
                "data": {"image": image_url_prefix + im.file_name},
                "meta": {"width": im.width_px, "height": im.height_px},
                "predictions": [
                    {
                        "model_version": model_version,
                        "score": min(scores) if scores else 1.0,
                        "result": results,
                    }
                ],
            }
        )
    return tasks


def _file_name(url: str) -> str:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "d" in query:  # local-files storage: ?d=relative/path
        path = query["d"][0]
        return path.split("images/", 1)[-1] if "images/" in path else PurePosixPath(path).name
    name = PurePosixPath(unquote(parsed.path)).name
    # Label Studio prefixes uploaded files with "<8 hex>-"
    if len(name) > 9 and name[8] == "-" and all(c in "0123456789abcdef" for c in name[:8]):
        name = name[9:]
    return name


def _shapes(
    results: Iterable[Mapping[str, Any]], where: str
) -> tuple[tuple[LabeledShape, ...], int, int]:
    shapes = []
    width = height = 0
    for r in results:
        rtype = r.get("type")
        value = r.get("value", {})
        if rtype not in ("polygonlabels", "rectanglelabels"):
            if rtype in ("brushlabels",):
                raise DatasetError(f"{where}: brush masks are not supported; label with polygons")
            continue  # choices, text areas: not shapes
        width = int(r.get("original_width", width) or width)
        height = int(r.get("original_height", height) or height)
        if not width or not height:
            raise DatasetError(
                f"{where}: result {r.get('id')} lacks original_width/original_height"
            )
        labels = value.get(rtype) or []
        if len(labels) != 1:
            raise DatasetError(
                f"{where}: result {r.get('id')} has {len(labels)} labels; expected 1"
            )
        if rtype == "polygonlabels":
            pts = tuple(
                (float(x) * width / 100.0, float(y) * height / 100.0) for x, y in value["points"]
            )
        else:
            if value.get("rotation"):
                raise DatasetError(f"{where}: rotated rectangles are not supported")
            x0 = float(value["x"]) * width / 100.0
            y0 = float(value["y"]) * height / 100.0
            x1 = x0 + float(value["width"]) * width / 100.0
            y1 = y0 + float(value["height"]) * height / 100.0
            pts = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        attrs = dict((r.get("meta") or {}).get("attributes", {}))
        shapes.append(LabeledShape(str(labels[0]), pts, None, attrs))
    return tuple(shapes), width, height


def from_export(
    tasks: Any,
    *,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    where: str = "Label Studio export",
) -> list[LabeledImage]:
    """Read a Label Studio JSON export: the newest non-cancelled annotation of each task.

    Tasks without a finished annotation fall back to their predictions (unreviewed
    pre-annotations are kept, so nothing is lost). ``image_sizes`` (file name -> (w, h))
    supplies sizes for images whose annotation holds no shapes.
    """
    if not isinstance(tasks, list):
        raise DatasetError(f"{where}: expected a JSON list of tasks")
    out = []
    for t in tasks:
        url = (t.get("data") or {}).get("image")
        if not url:
            raise DatasetError(f"{where}: task {t.get('id')} has no data.image")
        name = _file_name(str(url))
        done = [a for a in t.get("annotations", []) if not a.get("was_cancelled")]
        source = done[-1] if done else (t.get("predictions") or [{}])[-1]
        shapes, w, h = _shapes(source.get("result", []), f"{where} task {t.get('id', name)}")
        if not w:
            meta = t.get("meta") or {}
            w, h = int(meta.get("width", 0)), int(meta.get("height", 0))
        if not w and image_sizes and name in image_sizes:
            w, h = image_sizes[name]
        if not w:
            raise DatasetError(f"{where}: size of image {name} unknown; pass the image folder")
        out.append(LabeledImage(name, w, h, shapes))
    return out
