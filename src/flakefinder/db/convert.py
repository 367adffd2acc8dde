"""Row <-> value conversions for ``flakefinder.db`` (ORM rows never leave the session)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flakefinder.db.records import (
    Chip,
    Design,
    DesignLayer,
    FlakeStatus,
    ImageInfo,
    ScanInfo,
    ScanStatus,
    StoredFlake,
)
from flakefinder.domain import FlakeRecord, LayerClass, TileRecord

if TYPE_CHECKING:
    from flakefinder.db.models import ChipRow, DesignRow, FlakeRow, ImageRow, ScanRow


def as_utc(t: datetime) -> datetime:
    """SQLite drops the time zone; every stored time is UTC."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def _points(raw: Any) -> tuple[tuple[float, float], ...]:
    return tuple((float(p[0]), float(p[1])) for p in raw or ())


def _quad(raw: Any) -> tuple[float, float, float, float]:
    a, b, c, d = (float(v) for v in raw)
    return (a, b, c, d)


def stored_flake(row: FlakeRow) -> StoredFlake:
    rgb = row.contrast_rgb
    return StoredFlake(
        id=row.id,
        scan_id=row.scan_id,
        image_id=row.image_id,
        chip_id=row.chip_id,
        material=row.material,
        layer_class=LayerClass(row.layer_class),
        layer_count=row.layer_count,
        confidence=row.confidence,
        polygon_um=_points(row.polygon_um),
        polygon_px=_points(row.polygon_px),
        bbox_um=(row.bbox_x_min_um, row.bbox_y_min_um, row.bbox_x_max_um, row.bbox_y_max_um),
        bbox_px=_quad(row.bbox_px),
        area_um2=row.area_um2,
        centroid_um=(row.centroid_x_um, row.centroid_y_um),
        contrast_rgb=None if rgb is None else (float(rgb[0]), float(rgb[1]), float(rgb[2])),
        detector=row.detector,
        detector_version=row.detector_version,
        status=FlakeStatus(row.status),
        notes=row.notes,
        created_at=as_utc(row.created_at),
    )


def chip(row: ChipRow) -> Chip:
    return Chip(
        id=row.id,
        name=row.name,
        materials=tuple(m for m in row.materials.split(",") if m),
        oxide_thickness_nm=row.oxide_thickness_nm,
        notes=row.notes,
        created_at=as_utc(row.created_at),
    )


def scan(row: ScanRow, chip_name: str, tiles_done: int, n_flakes: int) -> ScanInfo:
    return ScanInfo(
        id=row.id,
        chip_id=row.chip_id,
        chip_name=chip_name,
        settings=dict(row.settings or {}),
        objective=row.objective,
        um_per_px=row.um_per_px,
        detector=row.detector,
        detector_version=row.detector_version,
        n_tiles_planned=row.n_tiles_planned,
        started_at=as_utc(row.started_at),
        finished_at=None if row.finished_at is None else as_utc(row.finished_at),
        status=ScanStatus(row.status),
        tiles_done=int(tiles_done),
        n_flakes=int(n_flakes),
    )


def image(row: ImageRow) -> ImageInfo:
    return ImageInfo(
        id=row.id,
        scan_id=row.scan_id,
        tile_index=row.tile_index,
        x_um=row.x_um,
        y_um=row.y_um,
        z_um=row.z_um,
        width_px=row.width_px,
        height_px=row.height_px,
        um_per_px=row.um_per_px,
        file_path=row.file_path,
        acquired_at=as_utc(row.acquired_at),
    )


def design(row: DesignRow) -> Design:
    return Design(
        id=row.id,
        name=row.name,
        layers=tuple(DesignLayer.from_dict(d) for d in row.layers or ()),
        notes=row.notes,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def flake_values(f: FlakeRecord, scan_id: int, image_id: int, chip_id: int) -> dict[str, Any]:
    """Column values of a new flake row (for a bulk Core insert)."""
    cx, cy = f.centroid_um
    x0, y0, x1, y1 = (float(v) for v in f.bbox_um)
    return {
        "scan_id": scan_id,
        "image_id": image_id,
        "chip_id": chip_id,
        "material": f.material,
        "layer_class": LayerClass(f.layer_class).value,
        "layer_count": None if f.layer_count is None else int(f.layer_count),
        "confidence": float(f.confidence),
        "polygon_um": [[float(x), float(y)] for x, y in f.polygon_um],
        "polygon_px": [[float(x), float(y)] for x, y in f.polygon_px],
        "bbox_x_min_um": x0,
        "bbox_y_min_um": y0,
        "bbox_x_max_um": x1,
        "bbox_y_max_um": y1,
        "bbox_px": [float(v) for v in f.bbox_px],
        "area_um2": float(f.area_um2),
        "centroid_x_um": float(cx),
        "centroid_y_um": float(cy),
        "contrast_rgb": None if f.contrast_rgb is None else [float(v) for v in f.contrast_rgb],
        "detector": f.detector,
        "detector_version": f.detector_version,
        "status": FlakeStatus.NEW.value,
        "notes": "",
    }


def image_values(tile: TileRecord, scan_id: int) -> dict[str, Any]:
    """Column values of a new image row for a recorded tile."""
    return {
        "scan_id": scan_id,
        "tile_index": tile.tile_index,
        "x_um": tile.x_um,
        "y_um": tile.y_um,
        "z_um": tile.z_um,
        "width_px": tile.width_px,
        "height_px": tile.height_px,
        "um_per_px": tile.um_per_px,
        "file_path": tile.image_path,
    }


def flake_record(row: FlakeRow, tile_index: int | None) -> FlakeRecord:
    flake = stored_flake(row)
    return FlakeRecord(
        material=flake.material,
        layer_class=flake.layer_class,
        confidence=flake.confidence,
        polygon_um=flake.polygon_um,
        bbox_um=flake.bbox_um,
        area_um2=flake.area_um2,
        polygon_px=flake.polygon_px,
        bbox_px=flake.bbox_px,
        detector=flake.detector,
        detector_version=flake.detector_version,
        layer_count=flake.layer_count,
        contrast_rgb=flake.contrast_rgb,
        tile_index=tile_index,
    )
