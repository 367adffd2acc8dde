"""Training input in any supported annotation format, converted to a COCO dataset first.

``flakefinder train`` takes a COCO dataset folder or file directly; a Label Studio JSON export,
a labelme file or folder, a Labelbox NDJSON export or a CVAT/Label Studio COCO export whose
image paths do not resolve goes through the importers of :mod:`flakefinder.annotate` into a
temporary COCO dataset (annotations plus copied images).
"""

from __future__ import annotations

from pathlib import Path

from flakefinder.artifacts import load_json_file
from flakefinder.errors import DatasetError

INPUT_FORMATS = ("auto", "coco", "labelstudio", "labelme", "labelbox", "cvat")


def _sniff_json(path: Path) -> str:
    data = load_json_file(path, error=DatasetError)
    if isinstance(data, list):
        return "labelstudio"
    if isinstance(data, dict) and "shapes" in data:
        return "labelme"
    if isinstance(data, dict) and "images" in data and "categories" in data:
        return "coco"
    raise DatasetError(
        f"{path}: cannot tell the annotation format (not COCO, Label Studio or labelme); "
        "pass --format"
    )


def detect_format(path: Path) -> str:
    """The annotation format of ``path`` (a file or a dataset folder)."""
    if path.is_dir():
        if (path / "annotations.json").is_file():
            return "coco"
        found = sorted(path.glob("*.json"))
        if not found:
            raise DatasetError(f"{path}: no annotations.json and no .json annotation files")
        kinds = {_sniff_json(p) for p in found}
        if kinds == {"labelme"}:
            return "labelme"
        if len(found) == 1:
            return kinds.pop()
        raise DatasetError(f"{path}: several .json files of kinds {sorted(kinds)}; pass one file")
    if not path.is_file():
        raise DatasetError(f"no such dataset folder or annotation file: {path}")
    if path.suffix.lower() == ".ndjson":
        return "labelbox"
    return _sniff_json(path)


def _coco_points_elsewhere(path: Path) -> bool:
    """True when a COCO file names images outside its folder (``../…``, tool exports)."""
    from flakefinder.coco import load_coco
    from flakefinder.train.data import resolve_dataset

    ann, _ = resolve_dataset(path)
    coco, _ = load_coco(ann)
    return any(".." in Path(str(img.get("file_name", ""))).parts for img in coco["images"])


def training_dataset(path: Path, fmt: str, *, images: Path | None, scratch: Path) -> Path:
    """A COCO dataset for ``train``: ``path`` itself, or a conversion written under ``scratch``.

    Parameters
    ----------
    path
        Dataset folder or annotation file.
    fmt
        One of :data:`INPUT_FORMATS`.
    images
        Folder holding the annotated images (default: ``images/`` next to the annotations, or
        their folder).
    scratch
        Empty folder the converted dataset is written into.

    Returns
    -------
    Path
        The dataset folder or COCO file to train on.
    """
    if fmt not in INPUT_FORMATS:
        raise DatasetError(
            f"unknown input format {fmt!r}; choose one of {', '.join(INPUT_FORMATS)}"
        )
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "coco" and images is None and not _coco_points_elsewhere(path):
        return path
    from flakefinder.annotate.roundtrip import import_dataset

    base = path if path.is_dir() else path.parent
    image_dir = images if images is not None else (
        base / "images" if (base / "images").is_dir() else base
    )  # fmt: skip
    if not image_dir.is_dir():
        raise DatasetError(f"image folder not found: {image_dir}")
    reader = "cvat" if kind == "coco" else kind
    files = [path / "annotations.json"] if kind == "coco" and path.is_dir() else [path]
    import_dataset(files, reader, scratch, image_dir=image_dir)
    return scratch
