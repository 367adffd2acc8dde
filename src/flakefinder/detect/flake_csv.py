"""One CSV layout for detected flakes, shared by `flakefinder detect` and `batch-detect`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.domain import Detection

FLAKE_CSV_FIELDS = (
    "image_id", "file", "flake", "material", "layer_class", "category", "category_id",
    "layer_count", "confidence", "x_min_px", "y_min_px", "x_max_px", "y_max_px",
    "area_px", "area_um2", "centroid_x_px", "centroid_y_px",
    "contrast_r", "contrast_g", "contrast_b",
)  # fmt: skip


def flake_csv_row(
    d: Detection, image_id: int, path: Path | str, k: int, cat_id: int, um_per_px: float
) -> dict[str, Any]:
    """One CSV row (columns :data:`FLAKE_CSV_FIELDS`) for flake ``k`` of image ``image_id``."""
    xs = [p[0] for p in d.polygon_px] or [0.0]
    ys = [p[1] for p in d.polygon_px] or [0.0]
    c = d.contrast_rgb or (None, None, None)
    return {
        "image_id": image_id,
        "file": str(path),
        "flake": k,
        "material": d.material,
        "layer_class": d.layer_class.value,
        "category": d.category,
        "category_id": cat_id,
        "layer_count": "" if d.layer_count is None else d.layer_count,
        "confidence": f"{d.confidence:.4f}",
        "x_min_px": f"{d.bbox_px[0]:.1f}",
        "y_min_px": f"{d.bbox_px[1]:.1f}",
        "x_max_px": f"{d.bbox_px[2]:.1f}",
        "y_max_px": f"{d.bbox_px[3]:.1f}",
        "area_px": f"{d.area_px:.0f}",
        "area_um2": f"{d.area_px * um_per_px**2:.3f}",
        "centroid_x_px": f"{sum(xs) / len(xs):.1f}",
        "centroid_y_px": f"{sum(ys) / len(ys):.1f}",
        "contrast_r": "" if c[0] is None else f"{c[0]:.4f}",
        "contrast_g": "" if c[1] is None else f"{c[1]:.4f}",
        "contrast_b": "" if c[2] is None else f"{c[2]:.4f}",
    }
