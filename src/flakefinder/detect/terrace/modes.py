"""Colour modes of the foreground: mode seeking on a smoothed 3-D histogram (numpy + scipy).

Every occupied histogram bin points to its highest neighbour (26-neighbourhood); following the
pointers ends at a local maximum, a mode. Each pixel gets the mode of its bin. This is mean shift
on a grid: no number of clusters to choose, and clusters of any shape in colour space.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

MAX_BINS = 160  # per axis


def colour_modes(samples: np.ndarray, bin_width: float) -> np.ndarray:
    """Mode index (0..k-1) of each row of ``samples`` (n, 3), modes numbered by first bin."""
    if samples.shape[0] == 0:
        return np.zeros(0, np.int64)
    lo = np.percentile(samples, 0.5, axis=0) - 2.0 * bin_width
    hi = np.percentile(samples, 99.5, axis=0) + 2.0 * bin_width
    nb = np.clip(((hi - lo) / bin_width).astype(np.int64) + 1, 1, MAX_BINS)
    q = np.clip(((samples - lo) / bin_width).astype(np.int64), 0, nb - 1)
    keys = (q[:, 0] * nb[1] + q[:, 1]) * nb[2] + q[:, 2]
    shape = (int(nb[0]), int(nb[1]), int(nb[2]))
    hist = np.bincount(keys, minlength=int(np.prod(nb))).astype(np.float32).reshape(shape)
    smooth = ndi.gaussian_filter(hist, sigma=1.0, mode="constant")
    index = np.arange(smooth.size).reshape(shape)
    best = index.copy()
    best_v = smooth.copy()
    pad_v = np.pad(smooth, 1, constant_values=-1.0)
    pad_i = np.pad(index, 1, constant_values=0)
    x, y, z = shape
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if dx == dy == dz == 0:
                    continue
                v = pad_v[1 + dx : 1 + dx + x, 1 + dy : 1 + dy + y, 1 + dz : 1 + dz + z]
                i = pad_i[1 + dx : 1 + dx + x, 1 + dy : 1 + dy + y, 1 + dz : 1 + dz + z]
                up = v > best_v
                best_v = np.where(up, v, best_v)
                best = np.where(up, i, best)
    ptr = best.ravel()
    for _ in range(64):  # pointer jumping: log2(path length) rounds
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    _, mode_of = np.unique(ptr[keys], return_inverse=True)
    return np.asarray(mode_of, dtype=np.int64)
