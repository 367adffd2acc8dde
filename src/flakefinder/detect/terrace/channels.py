"""Per-pixel reductions over the colour channels of (h, w, 3) images, only over the channels that
carry contrast. Element-wise on channel planes: much faster than numpy reductions over a last
axis of length 3."""

from __future__ import annotations

import numpy as np


def channel_max(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w) maximum over the valid channels of ``a``."""
    planes = [a[:, :, c] for c in range(3) if valid[c]]
    out = planes[0].copy()
    for p in planes[1:]:
        np.maximum(out, p, out=out)
    return out


def channel_abs_max(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w) largest absolute value over the valid channels of ``a``."""
    planes = [np.abs(a[:, :, c]) for c in range(3) if valid[c]]
    out: np.ndarray = planes[0]
    for p in planes[1:]:
        np.maximum(out, p, out=out)
    return out


def channel_norm(a: np.ndarray, valid: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """(h, w) Euclidean norm over the valid channels of ``a`` (each divided by ``scale``)."""
    out = np.zeros(a.shape[:2], np.float32)
    for c in range(3):
        if valid[c]:
            p = a[:, :, c] if scale is None else a[:, :, c] / np.float32(scale[c])
            out += p * p
    return np.sqrt(out)
