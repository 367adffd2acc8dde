"""Typed loaders for the public real micrograph sets in ``../shared/data/real`` (numpy + cv2).

Each loader returns a :class:`RealSet`: the image paths, per-image truth (outlined terraces with
their layer numbers where the labels give them), whether every flake is outlined (precision is
only meaningful then), the oxide and pixel size where known, and the licence. The sets (see the
README in the data folder):

``nbse2_2025``, ``nbse2_2024``
    NbSe2 at 150x (one picture at 100x), per-terrace COCO polygons with categories ``3L`` ...
    ``>5L``. ``NL`` is layer N; ``>5L`` / ``>=5L`` is a terrace thicker than the numbered ones
    (layer None, ``thick``). Every terrace of the pictured flakes is outlined (exhaustive).
    The pixel size is measured per image from the burned-in scale bar (5 µm at 150x).
``hbn``
    Thin hBN at 20x, one labelme file per image with the JPEG embedded (extracted unchanged into
    a cache folder); only the flakes the lab wanted are outlined (not exhaustive: recall only).
``hbn_graphene``
    One graphene picture of the same lab, COCO RLE, one bilayer outlined (not exhaustive).
``2dmatgmm``
    Eight graphene pictures (90 nm SiO2, 20x) without labels, with the lab's own colour table.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.errors import DatasetError, FlakefinderError
from flakefinder.evaluate.real_types import (
    LabelledImage,
    RealSet,
    image_size,
    int_field,
    layer_of_category,
    licence_note,
    parse_segmentation,
    set_folder,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "SET_NAMES",
    "LabelledImage",
    "RealSet",
    "layer_of_category",
    "load_real_set",
    "parse_segmentation",
]

SET_NAMES = ("nbse2_2025", "nbse2_2024", "hbn", "hbn_graphene", "2dmatgmm")
NBSE2_BAR_UM_AT_150X = 5.0  # the burned-in scale bar reads 5 µm at 150x (7.5 µm at 100x)
MAX_EMBEDDED_IMAGE_CHARS = 96 * 2**20  # base64 characters of one labelme imageData


# -- scale bar ----------------------------------------------------------------------------------


_MAG_RE = re.compile(r"(\d{2,3})\s*x", re.IGNORECASE)


def _nbse2_um_per_px(path: Path, image: np.ndarray) -> float | None:
    from flakefinder.calibration.scale_bar import scale_bar_px

    m = _MAG_RE.search(path.stem)
    bar = scale_bar_px(image)
    if m is None or bar is None:
        return None
    bar_um = NBSE2_BAR_UM_AT_150X * 150.0 / float(m.group(1))
    return bar_um / bar


# -- loaders ------------------------------------------------------------------------------------


def _coco_truth(
    coco_file: Path, folder: Path, set_name: str, max_images: int | None
) -> tuple[list[Path], list[LabelledImage]]:
    from flakefinder.artifacts import load_json_file
    from flakefinder.coco import decode_segmentation

    data = load_json_file(coco_file, error=DatasetError)
    try:
        cats = {
            int_field(c["id"], f"{coco_file.name} category"): layer_of_category(str(c["name"]))
            for c in data["categories"]
        }
        entries = sorted(data["images"], key=lambda e: str(e["file_name"]))
        anns = list(data["annotations"])
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{coco_file}: not a COCO file ({exc})") from None
    if max_images is not None:
        entries = entries[:max_images]
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in anns:
        by_image.setdefault(int_field(a.get("image_id"), f"{coco_file.name} annotation"), []).append(a)
    paths: list[Path] = []
    truth: list[LabelledImage] = []
    for e in entries:
        p = folder / Path(str(e["file_name"])).name
        if not p.is_file():
            raise DatasetError(f"{set_name}: image {p.name!r} of {coco_file.name} not found")
        h, w = int_field(e["height"], p.name), int_field(e["width"], p.name)
        if image_size(p) != (w, h):
            raise DatasetError(f"{set_name}: {p.name} is not {w} x {h} px as {coco_file.name} says")
        masks: list[np.ndarray] = []
        layers: list[int | None] = []
        thick: list[bool] = []
        for k, a in enumerate(by_image.get(int_field(e["id"], p.name), [])):
            what = f"{coco_file.name}, {p.name}, annotation {k}"
            cat = int_field(a.get("category_id"), what)
            if cat not in cats:
                raise DatasetError(f"{what}: unknown category id {cat}")
            seg = parse_segmentation(a.get("segmentation"), what=what)
            mask = decode_segmentation(seg, h, w, what=what)
            if not mask.any():
                raise DatasetError(f"{what}: empty outline")
            masks.append(mask)
            layers.append(cats[cat][0])
            thick.append(cats[cat][1])
        paths.append(p)
        truth.append(LabelledImage(p, tuple(masks), tuple(layers), tuple(thick)))
    return paths, truth


def _load_nbse2(root: Path, name: str, max_images: int | None, scale_bar: bool) -> RealSet:
    from flakefinder.imaging import load_image

    sub, labels = {
        "nbse2_2025": ("set_2025_01", "labels_my-project-name_2025-01-10-04-51-39.json"),
        "nbse2_2024": ("set_2024_12", "labels_my-project-name_2024-12-17-12-04-35.json"),
    }[name]
    folder = set_folder(root, f"nbse2_flakedetectron/{sub}", name)
    paths, truth = _coco_truth(folder / labels, folder, name, max_images)
    um = tuple(_nbse2_um_per_px(p, load_image(p)) if scale_bar else None for p in paths)
    measured = [v for v in um if v is not None]
    return RealSet(
        name=name,
        material="NbSe2",
        objective="150x",
        images=tuple(paths),
        truth=tuple(truth),
        layers_known=True,
        exhaustive=True,
        oxide_nm=None,
        um_per_px=float(np.median(measured)) if measured else None,
        um_per_px_images=um,
        licence=licence_note(folder.parent, "LICENSE", "GPL-3.0"),
        source="github dpoteryayev/flakedetectron (commit 0291820)",
    )


def _extract(data_b64: str, cache_dir: Path, stem: str, what: str) -> Path:
    """The embedded image's bytes, unchanged, as ``cache_dir/<stem>.<ext>`` (kept if identical)."""
    from flakefinder.artifacts import write_atomic

    if len(data_b64) > MAX_EMBEDDED_IMAGE_CHARS:
        raise DatasetError(f"{what}: embedded image of {len(data_b64)} characters is too large")
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (ValueError, TypeError):
        raise DatasetError(f"{what}: imageData is not base64") from None
    if data[:3] == b"\xff\xd8\xff":
        ext = "jpg"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        ext = "png"
    else:
        raise DatasetError(f"{what}: the embedded image is neither JPEG nor PNG")
    out = cache_dir / f"{stem}.{ext}"
    try:
        if out.is_file() and out.stat().st_size == len(data) and out.read_bytes() == data:
            return out
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot use the cache folder {cache_dir}: {exc}") from None
    try:
        write_atomic(out, data)
    except FlakefinderError as exc:
        raise DatasetError(f"cannot write {out}: {exc}") from None
    return out


