"""``flakefinder detect``: run a detector on image files and write COCO results, CSV, overlays."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flakefinder.cli import validation
from flakefinder.cli.options import (
    DEFAULT_SCORE,
    DetectorOpt,
    DetectorOptionsOpt,
    DeviceOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
    ScoreOpt,
    SetupOpt,
)
from flakefinder.cli.progress import ProgressOpt
from flakefinder.detect.registry import DEFAULT_DETECTOR

if TYPE_CHECKING:
    import numpy as np

    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.domain import ClassMap, Detection, Detector, ImagingContext


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_cmd)


def detect_cmd(
    images: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder: detections.json, images.json, flakes.csv, overlays/.",
        callback=validation.output_folder(),
    ),
    detector: DetectorOpt = DEFAULT_DETECTOR,
    model: ModelOpt = None,
    setup: SetupOpt = None,
    detector_option: DetectorOptionsOpt = None,
    materials: ProfileMaterialsOpt = None,
    oxide_nm: OptionalOxideNmOpt = None,
    um_per_px: OptionalUmPerPxOpt = None,
    score: ScoreOpt = DEFAULT_SCORE,
    device: DeviceOpt = "auto",
    batch_size: int = typer.Option(1, help="Images per detector call (batching detectors)."),
    overlays: bool = typer.Option(True, help="Write overlay PNGs (mask, outline, box, label)."),
    progress: bool = ProgressOpt,
) -> None:
    """Find flakes in IMAGES and write COCO results JSON, a CSV of flakes and overlay PNGs.

    Unreadable images are reported and skipped; the others are still processed.
    """
    from flakefinder.cli.options import (
        build_detector,
        print_options_help_if_asked,
        resolve_context,
    )
    from flakefinder.imaging import iter_image_files
    from flakefinder.text import plural

    print_options_help_if_asked(detector_option)
    files = iter_image_files(images)
    if not files:
        typer.secho("no image files found", fg=typer.colors.YELLOW, err=True)
    loaded = None
    if setup is not None:
        from flakefinder.cli.setup_option import resolve_setup

        loaded = resolve_setup(setup, detector, files, materials, oxide_nm, um_per_px)
    ctx = resolve_context(
        um_per_px=um_per_px,
        oxide_nm=oxide_nm,
        materials=materials,
        profile=None if loaded is None else loaded.profile,
    )
    mats = ctx.materials
    det = build_detector(
        detector, model=model, setup=loaded, options=detector_option, score=score, device=device
    )
    class_map = _class_map(det, mats)
    out.mkdir(parents=True, exist_ok=True)
    _self_calibrate(det, files, ctx)
    summary = _run(
        det,
        files,
        ctx,
        class_map,
        out,
        score,
        max(1, batch_size),
        overlays,
        setup_info=None if loaded is None else loaded.describe(),
        progress=progress,
        profile=None if loaded is None else loaded.profile,
    )
    if loaded is not None and loaded.source == "self-calibrated":
        loaded.profile.save(out / "setup_profile.json")
        typer.echo(f"self-calibrated setup profile written to {out / 'setup_profile.json'}")
    _save_settings(det, out)
    typer.echo(
        f"{plural(summary['flakes'], 'flake')} in {plural(summary['images'], 'image')} "
        f"({det.name} {det.version}); results in {out}"
    )
    if summary["failed"]:
        typer.secho(
            f"{plural(summary['failed'], 'image')} could not be read and were skipped", err=True
        )
    if loaded is not None and summary["misfits"]:
        from flakefinder.calibration.substrate_fit import misfit_message

        text = misfit_message(loaded.profile, summary["misfits"], summary["images"])
        typer.secho(f"warning: {text}", fg=typer.colors.YELLOW, err=True)


SELF_CALIBRATION_SAMPLE = 12  # images a self-calibrating detector calibrates on


def _self_calibrate(det: Any, files: list[Path], ctx: ImagingContext) -> None:
    """Let a self-calibrating detector calibrate on a sample of the images first (one line)."""
    from flakefinder.domain import SelfCalibrating, check_rgb_image
    from flakefinder.errors import ImageError
    from flakefinder.imaging import load_image
    from flakefinder.text import plural

    if not isinstance(det, SelfCalibrating) or not det.needs_calibration or not files:
        return
    step = max(1, len(files) // SELF_CALIBRATION_SAMPLE)
    sample = files[::step][:SELF_CALIBRATION_SAMPLE]
    images, names = [], []
    for path in sample:
        try:
            images.append(check_rgb_image(load_image(path), what=str(path)))
            names.append(path.name)
        except ImageError:
            continue  # reported when the image's turn comes
    notes = det.calibrate_on(images, ctx, names)
    typer.echo(
        f"no setup profile: {getattr(det, 'name', 'the detector')} self-calibrated on {plural(len(images), 'image')} of "
        f"{len(files)} (per camera setting; --setup FILE to use a profile)"
    )
    for note in notes:
        typer.echo(f"  {note}")


def _save_settings(det: Any, out: Path) -> None:
    """Write each self-calibrated camera setting's profile (``setting_<k>.json``), reusable with
    ``--setup``, and list the settings with their images in ``settings.json``."""
    from flakefinder.artifacts import write_json_atomic

    calibrations = getattr(det, "calibrations", None)
    if not calibrations:
        return
    listing = []
    for k, c in enumerate(calibrations, start=1):
        entry: dict[str, Any] = {"name": c.name, "source": c.source, "note": c.note,
                                 "substrate_rgb": list(c.substrate_rgb), "images": list(c.names)}
        if c.profile is not None and c.source == "self-calibrated":
            path = out / f"setting_{k}.json"
            c.profile.save(path)
            entry["profile"] = path.name
        listing.append(entry)
    write_json_atomic(out / "settings.json", {"settings": listing})
    typer.echo(f"camera settings and their profiles: {out / 'settings.json'}")


def _class_map(det: Any, materials: tuple[str, ...]) -> ClassMap:
    from flakefinder.domain import ClassMap

    config = getattr(det, "config", None)
    names = getattr(config, "class_names", None)
    if names:
        return ClassMap(tuple(names))
    return ClassMap.for_materials(materials)


def _run(
    det: Detector,
    files: list[Path],
    ctx: ImagingContext,
    class_map: ClassMap,
    out: Path,
    score: float,
    batch_size: int,
    write_overlays: bool,
    *,
    setup_info: dict[str, str] | None = None,
    progress: bool = False,
    profile: SetupProfile | None = None,
) -> dict[str, Any]:
    """Detect over ``files`` and write the outputs; with ``profile``, also note the images whose
    substrate does not look like the profile's (``"misfits"``)."""
    from flakefinder.artifacts import atomic_open, write_atomic
    from flakefinder.calibration.substrate_fit import SubstrateMisfit, substrate_misfit
    from flakefinder.cli.progress import progress_bar
    from flakefinder.detect.flake_csv import FLAKE_CSV_FIELDS, flake_csv_row
    from flakefinder.domain import BatchDetector, check_rgb_image, keep_confident
    from flakefinder.errors import ImageError
    from flakefinder.imaging import load_image

    results: list[dict[str, Any]] = []
    image_records: list[dict[str, Any]] = []
    names = list(class_map.names)
    overlay_dir = out / "overlays"
    used_names: set[str] = set()
    failed = 0
    misfits: list[SubstrateMisfit] = []
    batched = isinstance(det, BatchDetector) and batch_size > 1
    # written beside flakes.csv and renamed when complete: no half-written flakes.csv
    with (
        atomic_open(out / "flakes.csv", newline="") as fcsv,
        progress_bar(len(files), "detecting", enabled=progress) as advance,
    ):
        writer = csv.DictWriter(fcsv, fieldnames=FLAKE_CSV_FIELDS)
        writer.writeheader()
        for start in range(0, len(files), batch_size):
            chunk: list[tuple[Path, np.ndarray]] = []
            for path in files[start : start + batch_size]:
                try:  # also refuse what no detector takes (e.g. a 1x1 image), by name
                    chunk.append((path, check_rgb_image(load_image(path), what=str(path))))
                except ImageError as exc:
                    failed += 1
                    advance()
                    typer.secho(f"skipped: {exc}", fg=typer.colors.YELLOW, err=True)
            if not chunk:
                continue
            if batched and isinstance(det, BatchDetector):
                found = det.detect_batch([im for _, im in chunk], ctx)
            else:
                found = [det.detect(im, ctx) for _, im in chunk]
            for (path, image), dets in zip(chunk, found, strict=True):
                image_id = len(image_records) + 1
                h, w = image.shape[:2]
                image_records.append(
                    {"id": image_id, "file_name": str(path), "width": w, "height": h}
                )
                kept = keep_confident(dets, score)
                for k, d in enumerate(kept):
                    if d.category not in names:
                        names.append(d.category)
                    cat_id = names.index(d.category) + 1
                    results.append(_coco_result(d, image_id, cat_id, h, w))
                    writer.writerow(flake_csv_row(d, image_id, path, k, cat_id, ctx.um_per_px))
                if write_overlays:
                    _write_overlay(overlay_dir, path, image, kept, used_names)
                misfit = None if profile is None else substrate_misfit(profile, image, path.name)
                if misfit is not None:
                    misfits.append(misfit)
                advance()
    write_atomic(out / "detections.json", json.dumps(results) + "\n")
    coco_images: dict[str, Any] = {
        "images": image_records,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        "detector": {"name": det.name, "version": det.version},
    }
    if setup_info is not None:
        coco_images["setup"] = setup_info
    write_atomic(out / "images.json", json.dumps(coco_images, indent=1) + "\n")
    return {"images": len(image_records), "flakes": len(results), "failed": failed,
            "misfits": misfits}  # fmt: skip


