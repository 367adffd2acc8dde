"""Label Studio: polygon pre-annotations out, corrected JSON exports back in.

Label Studio stores polygon vertices in percent of the image width and height
(``value.points``) together with ``original_width``/``original_height``; we convert exactly.

Images: Label Studio serves local files only from a storage that is a *subfolder* of its
document root (``LOCAL_FILES_DOCUMENT_ROOT``). The default URL prefix therefore names the image
folder under the root: for images in ``/lab/run3/``, run Label Studio with
``LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT=/lab``, add a *Local files* storage
with the absolute path ``/lab/run3``, and the tasks point at ``/data/local-files/?d=run3/NAME``
(:func:`local_files_prefix`).

Import rules (:func:`read_export`): the newest finished (not cancelled) annotation of a task
is its labels; a task whose annotations were all skipped (cancelled) is left out; a task with
no annotation is left out unless ``accept_predictions`` (then its newest prediction counts).
Predictions exported as ids (Label Studio's default JSON export) are ignored. Two imported tasks
for the same image are refused (delete the duplicate task). The label of a region wins over
attributes kept in its ``meta``. JSON and JSON_MIN exports are both read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


def local_files_prefix(folder_name: str) -> str:
    """The URL prefix of images in ``<document root>/<folder_name>/`` (see module docstring)."""
    name = folder_name.strip("/")
    return f"/data/local-files/?d={name}/" if name else "/data/local-files/?d="


UPLOAD_PREFIX_LEN = 9
"""Label Studio names an uploaded file ``<8 hex digits>-<original name>``."""


def _upload_original(name: str) -> str | None:
    """The original name under Label Studio's upload prefix, None when ``name`` has none."""
    if (
        len(name) > UPLOAD_PREFIX_LEN
        and name[8] == "-"
        and all(c in "0123456789abcdef" for c in name[:8])
    ):
        return name[UPLOAD_PREFIX_LEN:]
    return None


def file_name_from_path(path: str, known: Iterable[str] = ()) -> str:
    """The dataset file name of an image path from an export.

    With ``known`` (file names relative to the image folder), the longest tail of ``path`` that
    is one of them wins, the name as written first; only when none matches is Label Studio's
    upload prefix (``<8 hex>-``) removed and the tails tried again, so a file that is itself
    named ``14f99233-cc7c-...jpg`` keeps its name. Without a match, the part after the last
    ``images/`` (else the base name) is the name, and the upload prefix is removed only from
    files under Label Studio's ``upload/`` folder. ``..`` never survives.
    """
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("/", ".", "..")]
    if not parts:
        return path
    original = _upload_original(parts[-1])
    stripped = None if original is None else [*parts[:-1], original]
    known_set = set(known)
    for candidate in (parts, stripped):
        if candidate is None or not known_set:
            continue
        for k in range(len(candidate)):
            tail = "/".join(candidate[k:])
            if tail in known_set:
                return tail
    if stripped is not None and "upload" in parts[:-1]:
        parts = stripped
    if "images" in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index("images")
        if last < len(parts) - 1:
            return "/".join(parts[last + 1 :])
    return parts[-1]


def _file_name(url: str, known: Iterable[str] = ()) -> str:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "d" in query:  # local-files storage: ?d=relative/path
        return file_name_from_path(query["d"][0], known)
    return file_name_from_path(unquote(parsed.path), known)


def _shapes(
    results: Iterable[Any], where: str, size: tuple[int, int]
) -> tuple[tuple[LabeledShape, ...], int, int]:
    """Shapes of one annotation; ``size`` (w, h) stands in for missing original sizes."""
    shapes = []
    width, height = size
    for r in results:
        if not isinstance(r, Mapping):
            raise DatasetError(f"{where}: a result is not an object: {r!r}")
        rtype = r.get("type")
        value = r.get("value", {})
        if rtype not in ("polygonlabels", "rectanglelabels"):
            if rtype in ("brushlabels",):
                raise DatasetError(f"{where}: brush masks are not supported; label with polygons")
            continue  # choices, text areas: not shapes
        width = int(r.get("original_width") or width)
        height = int(r.get("original_height") or height)
        if not width or not height:
            raise DatasetError(
                f"{where}: result {r.get('id')} lacks original_width/original_height and the "
                "image size is unknown; pass the image folder (--images)"
            )
        shapes.append(_shape(rtype, value, r.get("meta"), width, height, where, r.get("id")))
    return tuple(shapes), width, height


