"""The chip map's picture: the stored tile images as a pyramid of 256 px tiles.

One mosaic image of a whole chip is unbounded (a 10 mm x 0.15 mm strip drawn 1600 px across is
1,600 x 107,000 px), so the map asks for what it shows: ``GET /chips/{id}/mosaic/{z}/{x}/{y}.png``.
Level 0 is one tile over the chip's longer side, each level halves the tile (doubles the
resolution) up to the level that reaches the images' own pixels. A tile is drawn from the images
it overlaps, each cropped and scaled straight into it; at coarse levels from a small thumbnail of
each image instead (decoded once). Both the rendered tiles and the thumbnails live in bounded
least-recently-used caches, so memory stays fixed however large the chip. ``/mosaic.png`` is an
overview drawn the same way with its longer side at most 1600 px.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from flakefinder.db.records import ImageInfo
from flakefinder.web.images import Extent, tiles_extent

if TYPE_CHECKING:
    from fastapi import APIRouter

    from flakefinder.db import Database

TILE_PX = 256
THUMB_FACTOR = 8  # thumbnails are 1/8 of an image's side (a 1024 px tile: 128 px)
OVERVIEW_PX = 1600
TRANSPARENT = (0, 0, 0, 0)  # where no image lies (between tiles, beyond the chip's extent)


class ByteLRU:
    """A thread-safe least-recently-used cache bounded by the total size of its values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped


@dataclass(frozen=True)
class Pyramid:
    """Tile geometry of one chip's mosaic: its extent and the finest level."""

    extent: Extent
    max_zoom: int

    @classmethod
    def of(cls, images: Sequence[ImageInfo]) -> Pyramid | None:
        extent = tiles_extent(images)
        if extent is None:
            return None
        finest_um_per_px = min(im.um_per_px for im in images)
        side = max(extent.width_um, extent.height_um)
        levels = math.log2(max(side / (TILE_PX * finest_um_per_px), 1.0))
        return cls(extent, min(24, math.ceil(levels - 1e-9)))

    def tile_um(self, z: int) -> float:
        """Side of a tile of level ``z`` in µm."""
        return max(self.extent.width_um, self.extent.height_um) / float(2**z)

    def tiles(self, z: int) -> tuple[int, int]:
        """Tiles across and down at level ``z``."""
        t = self.tile_um(z)
        return (
            max(1, math.ceil(self.extent.width_um / t - 1e-9)),
            max(1, math.ceil(self.extent.height_um / t - 1e-9)),
        )

    def contains(self, z: int, x: int, y: int) -> bool:
        nx, ny = self.tiles(z) if 0 <= z <= self.max_zoom else (0, 0)
        return 0 <= x < nx and 0 <= y < ny

    def tile_rect(self, z: int, x: int, y: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in µm of tile (x, y) of level z."""
        t = self.tile_um(z)
        x0, y0 = self.extent.x_um + x * t, self.extent.y_um + y * t
        return (x0, y0, x0 + t, y0 + t)


def _image_rect(im: ImageInfo) -> tuple[float, float, float, float]:
    w, h = im.width_px * im.um_per_px, im.height_px * im.um_per_px
    return (im.x_um - w / 2, im.y_um - h / 2, im.x_um + w / 2, im.y_um + h / 2)


class MosaicRenderer:
    """Draws regions of a chip's mosaic from its images, with a bounded thumbnail cache."""

    def __init__(self, thumb_cache_bytes: int = 48 * 2**20) -> None:
        self.thumbs = ByteLRU(thumb_cache_bytes)

    def _thumbnail(self, path: Path) -> Image.Image | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        thumb = self.thumbs.get(key)
        if thumb is None:
            full = _open_rgb(path)
            if full is None:
                return None
            thumb = full.reduce(THUMB_FACTOR) if min(full.size) >= THUMB_FACTOR else full
            self.thumbs.put(key, thumb, thumb.width * thumb.height * 3 + 200)
        return thumb

    def render(
        self,
        images: Sequence[ImageInfo],
        rect_um: tuple[float, float, float, float],
        size_px: tuple[int, int],
    ) -> Image.Image:
        """The region ``rect_um`` (x0, y0, x1, y1) of the mosaic drawn ``size_px`` (w, h), RGBA:
        transparent where no image lies."""
        x0, y0, x1, y1 = rect_um
        out_w, out_h = size_px
        sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)  # px per µm
        out = Image.new("RGBA", (out_w, out_h), TRANSPARENT)
        for im in images:
            if not im.file_path:
                continue
            ix0, iy0, ix1, iy1 = _image_rect(im)
            cx0, cy0, cx1, cy1 = max(x0, ix0), max(y0, iy0), min(x1, ix1), min(y1, iy1)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            dst = (
                round((cx0 - x0) * sx),
                round((cy0 - y0) * sy),
                round((cx1 - x0) * sx),
                round((cy1 - y0) * sy),
            )
            if dst[2] <= dst[0] or dst[3] <= dst[1]:
                continue
            # use the thumbnail where it has at least the pixels the tile needs
            coarse = max(sx, sy) * im.um_per_px * THUMB_FACTOR <= 1.0
            source = self._thumbnail(Path(im.file_path)) if coarse else _open_rgb(Path(im.file_path))
            if source is None:
                continue
            kx, ky = source.width / (ix1 - ix0), source.height / (iy1 - iy0)  # px per µm
            box = ((cx0 - ix0) * kx, (cy0 - iy0) * ky, (cx1 - ix0) * kx, (cy1 - iy0) * ky)
            piece = source.resize(
                (dst[2] - dst[0], dst[3] - dst[1]), Image.Resampling.BILINEAR, box=box
            )
            out.paste(piece.convert("RGBA"), dst[:2])
        return out


