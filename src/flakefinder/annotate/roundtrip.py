"""Export model predictions for annotation tools and import corrected labels as one COCO dataset."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from flakefinder.annotate import labelbox, labelme, labelstudio
from flakefinder.annotate.shapes import (
    LabeledImage,
    apply_label_map,
    from_coco,
    read_json,
    shapes_from_detections,
    to_coco,
)
from flakefinder.artifacts import write_atomic
from flakefinder.errors import DatasetError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from flakefinder.domain import ClassMap, Detector, ImagingContext

FORMATS = ("labelstudio", "cvat", "coco", "labelme", "labelbox")


@dataclass
class Predicted:
    """Images run through a detector, and the ones that could not be read."""

    images: list[LabeledImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason"


def predict_images(
    image_paths: list[Path],
    detector: Detector,
    context: ImagingContext,
    *,
    root: Path | None = None,
) -> Predicted:
    """Run ``detector`` over images; file names are kept relative to ``root`` (or bare names).

    An image that cannot be read is named in ``skipped`` and left out; the others go on.
    """
    from flakefinder.errors import ImageError
    from flakefinder.imaging import load_image

    out = Predicted()
    for p in image_paths:
        try:
            image = load_image(p)
        except ImageError as exc:
            out.skipped.append(str(exc))
            continue
        name = p.relative_to(root).as_posix() if root is not None else p.name
        shapes = shapes_from_detections(detector.detect(image, context))
        out.images.append(LabeledImage(name, image.shape[1], image.shape[0], shapes))
    return out


def export_preannotations(
    images: list[LabeledImage],
    out_dir: Path,
    *,
    class_map: ClassMap,
    model_version: str = "",
    image_url_prefix: str = "/data/local-files/?d=",
) -> dict[str, Path]:
    """Write Label Studio tasks (+ labelling config), COCO for CVAT, and labelme files.

    ``image_url_prefix`` + file name is each task's image URL (see
    :func:`flakefinder.annotate.labelstudio.local_files_prefix`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tasks = labelstudio.to_tasks(
        images, model_version=model_version, image_url_prefix=image_url_prefix
    )
    written["labelstudio"] = out_dir / "labelstudio_tasks.json"
    write_atomic(written["labelstudio"], json.dumps(tasks, indent=1))
    written["labelstudio_config"] = out_dir / "labelstudio_config.xml"
    write_atomic(written["labelstudio_config"], labelstudio.label_config(class_map.names))
    written["cvat"] = out_dir / "cvat_coco.json"
    write_atomic(written["cvat"], json.dumps(to_coco(images, class_map), indent=1))
    lm_dir = out_dir / "labelme"
    lm_dir.mkdir(exist_ok=True)
    for im in images:
        write_atomic(
            lm_dir / (Path(im.file_name).stem + ".json"), json.dumps(labelme.to_file(im), indent=1)
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
            try:
                with Image.open(p) as im:
                    size = im.size
            except (OSError, ValueError, Image.DecompressionBombError):
                continue  # unreadable: no size from here (training names it when it loads it)
            sizes[p.relative_to(image_dir).as_posix()] = size
            sizes.setdefault(p.name, size)
    return sizes


@dataclass
class ReadReport:
    """Images read from annotation files, and the Label Studio tasks left out."""

    images: list[LabeledImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreviewed: list[str] = field(default_factory=list)
    from_predictions: list[str] = field(default_factory=list)


def _is_absolute(name: str) -> bool:
    return PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute()


def _normalise_names(
    images: list[LabeledImage], known: Mapping[str, object], *, in_folder: bool = False
) -> list[LabeledImage]:
    """File names as the image folder knows them (tool exports write ``../../images/x.png``).

    With an image folder (``in_folder``), an absolute path (``/data/run1/x.png``, ``C:\\x.png``)
    is looked up there by its tail like any other name: the folder, not the path in the
    export, says where the image is.
    """
    out = []
    for im in images:
        name = im.file_name
        if (
            ".." in PurePosixPath(name).parts
            or (known and name not in known)
            or (in_folder and _is_absolute(name))
        ):
            name = labelstudio.file_name_from_path(name, known)
        out.append(replace(im, file_name=name))
    return out


def read_report(
    paths: list[Path],
    fmt: str,
    *,
    image_dir: Path | None = None,
    accept_predictions: bool = False,
) -> ReadReport:
    """Read corrected annotations in one of :data:`FORMATS`; images from several files are merged.

    Label Studio tasks are read by the rules of :mod:`flakefinder.annotate.labelstudio`
    (``accept_predictions`` imports unreviewed pre-annotations). File names are mapped onto
    the images in ``image_dir`` when one is given.
    """
    sizes = _image_sizes(image_dir)
    report = ReadReport()

    def studio(p: Path) -> list[LabeledImage]:
        r = labelstudio.read_export(read_json(p), image_sizes=sizes,
                                    accept_predictions=accept_predictions, where=str(p))  # fmt: skip
        report.skipped += r.skipped
        report.unreviewed += r.unreviewed
        report.from_predictions += r.from_predictions
        return r.images

    readers: dict[str, Callable[[Path], list[LabeledImage]]] = {
        "labelstudio": studio,
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
        for im in _normalise_names(readers[fmt](f), sizes, in_folder=image_dir is not None):
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
    report.images = list(merged.values())
    return report


def read_annotations(
    paths: list[Path], fmt: str, *, image_dir: Path | None = None
) -> list[LabeledImage]:
    """The images of :func:`read_report`."""
    return read_report(paths, fmt, image_dir=image_dir).images


def _nothing_to_import(paths: list[Path], read: ReadReport) -> str:
    """Why an import found no labelled image (an empty dataset is refused, not written)."""
    why = []
    if read.unreviewed:
        why.append(
            f"{len(read.unreviewed)} task(s) without an annotation (--accept-predictions "
            "imports their pre-annotations)"
        )
    if read.skipped:
        why.append(f"{len(read.skipped)} task(s) skipped in Label Studio")
    names = ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
    return f"no labelled image in {names}" + (f": {'; '.join(why)}" if why else "")


def import_dataset(
    paths: list[Path],
    fmt: str,
    out_dir: Path,
    *,
    image_dir: Path | None = None,
    label_map: Mapping[str, str] | None = None,
    class_map: ClassMap | None = None,
    accept_predictions: bool = False,
    report: ReadReport | None = None,
) -> Path:
    """Corrected labels -> ``out_dir/annotations.json`` (+ ``images/`` copied from ``image_dir``).

    Every image the annotations name must exist in ``image_dir`` when one is given; a
    missing image is an error rather than a silently shorter dataset. Everything is checked
    before anything is written, and the files appear together (written into a temporary
    sibling folder, then moved into ``out_dir``). ``report``, when given, receives what was
    read (tasks left out included).
    """
    read = read_report(paths, fmt, image_dir=image_dir, accept_predictions=accept_predictions)
    if report is not None:
        report.__dict__.update(read.__dict__)
    if not read.images:
        raise DatasetError(_nothing_to_import(paths, read))
    images = apply_label_map(read.images, label_map or {})
    coco = to_coco(images, class_map)
    if image_dir is not None:
        missing = [
            im.file_name
            for im in images
            if _is_absolute(im.file_name) or not (image_dir / im.file_name).is_file()
        ]
        if missing:
            raise DatasetError(
                f"{len(missing)} annotated images are not in {image_dir}: {missing[:5]}"
                " (names are looked up there by their last path parts)"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if image_dir is not None:
            for im in images:
                dst = tmp / "images" / im.file_name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(image_dir / im.file_name, dst)
        (tmp / "annotations.json").write_text(json.dumps(coco, indent=1))
        out_dir.mkdir(exist_ok=True)
        for entry in sorted(tmp.iterdir(), key=lambda e: e.name == "annotations.json"):
            target = out_dir / entry.name
            if target.is_dir() and entry.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "annotations.json"
