"""COCO ground truth and detection results: loading, validation and conversion.

Ground truth is a COCO instance-segmentation dict (``images``, ``annotations``,
``categories``); categories are named ``<material>_<mono|few|thick>`` (see
:class:`flakefinder.domain.ClassMap`). Annotations may carry
``"attributes": {"n_layers": int, "material": str, "layer_class": str}``.

Results follow the COCO results format: a list of
``{"image_id", "category_id", "segmentation" (RLE), "bbox" [x, y, w, h], "score"}``;
flakefinder also writes ``"layer_count"`` (int or null) when the detector estimated one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.artifacts import load_json_file
from flakefinder.coco import decode_segmentation, load_coco
from flakefinder.domain import Detection, parse_category_name
from flakefinder.errors import DatasetError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence


@dataclass(frozen=True, eq=False)
class Instance:
    """One ground-truth or predicted instance of one image, with a full-image bool mask."""

    image_id: int
    category: str  # e.g. "graphene_mono"
    mask: np.ndarray = field(repr=False)
    score: float = 1.0
    n_layers: int | None = None  # GT layer count, or the detector's layer estimate
    category_id: int = 0  # COCO category id, 0 when not from a COCO file

    @property
    def material(self) -> str:
        return parse_category_name(self.category)[0]

    @property
    def layer_class(self) -> str:
        return parse_category_name(self.category)[1].value


def load_ground_truth(path: str | Path) -> tuple[dict[str, Any], Path]:
    r"""Read a COCO file with :func:`flakefinder.coco.load_coco` and validate it as ground truth.

    ``path`` is the file or a folder holding ``annotations.json``. Returns the normalised dict
    (see :func:`validate_coco`) and the folder that image ``file_name``\ s are relative to.
    """
    data, root = load_coco(path)
    return validate_coco(data, what=str(path)), root


def validate_coco(data: object, *, what: str = "COCO dataset") -> dict[str, Any]:
    """Check the structure of a COCO ground-truth dict; fill ``iscrowd``, ``area`` and ``id``."""
    if not isinstance(data, dict):
        raise DatasetError(f"{what}: top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{what}: missing or non-list {key!r}")
    images: dict[int, dict[str, Any]] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not all(k in im for k in ("id", "width", "height")):
            raise DatasetError(f"{what}: every image needs 'id', 'width' and 'height': {im!r}")
        if im["id"] in images:
            raise DatasetError(f"{what}: duplicate image id {im['id']}")
        images[im["id"]] = im
    cat_ids = set()
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DatasetError(f"{what}: every category needs 'id' and 'name': {c!r}")
        try:
            parse_category_name(str(c["name"]))
        except ValueError as exc:
            raise DatasetError(f"{what}: {exc}") from None
        cat_ids.add(c["id"])
    out = dict(data)
    anns = []
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not all(
            k in a for k in ("image_id", "category_id", "segmentation")
        ):
            raise DatasetError(
                f"{what}: annotation {i} needs 'image_id', 'category_id' and 'segmentation'"
            )
        if a["image_id"] not in images:
            raise DatasetError(f"{what}: annotation {i} refers to unknown image {a['image_id']}")
        if a["category_id"] not in cat_ids:
            raise DatasetError(
                f"{what}: annotation {i} refers to unknown category {a['category_id']}"
            )
        a = dict(a)
        a.setdefault("iscrowd", 0)
        a.setdefault("id", i + 1)
        if "area" not in a or "bbox" not in a:
            im = images[a["image_id"]]
            m = decode_segmentation(a["segmentation"], im["height"], im["width"])
            a.setdefault("area", float(m.sum()))
            a.setdefault("bbox", mask_bbox_xywh(m))
        anns.append(a)
    out["annotations"] = anns
    return out


def validate_results(gt: Mapping[str, Any], results: object) -> list[dict[str, Any]]:
    """Check a COCO results list against ``gt``; raise DatasetError naming the first problem."""
    if not isinstance(results, list):
        raise DatasetError("results must be a JSON list of detections")
    image_ids = {im["id"] for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise DatasetError(f"result {i} is not a JSON object")
        missing = [k for k in ("image_id", "category_id", "segmentation", "score") if k not in r]
        if missing:
            raise DatasetError(f"result {i} lacks {', '.join(missing)}")
        if r["image_id"] not in image_ids:
            raise DatasetError(
                f"result {i} refers to image id {r['image_id']}, which is not in the ground truth"
            )
        if r["category_id"] not in cat_ids:
            raise DatasetError(
                f"result {i} refers to category id {r['category_id']}, "
                "which is not in the ground truth"
            )
    return list(results)


def load_results(path: str | Path, gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Read and validate a COCO results JSON file."""
    p = Path(path)
    data = load_json_file(p, error=DatasetError, what=f"results file {p}")
    return validate_results(gt, data)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """bool (H, W) mask -> compressed COCO RLE with a JSON-friendly str ``counts``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def mask_bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight COCO box [x, y, w, h] of a bool mask (zeros for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) + 1.0 - x0, float(ys.max()) + 1.0 - y0]


def detection_mask(det: Detection, height: int, width: int) -> np.ndarray:
    """The detection's bool mask, rasterising ``polygon_px`` when it carries none."""
    if det.mask is not None:
        m = np.asarray(det.mask, dtype=bool)
        if m.shape != (height, width):
            raise DatasetError(
                f"detection mask shape {m.shape} differs from image {(height, width)}"
            )
        return m
    import cv2

    out = np.zeros((height, width), dtype=np.uint8)
    if len(det.polygon_px) >= 3:
        pts = np.round(np.asarray(det.polygon_px, dtype=np.float64)).astype(np.int32)
        cv2.fillPoly(out, [pts], 1)
    return out.astype(bool)


