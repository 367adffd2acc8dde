"""Cut the foreground of a working image into terraces (regions of one colour).

1. Pieces: the foreground without edge lines (Canny on the noise-scaled log contrast) and without
   the rims of bulk and clipped areas, split by colour mode (:mod:`.modes`) and connectivity.
2. Merging: touching pieces whose mean colours differ by less than their own scatter (or a
   small absolute/relative step) are one terrace; pieces on two sides of an edge line only when
   their colours nearly agree.
3. Growth: terraces take back the edge lines and rims they own: up to ``grow_px`` without
   condition and a little further where the colour agrees.
4. Slivers (no pixel further than ``thin_px`` from another region) and crumbs are dissolved,
   and the others grow into what they leave.
5. Half contrast: a pixel whose colour is nearer the substrate's than its terrace's goes back to
   the substrate, so a blurred outline ends where the step is half done.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.detect.terrace.channels import channel_max
from flakefinder.detect.terrace.modes import colour_modes

_K3 = np.ones((3, 3), np.uint8)
_NONE = np.int32(2**24 - 1)  # "no label" in float32 min/max filters (exact below 2**24)


@dataclass(frozen=True)
class RegionSettings:
    """Knobs of :func:`terrace_labels` (log-contrast units, working pixels)."""

    bin_width: float = 0.02
    canny_low: float = 2.0
    canny_high: float = 5.0
    bright: float = 0.37
    rim_px: int = 4
    merge_abs: float = 0.015
    merge_rel: float = 0.06
    merge_sd: float = 2.0
    thin_px: float = 1.5
    min_piece_px: int = 6
    grow_px: float = 1.5
    grow_far_px: float = 3.0
    grow_tol: float = 0.03


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = int(p[a])
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int32)


def region_stats(
    labels: np.ndarray, values: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label 0..n-1: mean (n, 3), pixel count (n,) and sd (n, 3) of ``values``.

    Label 0 (background) is not measured: its row is zero.
    """
    sel = labels > 0
    flat = labels[sel]
    vals = values[sel].astype(np.float64)
    count = np.bincount(flat, minlength=n).astype(np.float64)
    mean = np.zeros((n, 3))
    sd = np.zeros((n, 3))
    den = np.maximum(count, 1.0)
    for c in range(3):
        v = vals[:, c]
        s1 = np.bincount(flat, weights=v, minlength=n)
        s2 = np.bincount(flat, weights=v * v, minlength=n)
        mean[:, c] = s1 / den
        sd[:, c] = np.sqrt(np.maximum(s2 / den - mean[:, c] ** 2, 0.0))
    return mean, count, sd


def adjacent_pairs(labels: np.ndarray, where: np.ndarray, window: int) -> np.ndarray:
    """(k, 2) label pairs (a < b, both > 0) that meet within a ``window`` x ``window`` box
    centred on a pixel of ``where``."""
    k = np.ones((window, window), np.uint8)
    lab = labels.astype(np.float32)
    lo = cv2.erode(np.where(labels > 0, lab, np.float32(_NONE)), k)
    hi = cv2.dilate(lab, k)
    sel = where & (lo < hi) & (lo < _NONE)
    if not sel.any():
        return np.zeros((0, 2), np.int64)
    return np.unique(np.stack([lo[sel], hi[sel]], axis=1).astype(np.int64), axis=0)


def edge_lines(
    log_contrast: np.ndarray, noise: np.ndarray, valid: np.ndarray, low: float, high: float
) -> np.ndarray:
    """Canny edge lines of the log contrast in units of the substrate noise (per pixel of step)."""
    fixed = 10.0  # noise units in fixed point; Sobel sums 8 of them
    scaled = log_contrast * (fixed / np.where(valid, noise, np.inf)).astype(np.float32)
    np.minimum(scaled, 3000.0, out=scaled)  # bulk steps saturate, far above any threshold
    np.maximum(scaled, -3000.0, out=scaled)
    z16 = scaled.astype(np.int16)
    dx = cv2.Sobel(z16, cv2.CV_16S, 1, 0, ksize=3)
    dy = cv2.Sobel(z16, cv2.CV_16S, 0, 1, ksize=3)
    k = 8.0 * fixed
    return np.asarray(cv2.Canny(dx, dy, low * k, high * k, L2gradient=True) > 0)


def _pieces(core: np.ndarray, log_contrast: np.ndarray, bin_width: float) -> np.ndarray:
    """Connected pixels of one colour mode, numbered from 1 (0: not in ``core``)."""
    from skimage.measure import label as label_equal

    samples = log_contrast[core]
    if samples.shape[0] < 10:
        return np.zeros(core.shape, np.int32)
    modes_img = np.zeros(core.shape, np.int32)
    modes_img[core] = colour_modes(samples, bin_width) + 1
    labelled = label_equal(modes_img, background=0, connectivity=1)  # type: ignore[no-untyped-call]
    return np.asarray(labelled, dtype=np.int32)


