"""Flake export: CSV (one flat row per flake) and JSON (list of :meth:`StoredFlake.to_dict`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flakefinder.db.records import StoredFlake

FLAKE_CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "chip_id",
    "scan_id",
    "image_id",
    "material",
    "layer_class",
    "layer_count",
    "confidence",
    "area_um2",
    "centroid_x_um",
    "centroid_y_um",
    "bbox_x_min_um",
    "bbox_y_min_um",
    "bbox_x_max_um",
    "bbox_y_max_um",
    "contrast_r",
    "contrast_g",
    "contrast_b",
    "status",
    "notes",
    "detector",
    "detector_version",
    "created_at",
    "polygon_um",  # JSON list of [x, y]
)


def flake_csv_row(f: StoredFlake) -> dict[str, Any]:
    rgb = f.contrast_rgb or (None, None, None)
    return {
        "id": f.id,
        "chip_id": f.chip_id,
        "scan_id": f.scan_id,
        "image_id": f.image_id,
        "material": f.material,
        "layer_class": f.layer_class.value,
        "layer_count": f.layer_count,
        "confidence": f.confidence,
        "area_um2": f.area_um2,
        "centroid_x_um": f.centroid_um[0],
        "centroid_y_um": f.centroid_um[1],
        "bbox_x_min_um": f.bbox_um[0],
        "bbox_y_min_um": f.bbox_um[1],
        "bbox_x_max_um": f.bbox_um[2],
        "bbox_y_max_um": f.bbox_um[3],
        "contrast_r": rgb[0],
        "contrast_g": rgb[1],
        "contrast_b": rgb[2],
        "status": f.status.value,
        "notes": f.notes,
        "detector": f.detector,
        "detector_version": f.detector_version,
        "created_at": f.created_at.isoformat(),
        "polygon_um": json.dumps([list(p) for p in f.polygon_um]),
    }


def _write(text: str, path_or_file: str | Path | IO[str] | None) -> None:
    if path_or_file is None:
        return
    if isinstance(path_or_file, (str, Path)):
        from flakefinder.artifacts import write_atomic

        write_atomic(path_or_file, text)
    else:
        path_or_file.write(text)


def flakes_to_csv(
    rows: Iterable[StoredFlake], path_or_file: str | Path | IO[str] | None = None
) -> str:
    """CSV with a header of :data:`FLAKE_CSV_COLUMNS`; written to ``path_or_file`` if given, and returned."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(FLAKE_CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for f in rows:
        writer.writerow(flake_csv_row(f))
    text = buf.getvalue()
    _write(text, path_or_file)
    return text


def flakes_to_json(
    rows: Iterable[StoredFlake], path_or_file: str | Path | IO[str] | None = None
) -> str:
    """JSON list of flake dicts (see :meth:`StoredFlake.to_dict`); written if a target is given, and returned."""
    text = json.dumps([f.to_dict() for f in rows], indent=2) + "\n"
    _write(text, path_or_file)
    return text