def detections_to_results(
    image_id: int,
    detections: Iterable[Detection],
    category_ids: Mapping[str, int],
    height: int,
    width: int,
) -> tuple[list[dict[str, Any]], int]:
    """COCO results for one image's detections; returns (results, n_dropped).

    Detections whose category is not in ``category_ids`` cannot be scored by COCO and are
    dropped (counted in ``n_dropped``).
    """
    out: list[dict[str, Any]] = []
    dropped = 0
    for det in detections:
        cid = category_ids.get(det.category)
        if cid is None:
            dropped += 1
            continue
        m = detection_mask(det, height, width)
        out.append(
            {
                "image_id": image_id,
                "category_id": cid,
                "segmentation": encode_mask(m),
                "bbox": mask_bbox_xywh(m),
                "score": float(det.confidence),
                "layer_count": det.layer_count,
            }
        )
    return out, dropped


def category_names(gt: Mapping[str, Any]) -> dict[int, str]:
    return {int(c["id"]): str(c["name"]) for c in gt["categories"]}


def _grouped_instances(
    gt: Mapping[str, Any],
    entries: Iterable[Mapping[str, Any]],
    layers_of: Callable[[Mapping[str, Any]], Any],
    score_of: Callable[[Mapping[str, Any]], float],
) -> dict[int, list[Instance]]:
    """Annotations or results ``entries`` as instances grouped by image id (all images)."""
    names = category_names(gt)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    out: dict[int, list[Instance]] = {im["id"]: [] for im in gt["images"]}
    for e in entries:
        h, w = sizes[e["image_id"]]
        n = layers_of(e)
        out[e["image_id"]].append(
            Instance(
                image_id=e["image_id"],
                category_id=e["category_id"],
                category=names[e["category_id"]],
                mask=decode_segmentation(e["segmentation"], h, w),
                score=score_of(e),
                n_layers=int(n) if n is not None else None,
            )
        )
    return out


def gt_instances(gt: Mapping[str, Any]) -> dict[int, list[Instance]]:
    """Ground-truth instances (crowd annotations skipped) grouped by image id (all images)."""
    return _grouped_instances(
        gt,
        (a for a in gt["annotations"] if not a.get("iscrowd", 0)),
        lambda a: (a.get("attributes") or {}).get("n_layers"),
        lambda a: 1.0,
    )


def result_instances(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *, score_threshold: float = 0.0
) -> dict[int, list[Instance]]:
    """Predicted instances with ``score >= score_threshold`` grouped by image id (all images)."""
    validate_results(gt, list(results))
    return _grouped_instances(
        gt,
        (r for r in results if not float(r["score"]) < score_threshold),  # NaN: kept
        lambda r: r.get("layer_count"),
        lambda r: float(r["score"]),
    )