def _merge(labels: np.ndarray, log_contrast: np.ndarray, valid: np.ndarray, core: np.ndarray,
           lines: np.ndarray, s: RegionSettings) -> np.ndarray:
    n = int(labels.max()) + 1
    mean, _, sd = region_stats(labels, log_contrast, n)
    mag = np.abs(mean[:, valid]).max(axis=1)
    var = (sd**2)[:, valid]
    uf = _UnionFind(n)

    def run(pairs: np.ndarray, soft: bool) -> None:
        pairs = pairs[pairs[:, 0] > 0]
        if pairs.size == 0:
            return
        a, b = pairs[:, 0], pairs[:, 1]
        dist = np.sqrt(np.sum((mean[a] - mean[b])[:, valid] ** 2, axis=1))
        tol = np.maximum(s.merge_abs, s.merge_rel * np.maximum(mag[a], mag[b]))
        if soft:
            tol = np.maximum(tol, s.merge_sd * np.sqrt(np.mean((var[a] + var[b]) / 2.0, axis=1)))
        ratio = dist / tol
        for k in np.argsort(ratio, kind="stable"):
            if ratio[k] >= 1.0:
                break
            uf.union(int(a[k]), int(b[k]))

    run(adjacent_pairs(labels, core, 3), soft=True)
    run(adjacent_pairs(labels, lines, 5), soft=False)
    roots = uf.roots()
    _, compact = np.unique(roots, return_inverse=True)
    return np.asarray(compact.astype(np.int32)[labels])


def _dissolve_slivers(labels: np.ndarray, s: RegionSettings) -> np.ndarray:
    n = int(labels.max()) + 1
    lab = labels.astype(np.float32)
    boundary = cv2.dilate(lab, _K3) != cv2.erode(lab, _K3)
    inner = cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, 3)
    radius = np.zeros(n, np.float32)
    np.maximum.at(radius, labels.ravel(), inner.ravel())
    count = np.bincount(labels.ravel(), minlength=n)
    gone = (radius < s.thin_px) | (count < s.min_piece_px)
    gone[0] = False
    out = labels.copy()
    out[gone[labels]] = 0
    return out


def terrace_labels(
    log_contrast: np.ndarray,
    noise: np.ndarray,
    valid: np.ndarray,
    foreground: np.ndarray,
    clipped: np.ndarray,
    settings: RegionSettings = RegionSettings(),
) -> np.ndarray:
    """(h, w) int32 terrace labels (0 = substrate or left out) of a working image."""
    s = settings
    usable = foreground & ~clipped
    lines = edge_lines(log_contrast, noise, valid, s.canny_low, s.canny_high)
    bright = channel_max(log_contrast, valid) > s.bright
    strong = (clipped | bright).astype(np.uint8)
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * s.rim_px + 1, 2 * s.rim_px + 1))
    rim = cv2.dilate(strong, ring).astype(bool) & ~strong.astype(bool)
    core = usable & ~lines & ~rim
    bin_width = max(s.bin_width, 2.0 * float(np.min(noise[valid])))
    labels = _pieces(core, log_contrast, bin_width)
    if labels.max() == 0:
        return labels
    labels = _merge(labels, log_contrast, valid, core, usable & lines, s)
    # take back the edge lines first: a faint flake crossed by noise edges is not a sliver
    labels = _grow(labels, log_contrast, valid, usable & ~rim, s)
    labels = _dissolve_slivers(labels, s)
    labels = _grow(labels, log_contrast, valid, usable & ~rim, s)
    n = int(labels.max()) + 1
    mean, _, _ = region_stats(labels, log_contrast, n)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    px = log_contrast[ys, xs][:, valid]
    d_own = np.sum((px - mean[lab][:, valid]) ** 2, axis=1)
    d_sub = np.sum(px**2, axis=1)
    back = d_sub < d_own
    labels[ys[back], xs[back]] = 0
    return labels


def _grow(
    labels: np.ndarray, log_contrast: np.ndarray, valid: np.ndarray, into: np.ndarray,
    s: RegionSettings,
) -> np.ndarray:
    """Unlabelled pixels of ``into`` join a neighbouring terrace, one pixel ring at a time:
    the first ``grow_px`` rings always, up to ``grow_far_px`` where their colour agrees with
    the terrace's."""
    n = int(labels.max()) + 1
    if n <= 1:
        return labels
    mean, _, _ = region_stats(labels, log_contrast, n)
    mag = np.abs(mean[:, valid]).max(axis=1)
    tol = np.maximum(s.grow_tol, 0.15 * mag)
    out = labels.copy()
    lab_f = out.astype(np.float32)  # exact below 2**24
    for ring in range(1, int(s.grow_far_px) + 1):
        reach = cv2.dilate(lab_f, _K3)  # the largest neighbouring label
        ys, xs = np.nonzero((out == 0) & into & (reach > 0))
        if ys.size == 0:
            break
        own = reach[ys, xs].astype(np.int32)
        if ring > s.grow_px:
            diff = np.sqrt(np.sum((log_contrast[ys, xs][:, valid] - mean[own][:, valid]) ** 2, axis=1))
            ok = diff < tol[own]
            ys, xs, own = ys[ok], xs[ok], own[ok]
        out[ys, xs] = own
        lab_f[ys, xs] = own
    return out
