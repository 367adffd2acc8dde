"""Colour modes of the foreground: mode seeking on a histogram of occupied colour bins.

Colours are binned (``bin_width`` per channel); each occupied bin's density is the pixel count of
its 3 x 3 x 3 neighbourhood, and each bin points to its densest neighbour. Following the pointers
ends at a local maximum, a mode; each pixel takes the mode of its bin. This is mean shift on a
grid: no number of clusters to choose, clusters of any shape in colour space. Only occupied bins
are stored (sorted keys + binary search), so the cost follows the number of distinct colours,
not the colour range.
"""

from __future__ import annotations

import numpy as np

_OFFSETS = np.array(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)], dtype=np.int64
)


def colour_modes(samples: np.ndarray, bin_width: float) -> np.ndarray:
    """Mode index (0..k-1) of each row of ``samples`` (n, 3)."""
    n = samples.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    q = np.floor(samples / bin_width).astype(np.int64)
    q -= q.min(axis=0) - 1  # >= 1, so every neighbour index is >= 0
    span = q.max(axis=0) + 2
    keys = (q[:, 0] * span[1] + q[:, 1]) * span[2] + q[:, 2]
    bins, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    step = np.array([span[1] * span[2], span[2], 1], dtype=np.int64)
    shifts = _OFFSETS @ step  # (27,) key offsets of the neighbours
    nb_keys = bins[:, None] + shifts[None, :]  # (m, 27)
    pos = np.searchsorted(bins, nb_keys)
    pos = np.minimum(pos, bins.size - 1)
    present = bins[pos] == nb_keys
    density = np.where(present, counts[pos], 0).sum(axis=1)
    nb_density = np.where(present, density[pos], -1)
    # ties broken towards the larger key, so every chain ends
    score = nb_density.astype(np.float64) + 1e-9 * np.where(present, bins[pos], 0) / max(1, int(bins.max()))
    best = pos[np.arange(bins.size), np.argmax(score, axis=1)]
    own = density.astype(np.float64) + 1e-9 * bins / max(1, int(bins.max()))
    up = score[np.arange(bins.size), np.argmax(score, axis=1)] > own
    ptr = np.where(up, best, np.arange(bins.size))
    for _ in range(64):
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    _, mode_of_bin = np.unique(ptr, return_inverse=True)
    return np.asarray(mode_of_bin[inverse.ravel()], dtype=np.int64)
