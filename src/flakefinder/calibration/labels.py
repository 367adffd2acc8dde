"""Read calibration regions from label files and instance-mask folders.

Label formats (``--labels``): COCO (layer number from an ``n_layers`` attribute or the category
name), labelme JSON files (one file or a folder), Label Studio JSON exports, and semantic PNGs
(a folder with one PNG per image stem, pixel value = layer number, 0 = substrate). Layer names
understood: ``1``, ``2L``, ``3 layers``, ``graphene_3``, ``graphene_2L``, ``graphene_mono``;
thickness classes without a number (``few``, ``thick``, ``bulk``) are skipped.

Instance masks (``--masks DIR``): one PNG per image stem, pixel = instance id, 0 = background;
no layer numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flakefinder.calibration.api import LabelledRegion
from flakefinder.errors import CalibrationError, DatasetError

__all__ = ["LabelSet", "parse_layer_label", "read_instance_masks", "read_labels"]

_MASK_SUFFIXES = (".png", ".tif", ".tiff")
_LAYER_RE = re.compile(
    r"^(?:(?P<mat>[A-Za-z][\w-]*?)[ _-]+)?(?P<n>\d+)\s*(?:l|layers?)?$", re.IGNORECASE
)
_MONO = {"mono", "monolayer", "single"}
_CLASSES = {"few", "thick", "bulk", "multi", "multilayer"}


@dataclass(frozen=True)
class LabelSet:
    """Regions read from labels, plus what was skipped and which materials the labels named."""

    regions: tuple[LabelledRegion, ...]
    skipped: int
    materials_seen: tuple[str, ...]


def _canonical(material: str) -> str | None:
    from flakefinder.errors import UnknownMaterialError
    from flakefinder.optics import get_material

    try:
        return get_material(material).name
    except UnknownMaterialError:
        return None


def parse_layer_label(
    label: str, attributes: Mapping[str, Any] | None = None
) -> tuple[str | None, int | None]:
    """``(material or None, n_layers or None)`` of a label such as ``graphene_3`` or ``2L``.

    An ``n_layers`` (or ``material``) attribute wins over what the label text says.
    """
    attrs = dict(attributes or {})
    mat = attrs.get("material")
    n_attr = attrs.get("n_layers")
    text = str(label).strip()
    n: int | None = None
    m = _LAYER_RE.match(text)
    if m is not None:
        n = int(m.group("n"))
        mat = mat or m.group("mat")
    else:
        head, sep, tail = text.rpartition("_")
        word = (tail if sep else text).lower()
        if sep and head:
            mat = mat or head
        if word in _MONO:
            n = 1
        elif not sep and word not in _CLASSES and text:
            mat = mat or text
    if n_attr is not None:
        if isinstance(n_attr, bool):
            raise CalibrationError(f"label {label!r}: n_layers {n_attr!r} is not a number")
        try:
            n = int(n_attr)
        except (TypeError, ValueError):
            raise CalibrationError(
                f"label {label!r}: n_layers {n_attr!r} is not a number"
            ) from None
    return (str(mat) if mat else None), n


def _fill(polygon: Sequence[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    pts = np.round(np.asarray(polygon, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def _image_index(names: Sequence[str], file_name: str) -> int | None:
    stem = Path(file_name.replace("\\", "/")).stem
    for i, n in enumerate(names):
        if Path(n).stem == stem:
            return i
    return None


def _read_png_labels(
    folder: Path, names: Sequence[str], shapes: Sequence[tuple[int, int]]
) -> list[tuple[int, np.ndarray, int]]:
    out = []
    for i, name in enumerate(names):
        f = _find(folder, Path(name).stem)
        if f is None:
            continue
        lab = _read_mask_png(f, shapes[i], name)
        for n in sorted(int(v) for v in np.unique(lab) if v > 0):
            k, comp = cv2.connectedComponents((lab == n).astype(np.uint8), connectivity=8)
            for c in range(1, k):
                out.append((i, comp == c, n))
    return out


def _find(folder: Path, stem: str) -> Path | None:
    for suf in _MASK_SUFFIXES:
        p = folder / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def _read_mask_png(path: Path, shape: tuple[int, int], image_name: str) -> np.ndarray:
    if path.stat().st_size > 200 * 1024 * 1024:
        raise CalibrationError(f"{path}: mask file too large")
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise CalibrationError(f"{path}: not a readable image")
    if a.ndim == 3:
        if a.shape[2] == 4:
            a = a[:, :, :3]
        if np.all(a == a[:, :, :1]):
            a = a[:, :, 0]
        else:  # colour-coded instances: one id per distinct colour, black = background
            flat = a.reshape(-1, a.shape[2]).astype(np.int64)
            keys = flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]
            _, inv = np.unique(keys, return_inverse=True)
            ids = inv.reshape(-1) + 1
            ids[keys == 0] = 0
            a = ids.reshape(a.shape[:2])
    if a.shape[:2] != shape:
        raise CalibrationError(
            f"mask {path.name} is {a.shape[1]}x{a.shape[0]} px but image {image_name} is "
            f"{shape[1]}x{shape[0]} px"
        )
    return np.asarray(a)


def read_instance_masks(
    folder: str | Path, names: Sequence[str], shapes: Sequence[tuple[int, int]]
) -> list[LabelledRegion]:
    """One region per instance id in ``folder/<image stem>.png`` (every image needs a mask)."""
    d = Path(folder)
    if not d.is_dir():
        raise CalibrationError(f"mask folder not found: {d}")
    out: list[LabelledRegion] = []
    for i, name in enumerate(names):
        f = _find(d, Path(name).stem)
        if f is None:
            raise CalibrationError(
                f"no instance mask for image {name} in {d} (expected {Path(name).stem}.png)"
            )
        ids = _read_mask_png(f, shapes[i], name)
        values = [int(v) for v in np.unique(ids) if v != 0]
        if not values:
            raise CalibrationError(f"instance mask {f} is empty (no pixel is non-zero)")
        for v in values:
            out.append(LabelledRegion(i, ids == v, None))
    return out


def _coco_regions(
    path: Path, names: Sequence[str], shapes: Sequence[tuple[int, int]]
) -> list[tuple[int, np.ndarray, str, dict[str, Any]]]:
    from flakefinder.evaluate.cocodata import decode_segmentation, load_coco

    try:
        data, _root = load_coco(path)
    except DatasetError as exc:
        raise CalibrationError(str(exc)) from None
    cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    images = {int(im["id"]): im for im in data["images"]}
    out = []
    for a in data["annotations"]:
        im = images[int(a["image_id"])]
        idx = _image_index(names, str(im["file_name"]))
        if idx is None:
            continue
        h, w = shapes[idx]
        if (int(im["height"]), int(im["width"])) != (h, w):
            raise CalibrationError(
                f"{path}: image {im['file_name']} is {im['width']}x{im['height']} px in the labels "
                f"but {w}x{h} px on disk"
            )
        try:
            mask = decode_segmentation(a.get("segmentation"), h, w)
        except DatasetError as exc:
            raise CalibrationError(f"{path}: annotation {a.get('id')}: {exc}") from None
        attrs = dict(a.get("attributes") or {})
        out.append((idx, mask, cats.get(int(a["category_id"]), ""), attrs))
    return out


def read_labels(
    path: str | Path,
    names: Sequence[str],
    shapes: Sequence[tuple[int, int]],
    *,
    material: str,
) -> LabelSet:
    """Labelled regions for the images ``names`` (file names) of sizes ``shapes`` (H, W)."""
    from flakefinder.annotate import labelme, labelstudio
    from flakefinder.annotate.shapes import read_json

    p = Path(path)
    want = _canonical(material) or material
    raw: list[tuple[int, np.ndarray, str, dict[str, Any]]] = []
    if p.is_dir() and any(_find(p, Path(n).stem) for n in names):
        for i, m, n in _read_png_labels(p, names, shapes):
            raw.append((i, m, str(n), {"n_layers": n}))
    else:
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        if not files or not all(f.is_file() for f in files):
            raise CalibrationError(f"label file or folder not found (or empty): {p}")
        for f in files:
            try:
                data = read_json(f)
            except DatasetError as exc:
                raise CalibrationError(str(exc)) from None
            if isinstance(data, dict) and "annotations" in data and "images" in data:
                raw.extend(_coco_regions(f, names, shapes))
                continue
            try:
                if isinstance(data, dict) and "shapes" in data:
                    limages = [labelme.from_file(f)]
                elif isinstance(data, list):
                    sizes = {Path(n).name: (s[1], s[0]) for n, s in zip(names, shapes, strict=True)}
                    limages = labelstudio.from_export(data, image_sizes=sizes, where=str(f))
                else:
                    raise CalibrationError(
                        f"{f}: not a COCO, labelme or Label Studio file (or a folder of label PNGs)"
                    )
            except DatasetError as exc:
                raise CalibrationError(str(exc)) from None
            for li in limages:
                idx = _image_index(names, li.file_name)
                if idx is None:
                    continue
                h, w = shapes[idx]
                if (li.height_px, li.width_px) != (h, w):
                    raise CalibrationError(
                        f"{f}: image {li.file_name} is {li.width_px}x{li.height_px} px in the "
                        f"labels but {w}x{h} px on disk"
                    )
                for s in li.shapes:
                    raw.append((idx, _fill(s.polygon_px, (h, w)), s.label, dict(s.attributes)))
    regions: list[LabelledRegion] = []
    skipped = 0
    seen: set[str] = set()
    for idx, mask, label, attrs in raw:
        mat, n_layers = parse_layer_label(label, attrs)
        canon = _canonical(mat) if mat else None
        if canon is not None:
            seen.add(canon)
        if canon is not None and canon != want:
            skipped += 1
            continue
        if n_layers is None or not mask.any():
            skipped += 1
            continue
        regions.append(LabelledRegion(idx, mask, n_layers))
    if not regions:
        if seen and want not in seen:
            raise CalibrationError(
                f"the labels are for {', '.join(sorted(seen))}, not {want}: calibrate the "
                "material the labels describe (--material)"
            )
        raise CalibrationError(
            f"no labelled {want} region with a layer number for these images in {p} "
            f"({len(raw)} shapes read, {skipped} without a layer number or for another material)"
        )
    return LabelSet(tuple(regions), skipped, tuple(sorted(seen)))
