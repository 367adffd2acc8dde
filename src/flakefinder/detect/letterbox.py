"""Letterboxing: resize to a square keeping the aspect ratio, zero pad, and map results back.

This is the paper's preprocessing ("each image was resized to 1024 x 1024 px while preserving
the aspect ratio, with any remaining space zero padded"). The content is centred, as in the
reference Mask R-CNN implementation. Pure numpy/cv2; the trainer and the detector share it.

Geometry: the longer side becomes ``size``; ``scale = size / max(H, W)``; the resized content
(``round(W*scale)`` x ``round(H*scale)`` px) starts at ``(pad_x, pad_y)`` in the padded square.
A point maps as ``x' = x * scale + pad_x`` and back as ``x = (x' - pad_x) / scale``.
"""

from __future__ import annotations

import cv2
import numpy as np

Pad = tuple[int, int]


def letterbox_geometry(height: int, width: int, size: int) -> tuple[int, int, float, Pad]:
    """(new_width, new_height, scale, (pad_x, pad_y)) for an image of ``height`` x ``width``."""
    if height < 1 or width < 1:
        raise ValueError(f"cannot letterbox an empty image ({width}x{height})")
    if size < 1:
        raise ValueError(f"letterbox size must be positive, got {size}")
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return new_w, new_h, scale, ((size - new_w) // 2, (size - new_h) // 2)


def letterbox(
    image: np.ndarray, size: int, *, nearest: bool = False
) -> tuple[np.ndarray, float, Pad]:
    """Resize ``image`` ((H, W) or (H, W, C), any cv2 dtype) into a zero-padded ``size`` square.

    ``nearest=True`` uses nearest-neighbour interpolation (for label masks); bool arrays are
    resized with nearest-neighbour automatically. Returns ``(padded, scale, (pad_x, pad_y))``.
    """
    a = np.asarray(image)
    if a.ndim not in (2, 3):
        raise ValueError(f"letterbox expects an (H, W) or (H, W, C) array, got shape {a.shape}")
    h, w = a.shape[:2]
    new_w, new_h, scale, (pad_x, pad_y) = letterbox_geometry(h, w, size)
    is_bool = a.dtype == np.bool_
    src = a.astype(np.uint8) if is_bool else a
    if (new_w, new_h) == (w, h):
        resized = src
    else:
        if nearest or is_bool:
            interp = cv2.INTER_NEAREST
        else:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        resized = cv2.resize(src, (new_w, new_h), interpolation=interp)
        if src.ndim == 3 and resized.ndim == 2:  # cv2 drops a trailing channel axis of size 1
            resized = resized[:, :, None]
    out = np.zeros((size, size) + src.shape[2:], dtype=src.dtype)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return (out.astype(bool) if is_bool else out), scale, (pad_x, pad_y)


def letterbox_points(points: np.ndarray, scale: float, pad: Pad) -> np.ndarray:
    """Map (N, 2) x, y points of the original image into the letterboxed square."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p * scale + np.asarray(pad, dtype=np.float64)


def unletterbox_points(points: np.ndarray, scale: float, pad: Pad) -> np.ndarray:
    """Inverse of :func:`letterbox_points`."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (p - np.asarray(pad, dtype=np.float64)) / scale


def letterbox_boxes(boxes: np.ndarray, scale: float, pad: Pad) -> np.ndarray:
    """Map (N, 4) x_min, y_min, x_max, y_max boxes into the letterboxed square."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    off = np.array([pad[0], pad[1], pad[0], pad[1]], dtype=np.float64)
    return b * scale + off


def unletterbox_boxes(
    boxes: np.ndarray, scale: float, pad: Pad, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Inverse of :func:`letterbox_boxes`; with ``shape=(H, W)`` the boxes are clipped to it."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    off = np.array([pad[0], pad[1], pad[0], pad[1]], dtype=np.float64)
    out = (b - off) / scale
    if shape is not None:
        h, w = shape
        out[:, 0::2] = np.clip(out[:, 0::2], 0.0, float(w))
        out[:, 1::2] = np.clip(out[:, 1::2], 0.0, float(h))
    return out


def unletterbox_mask(
    mask: np.ndarray, shape: tuple[int, int], *, threshold: float | None = None
) -> np.ndarray:
    """Map a (size, size) mask of the letterboxed square back to an (H, W) mask.

    Float masks (probabilities) are resized bilinearly; with ``threshold`` the result is a bool
    mask ``>= threshold``. Bool/integer masks are resized nearest-neighbour.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"unletterbox_mask expects a square (S, S) mask, got {m.shape}")
    h, w = shape
    new_w, new_h, _, (pad_x, pad_y) = letterbox_geometry(h, w, m.shape[0])
    crop = m[pad_y : pad_y + new_h, pad_x : pad_x + new_w]
    is_float = np.issubdtype(m.dtype, np.floating)
    src: np.ndarray = crop.astype(np.float32) if is_float else crop.astype(np.uint8)
    if (new_w, new_h) != (w, h):
        interp = cv2.INTER_LINEAR if is_float else cv2.INTER_NEAREST
        src = cv2.resize(src, (w, h), interpolation=interp)
    if threshold is not None:
        return np.asarray(src >= threshold)
    if m.dtype == np.bool_:
        return src.astype(bool)
    return src.astype(m.dtype) if not is_float else src
