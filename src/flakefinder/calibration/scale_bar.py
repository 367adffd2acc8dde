"""The length of a burned-in scale bar, for the pixel size of pictures that carry one (numpy + cv2).

Microscope software often burns a white bar of a round length (5 µm, 10 µm) into the bottom-right
corner of a picture; its length in pixels and its label give ``um_per_px``. Reading the label
needs OCR, so callers supply the length in µm (from the objective or the data's README).
"""

from __future__ import annotations

import numpy as np

from flakefinder.errors import ImageError

__all__ = ["scale_bar_px"]


def _runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, start, end) of every horizontal run of True in ``mask``."""
    out: list[tuple[int, int, int]] = []
    for r in np.flatnonzero(mask.any(axis=1)):
        d = np.diff(np.concatenate([[0], mask[r].astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        out.extend((int(r), int(a), int(b)) for a, b in zip(starts, ends, strict=True))
    return out


def _slabs(runs: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Runs of adjacent rows whose ends stay within 2 px of the first row's ends."""
    slabs: list[list[tuple[int, int, int]]] = []
    for run in runs:
        for g in slabs:
            first, last = g[0], g[-1]
            if (
                run[0] == last[0] + 1
                and abs(run[1] - first[1]) <= 2
                and abs(run[2] - first[2]) <= 2
            ):
                g.append(run)
                break
        else:
            slabs.append([run])
    return slabs


def _band_white(mask: np.ndarray, r0: int, r1: int, start: int, end: int) -> float:
    """Share of True in rows ``r0:r1`` (clipped to the mask), columns ``start:end``."""
    band = mask[max(r0, 0) : max(min(r1, mask.shape[0]), 0), start:end]
    return float(band.mean()) if band.size else 0.0


def scale_bar_px(image: np.ndarray, *, min_length_px: int = 60) -> float | None:
    """Length in pixels of a white horizontal scale bar in the bottom-right corner, or None.

    The corner (bottom 20 %, right 40 %) is thresholded half-way between its median and its
    brightest pixels (darkest channel, so a white bar on any substrate colour); a horizontal
    opening keeps runs of at least ``min_length_px``. The bar is a slab of 3 to 16 adjacent rows
    whose runs keep their ends (within 2 px), at least 15 times longer than thick, not touching
    the picture's edge, whose pixels are
    white (darkest channel >= 200), and mostly dark in the 3 rows above and the 3 below (a slice
    of a bright flake is not a bar; the label's text above covers less than half the span). None when there is no such slab or two disagree; a bright
    flake touching the bar's end makes the rows differ, so it gives None rather than a wrong
    length.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
        raise ImageError(f"scale_bar_px needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    y0, x0 = int(h * 0.8), int(w * 0.6)
    roi = np.asarray(image[y0:, x0:]).min(axis=2).astype(np.float32)
    if roi.size == 0:
        return None
    base, peak = float(np.median(roi)), float(np.percentile(roi, 99.9))
    if peak < 200.0 or peak - base < 40.0:
        return None
    white = (roi >= (base + peak) / 2).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (min_length_px | 1, 1))
    white = cv2.morphologyEx(white, cv2.MORPH_OPEN, kernel).astype(bool)
    lengths = []
    for g in _slabs(_runs(white)):
        r0, r1, s, e = g[0][0], g[-1][0], g[0][1], g[0][2]
        if not 3 <= len(g) <= 16 or any(a == 0 or b == white.shape[1] for _, a, b in g):
            continue
        if float(np.median(roi[r0 : r1 + 1, s:e])) < 200.0:
            continue
        if _band_white(white, r0 - 3, r0, s, e) >= 0.5 or _band_white(white, r1 + 1, r1 + 4, s, e) >= 0.5:
            continue
        length = float(np.median([b - a for _, a, b in g]))
        if length >= 15 * len(g):  # a bar is thin: 200 x 5 px on the NbSe2 pictures
            lengths.append(length)
    if not lengths:
        return None
    best = max(lengths)
    if any(abs(v - best) > 2 for v in lengths):
        return None  # two bar-like slabs of different lengths: ambiguous
    return best
