"""Draw detections on an image like the paper's Fig. 1: tinted mask, outline, box, label.

Pure numpy/cv2. Colours are fixed per category (stable across runs and images).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import cv2
import numpy as np

from flakefinder.imaging import to_rgb8

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.domain import Detection

_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
)  # fmt: skip


def category_colour(category: str) -> tuple[int, int, int]:
    """RGB colour of a category name (deterministic)."""
    return _PALETTE[zlib.crc32(category.encode("utf-8")) % len(_PALETTE)]


def detection_label(det: Detection) -> str:
    """Label text: ``graphene_mono 0.93`` (+ ``n=1`` when a layer count is known)."""
    text = f"{det.category} {det.confidence:.2f}"
    if det.layer_count is not None:
        text += f" n={det.layer_count}"
    return text


def draw_detections(
    image: np.ndarray,
    detections: Sequence[Detection],
    *,
    alpha: float = 0.4,
    thickness: int | None = None,
    show_boxes: bool = True,
    show_labels: bool = True,
) -> np.ndarray:
    """Return an RGB uint8 copy of ``image`` with every detection drawn on it."""
    base = to_rgb8(image)
    out = base.copy()
    h, w = out.shape[:2]
    lw = thickness if thickness is not None else max(1, round(max(h, w) / 500))
    font_scale = max(0.35, max(h, w) / 2000)
    # tint all masks first so that outlines and labels stay crisp on top
    for det in detections:
        colour = np.array(category_colour(det.category), dtype=np.float32)
        mask = _mask_of(det, h, w)
        if mask.any():
            region = out[mask].astype(np.float32)
            out[mask] = np.clip(region * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    for det in detections:
        colour_t = tuple(int(c) for c in category_colour(det.category))
        if len(det.polygon_px) >= 2:
            pts = np.round(np.asarray(det.polygon_px, dtype=np.float64)).astype(np.int32)
            cv2.polylines(out, [pts.reshape(-1, 1, 2)], True, colour_t, lw, cv2.LINE_AA)
        x0, y0, x1, y1 = (int(round(v)) for v in det.bbox_px)
        if show_boxes:
            cv2.rectangle(out, (x0, y0), (x1, y1), colour_t, lw, cv2.LINE_AA)
        if show_labels:
            _label(out, detection_label(det), x0, y0, colour_t, font_scale, lw)
    return out


def _mask_of(det: Detection, h: int, w: int) -> np.ndarray:
    if det.mask is not None and det.mask.shape == (h, w):
        return np.asarray(det.mask, dtype=bool)
    mask = np.zeros((h, w), dtype=np.uint8)
    if len(det.polygon_px) >= 3:
        pts = np.round(np.asarray(det.polygon_px, dtype=np.float64)).astype(np.int32)
        cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def _label(
    img: np.ndarray,
    text: str,
    x: int,
    y: int,
    colour: tuple[int, ...],
    scale: float,
    lw: int,
) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, max(1, lw))
    h, w = img.shape[:2]
    x = int(min(max(0, x), max(0, w - tw - 2)))
    top = y - th - base - 2
    if top < 0:  # no room above the box: put the label inside it
        top = min(max(0, y), max(0, h - th - base - 2))
    cv2.rectangle(img, (x, top), (x + tw + 2, top + th + base + 2), colour, -1)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(img, text, (x + 1, top + th + 1), font, scale, ink, max(1, lw), cv2.LINE_AA)