def _open_rgb(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # a missing or unreadable tile stays background


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def overview_size(extent: Extent, long_side_px: int = OVERVIEW_PX) -> tuple[int, int]:
    """Pixel size of an overview of ``extent`` with its longer side ``long_side_px``."""
    scale = long_side_px / max(extent.width_um, extent.height_um)
    return max(1, round(extent.width_um * scale)), max(1, round(extent.height_um * scale))


def latest_scan_images(db: Database, chip_id: int) -> list[ImageInfo]:
    """The stored images of the newest scan of ``chip_id`` that has any (the chip map's)."""
    scans = [s for s in db.list_scans(chip_id) if s.tiles_done]
    return db.list_images(scans[-1].id) if scans else []


def create_mosaic_router(
    db: Database, *, renderer: MosaicRenderer | None = None, rendered: ByteLRU | None = None
) -> APIRouter:
    """``/chips/{id}/mosaic/{z}/{x}/{y}.png`` tiles and the ``/chips/{id}/mosaic.png`` overview.

    ``renderer`` (with its thumbnail cache, 48 MB) and ``rendered`` (the cache of encoded
    tiles, 32 MB) can be given to choose their sizes.
    """
    from fastapi import APIRouter, HTTPException, Response
    from fastapi import Path as PathParam

    from flakefinder.web.api import db_id

    renderer = MosaicRenderer() if renderer is None else renderer
    rendered = ByteLRU(32 * 2**20) if rendered is None else rendered
    r = APIRouter(include_in_schema=False)
    headers = {"Cache-Control": "private, max-age=3600"}  # URLs carry the image count

    def images_or_404(chip_id: int) -> list[ImageInfo]:
        images = latest_scan_images(db, chip_id)
        if not images:
            raise HTTPException(404, f"chip {chip_id} has no stored images")
        return images

    def cached(key: tuple[Any, ...], draw: Any) -> bytes:
        data: bytes | None = rendered.get(key)
        if data is None:
            data = png_bytes(draw())
            rendered.put(key, data, len(data))
        return data

    @r.get("/chips/{chip_id}/mosaic/{z}/{x}/{y}.png")
    def mosaic_tile(
        chip_id: int = db_id(),
        z: int = PathParam(..., ge=0, le=24),
        x: int = PathParam(..., ge=0, le=2**24),
        y: int = PathParam(..., ge=0, le=2**24),
    ) -> Response:
        images = images_or_404(chip_id)
        pyramid = Pyramid.of(images)
        assert pyramid is not None
        if not pyramid.contains(z, x, y):
            raise HTTPException(
                404, f"no tile {z}/{x}/{y}: the mosaic has levels 0 to {pyramid.max_zoom}"
            )
        key = (chip_id, images[0].scan_id, len(images), z, x, y)
        rect = pyramid.tile_rect(z, x, y)
        data = cached(key, lambda: renderer.render(images, rect, (TILE_PX, TILE_PX)))
        return Response(data, media_type="image/png", headers=headers)

    @r.get("/chips/{chip_id}/mosaic.png")
    def mosaic_overview(chip_id: int = db_id()) -> Response:
        images = images_or_404(chip_id)
        extent = tiles_extent(images)
        assert extent is not None
        rect = (
            extent.x_um,
            extent.y_um,
            extent.x_um + extent.width_um,
            extent.y_um + extent.height_um,
        )
        key = (chip_id, images[0].scan_id, len(images), "overview")
        data = cached(key, lambda: renderer.render(images, rect, overview_size(extent)))
        return Response(data, media_type="image/png", headers=headers)

    return r
