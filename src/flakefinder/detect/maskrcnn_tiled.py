"""Tiled inference of a tile-trained Mask R-CNN on whole micrographs.

The geometry (resampling, windows, merging pieces seen in several tiles) is
:mod:`flakefinder.detect.tiling`; this module runs the network on the tiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from flakefinder.detect.instances import Segment
from flakefinder.detect.tiling import (
    Piece,
    cut_tile,
    merge_pieces,
    piece_from_tile_mask,
    piece_to_full,
    resample,
    scale_for,
    tile_windows,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from flakefinder.detect.maskrcnn_model import ModelConfig


class TileNetwork(Protocol):
    """What tiled inference needs of a network (:class:`~flakefinder.detect.maskrcnn.
    MaskRCNNDetector`; a protocol so that this module does not import it back)."""

    config: ModelConfig
    model: torch.nn.Module
    score_threshold: float

    def _exposed(self, rgb: np.ndarray) -> np.ndarray: ...

    def _forward(
        self, images: Sequence[np.ndarray], *, expose: bool = True
    ) -> list[tuple[np.ndarray, float, tuple[int, int], dict[str, torch.Tensor]]]: ...

    def _segments(
        self, rgb: np.ndarray, scale: float, pad: tuple[int, int], output: dict[str, torch.Tensor]
    ) -> list[Segment]: ...

MAX_SEGMENTS = 100
"""At most this many instances per image leave :func:`segment_tiled` (the best by score; as
Mask R-CNN's own ``box_detections_per_img`` on a whole image)."""

TILE_PRE_NMS, TILE_POST_NMS = 1000, 300
"""Region proposals per tile before and after non-maximum suppression (torchvision's whole-image
defaults are 1000 / 1000)."""


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def segment_tiled(
    det: TileNetwork, images: Sequence[np.ndarray], um_per_px: float, *, batch_size: int = 4
) -> list[tuple[np.ndarray, list[Segment]]]:
    """Instance masks of a tile-trained network (``det.config.tile_um_per_px``) on whole images.

    Each image is exposed as a whole (:meth:`MaskRCNNDetector._exposed`), resampled to the
    model's pixel size, cut into tiles of ``config.image_size`` overlapping by an eighth, the
    tiles' instances merged (:func:`merge_pieces`) and mapped back to the original pixels.
    Returns what :meth:`MaskRCNNDetector.segment_batch` returns.
    """
    tile_um = det.config.tile_um_per_px
    if tile_um is None:
        raise ValueError("segment_tiled needs a model trained on tiles (config.tile_um_per_px)")
    size = det.config.image_size
    scale = scale_for(um_per_px, tile_um)
    heads: Any = det.model.roi_heads
    rpn: Any = det.model.rpn
    saved = (heads.score_thresh, dict(rpn._pre_nms_top_n), dict(rpn._post_nms_top_n))
    # boxes under the detector's floor never leave it: skip their masks in every tile; a tile
    # holds a few flakes, so fewer proposals per tile than per whole image
    heads.score_thresh = max(float(saved[0]), det.score_threshold)
    rpn._pre_nms_top_n = {**saved[1], "testing": min(int(saved[1]["testing"]), TILE_PRE_NMS)}
    rpn._post_nms_top_n = {**saved[2], "testing": min(int(saved[2]["testing"]), TILE_POST_NMS)}
    try:
        return [_segment_one(det, image, k, scale, size, batch_size) for k, image in enumerate(images)]
    finally:
        heads.score_thresh, rpn._pre_nms_top_n, rpn._post_nms_top_n = saved


def _segment_one(
    det: TileNetwork, image: np.ndarray, k: int, scale: float, size: int, batch_size: int
) -> tuple[np.ndarray, list[Segment]]:
    from flakefinder.imaging import to_rgb8

    rgb = to_rgb8(image, what=f"image {k}")
    big = resample(det._exposed(rgb), scale)
    bh, bw = big.shape[:2]
    windows = tile_windows(bh, bw, size, size // 8)
    pieces: list[Piece] = []
    for start in range(0, len(windows), max(1, batch_size)):
        chunk = windows[start : start + max(1, batch_size)]
        tiles = [cut_tile(big, x, y, size) for x, y in chunk]
        for t, ((x, y), (tile_rgb, sc, pad, o)) in enumerate(
            zip(chunk, det._forward(tiles, expose=False), strict=True), start=start
        ):
            for seg in det._segments(tile_rgb, sc, pad, o):
                p = piece_from_tile_mask(seg.mask, x, y, seg.score, t, (bh, bw))
                if p is not None:
                    pieces.append(p)
    segs: list[Segment] = []
    for p in merge_pieces(pieces)[:MAX_SEGMENTS]:
        full = piece_to_full(p, scale, rgb.shape[:2])
        box = _box_of(full)
        if box is not None:
            segs.append(Segment(full, box, p.score))
    return rgb, segs