def _load_hbn(root: Path, cache_dir: Path, max_images: int | None) -> RealSet:
    from flakefinder.artifacts import load_json_file
    from flakefinder.coco import decode_segmentation

    folder = set_folder(root, "hbn_autoflakedet/labelme", "hbn")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DatasetError(f"hbn: no labelme files in {folder}")
    if max_images is not None:
        files = files[:max_images]
    paths: list[Path] = []
    truth: list[LabelledImage] = []
    for f in files:
        d = load_json_file(f, error=DatasetError)
        try:
            h, w = int_field(d["imageHeight"], f.name), int_field(d["imageWidth"], f.name)
            shapes = list(d["shapes"])
            img = _extract(str(d["imageData"]), cache_dir, f.stem, f.name)
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{f}: not a labelme file with an embedded image ({exc})") from None
        if image_size(img) != (w, h):
            raise DatasetError(f"hbn: the image in {f.name} is not {w} x {h} px as it says")
        masks: list[np.ndarray] = []
        for k, s in enumerate(shapes):
            what = f"{f.name}, shape {k}"
            if str(s.get("label")) != "1":
                continue
            if s.get("shape_type", "polygon") != "polygon":
                raise DatasetError(f"{what}: shape type {s.get('shape_type')!r} (polygons only)")
            try:
                flat = [float(v) for pt in s["points"] for v in pt]
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{what}: points are not [[x, y], ...]") from None
            mask = decode_segmentation([flat], h, w, what=what)
            if not mask.any():
                raise DatasetError(f"{what}: empty outline")
            masks.append(mask)
        paths.append(img)
        truth.append(LabelledImage(img, tuple(masks), (None,) * len(masks), (False,) * len(masks)))
    return RealSet(
        name="hbn",
        material="hBN",
        objective="20x",
        images=tuple(paths),
        truth=tuple(truth),
        layers_known=False,
        exhaustive=False,
        oxide_nm=None,
        um_per_px=None,
        licence=licence_note(folder.parent, "LICENSE", "Apache-2.0"),
        source="github kleinlabphys/autoflakedet (commit fdb4913)",
    )