def _shape(
    rtype: str, value: Mapping[str, Any], meta: Any, width: int, height: int, where: str, rid: Any
) -> LabeledShape:
    labels = value.get(rtype) or []
    if len(labels) != 1:
        raise DatasetError(f"{where}: result {rid} has {len(labels)} labels; expected 1")
    try:
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
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: result {rid} has malformed coordinates ({exc})") from None
    attrs = dict((meta or {}).get("attributes", {})) if isinstance(meta, Mapping) else {}
    return LabeledShape(str(labels[0]), pts, None, attrs)


@dataclass
class ExportRead:
    """What :func:`read_export` found: the images to import and the tasks left out."""

    images: list[LabeledImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # tasks whose annotations were cancelled
    unreviewed: list[str] = field(default_factory=list)  # tasks with no annotation at all
    from_predictions: list[str] = field(default_factory=list)  # accepted unreviewed predictions


def _min_to_full(task: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON_MIN record (``{"image": url, "<from_name>": [values], ...}``) as a full task."""
    results = []
    for key, values in task.items():
        if not isinstance(values, list):
            continue
        for v in values:
            if not isinstance(v, Mapping):
                continue
            rtype = next((t for t in ("polygonlabels", "rectanglelabels", "brushlabels")
                          if t in v), None)  # fmt: skip
            if rtype is None:
                continue
            results.append({"from_name": key, "type": rtype, "value": dict(v),
                            "original_width": v.get("original_width"),
                            "original_height": v.get("original_height")})  # fmt: skip
    return {"id": task.get("id"), "data": {"image": task["image"]},
            "annotations": [{"result": results, "was_cancelled": False}]}  # fmt: skip


def read_export(
    tasks: Any,
    *,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    accept_predictions: bool = False,
    where: str = "Label Studio export",
) -> ExportRead:
    """Read a Label Studio JSON or JSON_MIN export by the rules of the module docstring.

    ``image_sizes`` (file name -> (w, h)) gives image sizes where the export has none and the
    names image URLs are matched against.
    """
    if not isinstance(tasks, list):
        raise DatasetError(f"{where}: expected a JSON list of tasks")
    sizes = dict(image_sizes or {})
    out = ExportRead()
    seen: dict[str, Any] = {}
    for t in tasks:
        if not isinstance(t, Mapping):
            raise DatasetError(f"{where}: a task is not an object: {str(t)[:60]}")
        if "data" not in t and "image" in t:
            t = _min_to_full(t)
        url = (t.get("data") or {}).get("image")
        if not url:
            raise DatasetError(f"{where}: task {t.get('id')} has no data.image")
        name = _file_name(str(url), sizes)
        tid = f"task {t.get('id', name)}"
        annotations = [a for a in t.get("annotations") or [] if isinstance(a, Mapping)]
        done = [a for a in annotations if not a.get("was_cancelled")]
        predictions = [p for p in t.get("predictions") or [] if isinstance(p, Mapping)]
        if done:
            source: Mapping[str, Any] = done[-1]
        elif annotations:
            out.skipped.append(f"{tid} ({name})")
            continue
        elif accept_predictions and predictions:
            source = predictions[-1]
            out.from_predictions.append(f"{tid} ({name})")
        else:
            out.unreviewed.append(f"{tid} ({name})")
            continue
        if name in seen:
            raise DatasetError(
                f"{where}: image {name} is labelled in two tasks ({seen[name]} and "
                f"{t.get('id')}); delete the duplicate task in Label Studio and export again"
            )
        seen[name] = t.get("id")
        meta = t.get("meta") or {}
        size = (int(meta.get("width", 0) or 0), int(meta.get("height", 0) or 0))
        if not all(size) and name in sizes:
            size = sizes[name]
        shapes, w, h = _shapes(source.get("result") or [], f"{where} {tid}", size)
        if not w or not h:
            raise DatasetError(f"{where}: size of image {name} unknown; pass the image folder")
        out.images.append(LabeledImage(name, w, h, shapes))
    return out


def from_export(
    tasks: Any,
    *,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    accept_predictions: bool = False,
    where: str = "Label Studio export",
) -> list[LabeledImage]:
    """The images of :func:`read_export` (tasks left out are not reported)."""
    return read_export(
        tasks, image_sizes=image_sizes, accept_predictions=accept_predictions, where=where
    ).images
