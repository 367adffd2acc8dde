"""Tiles at a fixed pixel size: the same cut for training data and for tiled inference.

A network trained on tiles of ``tile_px`` square pixels at ``tile_um_per_px`` sees every
micrograph at that pixel size: the image is resampled by ``um_per_px / tile_um_per_px`` and
cut into overlapping windows; the last window of a row or column is moved back to end at the
image edge, so every window is a full tile (an image smaller than a tile is zero padded, as the
letterbox pads). Instances found in several tiles are merged (:func:`merge_pieces`), then
brought back to the original pixel grid (:func:`piece_to_full`). Pure numpy + OpenCV; the
network side is :mod:`flakefinder.detect.maskrcnn_tiled`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MERGE_OVERLAP = 0.3
"""Two pieces from different tiles are one instance when their intersection is at least this
share of the smaller one (a flake cut by a tile edge, or seen whole in two tiles)."""


def scale_for(um_per_px: float, tile_um_per_px: float) -> float:
    """The resampling factor from an image's pixel size to the tiles' (> 1 enlarges).

    Raises
    ------
    ValueError
        When either pixel size is not a finite positive number.
    """
    for what, v in (("um_per_px", um_per_px), ("tile_um_per_px", tile_um_per_px)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{what} must be a finite number > 0, got {v}")
    return float(um_per_px) / float(tile_um_per_px)


def resample(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (area averaging when shrinking, bilinear otherwise)."""
    if abs(scale - 1.0) < 1e-6:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, size, interpolation=interp))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners (x0, y0) of the windows covering a ``height`` x ``width`` image.

    Raises
    ------
    ValueError
        When ``tile`` < 32 or ``overlap`` is not in [0, tile / 2].
    """
    if tile < 32 or not 0 <= overlap <= tile // 2:
        raise ValueError(f"tile must be >= 32 px and overlap in [0, tile/2], got {tile}, {overlap}")
    return [(x, y) for y in _starts(height, tile, overlap) for x in _starts(width, tile, overlap)]


def cut_tile(image: np.ndarray, x0: int, y0: int, tile: int) -> np.ndarray:
    """The ``tile`` x ``tile`` window at (x0, y0), zero padded where the image ends."""
    crop = image[y0 : y0 + tile, x0 : x0 + tile]
    if crop.shape[0] == tile and crop.shape[1] == tile:
        return np.ascontiguousarray(crop)
    out = np.zeros((tile, tile, *image.shape[2:]), dtype=image.dtype)
    out[: crop.shape[0], : crop.shape[1]] = crop
    return out


@dataclass(frozen=True, eq=False)
class Piece:
    """An instance mask in resampled-image coordinates: a bool crop at (x0, y0)."""

    x0: int
    y0: int
    mask: np.ndarray
    score: float
    tile: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive end."""
        return (self.x0, self.y0, self.x0 + self.mask.shape[1], self.y0 + self.mask.shape[0])

    @property
    def area(self) -> int:
        """Pixels of the mask."""
        return int(np.count_nonzero(self.mask))


def piece_from_tile_mask(mask: np.ndarray, x0: int, y0: int, score: float, tile: int,
                         limit: tuple[int, int]) -> Piece | None:  # fmt: skip
    """A tile's full-size mask as a :class:`Piece` of the image (cropped to its box and to the
    image of size ``limit`` = (h, w)); None when nothing of it lies inside the image."""
    h, w = limit
    m = mask[: max(0, h - y0), : max(0, w - x0)]
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return None
    ya, yb, xa, xb = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    return Piece(x0 + xa, y0 + ya, np.ascontiguousarray(m[ya:yb, xa:xb]), float(score), tile)


def _intersection(a: Piece, b: Piece) -> int:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0
    ma = a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
    mb = b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return int(np.count_nonzero(ma & mb))


def _union(group: list[Piece]) -> Piece:
    x0 = min(p.box[0] for p in group)
    y0 = min(p.box[1] for p in group)
    x1 = max(p.box[2] for p in group)
    y1 = max(p.box[3] for p in group)
    m = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for p in group:
        m[p.y0 - y0 : p.y0 - y0 + p.mask.shape[0], p.x0 - x0 : p.x0 - x0 + p.mask.shape[1]] |= p.mask
    return Piece(x0, y0, m, max(p.score for p in group), group[0].tile)


def merge_pieces(pieces: list[Piece], min_overlap: float = MERGE_OVERLAP) -> list[Piece]:
    """Pieces of different tiles that overlap by ``min_overlap`` of the smaller one, joined.

    Pieces of one tile are never joined (the network's own suppression already separated
    them). The result is ordered by score, best first.
    """
    parent = list(range(len(pieces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    areas = [p.area for p in pieces]
    order = sorted(range(len(pieces)), key=lambda k: pieces[k].x0)  # sweep along x
    for a, i in enumerate(order):
        x1 = pieces[i].box[2]
        for j in order[a + 1 :]:
            if pieces[j].x0 >= x1:
                break
            if pieces[i].tile == pieces[j].tile:
                continue
            inter = _intersection(pieces[i], pieces[j])
            if inter and inter >= min_overlap * min(areas[i], areas[j]):
                parent[find(j)] = find(i)
    groups: dict[int, list[Piece]] = {}
    for i, p in enumerate(pieces):
        groups.setdefault(find(i), []).append(p)
    merged = [g[0] if len(g) == 1 else _union(g) for g in groups.values()]
    return sorted(merged, key=lambda p: -p.score)


def rescale_crop(
    mask: np.ndarray, x0: int, y0: int, factor: float, limit: tuple[int, int]
) -> tuple[int, int, np.ndarray] | None:
    """A bool crop at (x0, y0) resampled by ``factor`` into an image of size ``limit`` (h, w).

    Each output pixel takes the crop's value at its centre (bilinear, cut at one half).
    Returns (x0, y0, crop) in the output grid, or None when nothing of it is left.
    """
    h, w = limit
    ch, cw = mask.shape
    if abs(factor - 1.0) < 1e-6:
        factor = 1.0  # as resample(): no resampling, exact pixel positions
    ox0, oy0 = max(0, math.floor(x0 * factor)), max(0, math.floor(y0 * factor))
    ox1, oy1 = min(w, math.ceil((x0 + cw) * factor)), min(h, math.ceil((y0 + ch) * factor))
    if ox1 <= ox0 or oy1 <= oy0:
        return None
    if factor == 1.0:
        out = mask[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0].astype(bool)
    else:
        ys = ((np.arange(oy0, oy1) + 0.5) / factor - 0.5 - y0).astype(np.float32)
        xs = ((np.arange(ox0, ox1) + 0.5) / factor - 0.5 - x0).astype(np.float32)
        mx, my = np.meshgrid(xs, ys)
        vals = cv2.remap(mask.astype(np.float32), mx, my, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)  # fmt: skip
        out = np.asarray(vals) >= 0.5
    if not out.any():
        return None
    return ox0, oy0, np.ascontiguousarray(out)


def crop_of(mask: np.ndarray) -> tuple[int, int, np.ndarray] | None:
    """(x0, y0, crop) of a full bool mask's bounding box; None when it is empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    return x0, y0, np.ascontiguousarray(mask[y0:y1, x0:x1].astype(bool))


def piece_to_full(piece: Piece, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """The piece as an (H, W) bool mask of the original image (``scale``: original -> tiles)."""
    full = np.zeros(shape, dtype=bool)
    got = rescale_crop(piece.mask, piece.x0, piece.y0, 1.0 / scale, shape)
    if got is not None:
        x0, y0, crop = got
        full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return full