def _load_hbn_graphene(root: Path, max_images: int | None) -> RealSet:
    folder = set_folder(root, "hbn_autoflakedet/graphene", "hbn_graphene")
    paths, truth = _coco_truth(
        folder / "annotations_coco_rle.json", folder, "hbn_graphene", max_images
    )
    return RealSet(
        name="hbn_graphene",
        material="graphene",
        objective="20x",
        images=tuple(paths),
        truth=tuple(truth),
        layers_known=True,
        exhaustive=False,
        oxide_nm=None,
        um_per_px=None,
        licence=licence_note(folder.parent, "LICENSE", "Apache-2.0"),
        source="github kleinlabphys/autoflakedet (commit fdb4913)",
    )


def _load_2dmatgmm(root: Path, max_images: int | None) -> RealSet:
    from flakefinder.artifacts import load_json_file

    folder = set_folder(root, "2dmatgmm", "2dmatgmm")
    paths = sorted((folder / "images").glob("*.jpg"))
    if not paths:
        raise DatasetError(f"2dmatgmm: no images in {folder / 'images'}")
    if max_images is not None:
        paths = paths[:max_images]
    table = folder / "gmm_parameters" / "graphene_90nm.json"
    if not table.is_file():
        raise DatasetError(f"2dmatgmm: the lab's colour table {table} is missing")
    field = load_json_file(folder / "scan_magnification" / "20x.json", error=DatasetError)
    try:
        view_x_um = float(field["view_field_x"]) * 1000.0  # the file holds millimetres
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"2dmatgmm: bad scan_magnification/20x.json ({exc})") from None
    return RealSet(
        name="2dmatgmm",
        material="graphene",
        objective="20x",
        images=tuple(paths),
        truth=None,
        layers_known=False,
        exhaustive=False,
        oxide_nm=90.0,
        um_per_px=view_x_um / image_size(paths[0])[0],
        licence=licence_note(folder, "LICENSE-2DMatGMM", "MIT"),
        source="github Jaluus/2DMatGMM and Jaluus/2DMatGMM-System",
        lab_table=table,
    )


def load_real_set(
    name: str,
    root: Path | str,
    *,
    cache_dir: Path | str | None = None,
    max_images: int | None = None,
    measure_scale_bar: bool = True,
) -> RealSet:
    """Load the real set ``name`` from ``root`` (the ``shared/data/real`` folder).

    Parameters
    ----------
    name
        One of :data:`SET_NAMES`.
    root
        The folder holding the sets.
    cache_dir
        Where ``hbn`` extracts its embedded JPEGs (default: ``.cache/real/hbn`` in the current
        folder, git-ignored in the repository).
    max_images
        Load only the first N images (sorted by file name).
    measure_scale_bar
        Measure the pixel size from the NbSe2 pictures' scale bars (decodes every picture);
        False leaves ``um_per_px`` None.

    Raises
    ------
    DatasetError
        Unknown set name, missing folder or file, or labels that do not match the pictures.
    """
    if max_images is not None and max_images < 1:
        raise DatasetError(f"max_images must be at least 1, got {max_images}")
    r = Path(root)
    loaders: dict[str, Callable[[], RealSet]] = {
        "nbse2_2025": lambda: _load_nbse2(r, "nbse2_2025", max_images, measure_scale_bar),
        "nbse2_2024": lambda: _load_nbse2(r, "nbse2_2024", max_images, measure_scale_bar),
        "hbn": lambda: _load_hbn(
            r, Path(cache_dir) if cache_dir else Path(".cache/real/hbn"), max_images
        ),
        "hbn_graphene": lambda: _load_hbn_graphene(r, max_images),
        "2dmatgmm": lambda: _load_2dmatgmm(r, max_images),
    }
    if name not in loaders:
        raise DatasetError(f"unknown real set {name!r}; available: {', '.join(SET_NAMES)}")
    return loaders[name]()
