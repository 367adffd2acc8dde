"""Pictures for the UI: flake crops with their outline, and the extent of a scan's tiles
(the mosaic itself: :mod:`flakefinder.web.mosaic`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flakefinder.db.records import ImageInfo, StoredFlake

OUTLINE_RGB = (255, 214, 0)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def flake_crop(
    tile_path: Path, flake: StoredFlake, *, size_px: int = 320, margin: float = 0.5
) -> Image.Image:
    """Crop of the tile around the flake, scaled to ``size_px`` on its long side, outline drawn."""
    return outline_crop(tile_path, flake.bbox_px, flake.polygon_px, size_px=size_px, margin=margin)


def outline_crop(
    tile_path: Path,
    bbox_px: tuple[float, float, float, float],
    polygon_px: Sequence[tuple[float, float]],
    *,
    size_px: int = 320,
    margin: float = 0.5,
) -> Image.Image:
    """Crop of an image around ``bbox_px``, scaled to ``size_px`` on its long side, with the
    outline ``polygon_px`` (image pixels) drawn."""
    with Image.open(tile_path) as im:
        tile = im.convert("RGB")
    x0, y0, x1, y1 = bbox_px
    pad = max(16.0, margin * max(x1 - x0, y1 - y0))
    left, top = max(0, int(x0 - pad)), max(0, int(y0 - pad))
    right, bottom = (
        min(tile.width, int(np.ceil(x1 + pad))),
        min(tile.height, int(np.ceil(y1 + pad))),
    )
    crop = tile.crop((left, top, right, bottom))
    scale = size_px / max(crop.width, crop.height)
    crop = crop.resize(
        (max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
        Image.Resampling.BILINEAR,
    )
    pts = [((x - left) * scale, (y - top) * scale) for x, y in polygon_px]
    if len(pts) >= 3:
        ImageDraw.Draw(crop).line([*pts, pts[0]], fill=OUTLINE_RGB, width=2)
    return crop


@dataclass(frozen=True)
class Extent:
    """A chip rectangle in µm: (x_min, y_min) top-left, width and height."""

    x_um: float
    y_um: float
    width_um: float
    height_um: float


def tiles_extent(images: Sequence[ImageInfo]) -> Extent | None:
    if not images:
        return None
    xs0 = [im.x_um - im.width_px * im.um_per_px / 2 for im in images]
    ys0 = [im.y_um - im.height_px * im.um_per_px / 2 for im in images]
    xs1 = [im.x_um + im.width_px * im.um_per_px / 2 for im in images]
    ys1 = [im.y_um + im.height_px * im.um_per_px / 2 for im in images]
    return Extent(min(xs0), min(ys0), max(xs1) - min(xs0), max(ys1) - min(ys0))