def _mask_of(d: Detection, h: int, w: int) -> np.ndarray:
    import cv2
    import numpy as np

    if d.mask is not None and d.mask.shape == (h, w):
        return np.asarray(d.mask, dtype=np.uint8)
    m = np.zeros((h, w), dtype=np.uint8)
    pts = np.round(np.asarray(d.polygon_px, dtype=np.float64)).astype(np.int32)
    if len(pts) >= 3:
        cv2.fillPoly(m, [pts.reshape(-1, 1, 2)], 1)
    return m


def _coco_result(d: Detection, image_id: int, cat_id: int, h: int, w: int) -> dict[str, Any]:
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(_mask_of(d, h, w)))
    counts = rle["counts"]
    x0, y0, x1, y1 = d.bbox_px
    return {
        "image_id": image_id,
        "category_id": cat_id,
        "segmentation": {
            "size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        },
        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
        "score": round(float(d.confidence), 5),
        "layer_count": d.layer_count,
        "area": float(d.area_px),
    }


def _write_overlay(
    folder: Path, path: Path, image: np.ndarray, dets: list[Detection], used: set[str]
) -> None:
    from flakefinder.detect.overlay import draw_detections
    from flakefinder.imaging import save_image

    name = path.stem
    n = 1
    while name in used:
        n += 1
        name = f"{path.stem}_{n}"
    used.add(name)
    save_image(folder / f"{name}.png", draw_detections(image, dets))
