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
5. Rims: thin bands of nearly a terrace's colour that line its outline (the darker or bluer
   edge a high-NA objective draws round a flake) join it.
6. Half contrast: a pixel whose colour is nearer the substrate's than its terrace's goes back to
   the substrate, so a blurred outline ends where the step is half done.
7. Necks: each terrace is opened by a small disc, so a faint flake's outline that runs on
   along a thicker flake's edge is cut off it, and lobes joined by a neck become terraces of
   their own (small cut-off pieces are dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.detect.terrace.channels import channel_max
from flakefinder.detect.terrace.modes import colour_modes

_K3 = np.ones((3, 3), np.uint8)
FRAGMENT_SHARE = 0.25  # a piece cut off a terrace smaller than this share of its main part is dropped
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
    rim_band_px: float = 6.0
    rim_band_ratio: float = 1.6
    rim_band_share: float = 0.6
    neck_px: int = 2


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
    *,
    lines: np.ndarray,
) -> np.ndarray:
    """(h, w) int32 terrace labels (0 = substrate or left out) of a working image.

    ``lines``: its edge lines (:func:`edge_lines` with the settings' thresholds; the caller
    measures the terraces' texture on them too).
    """
    s = settings
    usable = foreground & ~clipped
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
    labels = _absorb_rims(labels, log_contrast, valid, s)
    n = int(labels.max()) + 1
    mean, _, _ = region_stats(labels, log_contrast, n)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    px = log_contrast[ys, xs][:, valid]
    d_own = np.sum((px - mean[lab][:, valid]) ** 2, axis=1)
    d_sub = np.sum(px**2, axis=1)
    back = d_sub < d_own
    labels[ys[back], xs[back]] = 0
    return _cut_necks(labels, s.neck_px)


def _cut_necks(labels: np.ndarray, radius: int) -> np.ndarray:
    """Each terrace opened by a disc of ``radius``: bands and tails narrower than the disc
    (a thin flake's outline running on along a thicker one's edge) are cut off, and what
    falls apart is numbered apart."""
    if radius <= 0 or labels.max() == 0:
        return labels
    from skimage.measure import label as label_equal

    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    lab = labels.astype(np.float32)
    inside = (cv2.erode(lab, disc) == lab) & (cv2.dilate(lab, disc) == lab) & (labels > 0)
    core = np.where(inside, lab, np.float32(0))
    hi = cv2.dilate(core, disc)
    lo = cv2.erode(np.where(inside, lab, np.float32(_NONE)), disc)
    keep = (hi == lab) | (lo == lab)
    out = np.where(keep, labels, 0).astype(np.int32)
    split = np.asarray(label_equal(out, background=0, connectivity=1), dtype=np.int32)  # type: ignore[no-untyped-call]
    # a piece cut off keeps its own number only when it is a sizeable part of its terrace
    n = int(split.max()) + 1
    size = np.bincount(split.ravel(), minlength=n)
    parent = np.zeros(n, np.int64)
    parent[split.ravel()] = out.ravel()
    largest = np.zeros(int(labels.max()) + 1, np.int64)
    np.maximum.at(largest, parent, size)
    small = size < FRAGMENT_SHARE * largest[parent]
    small[0] = False
    split[small[split]] = 0
    return split


def _contacts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label pairs that touch (4-neighbours) as (k, 2) ``(a, b)`` with ``a != b``, both orders,
    and the number of touching pixel pairs of each."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()]).astype(np.int64)
    d = a != b
    a, b = a[d], b[d]
    n = int(labels.max()) + 1
    keys, counts = np.unique(np.concatenate([a * n + b, b * n + a]), return_counts=True)
    return np.stack([keys // n, keys % n], axis=1), counts


def _absorb_rims(
    labels: np.ndarray, log_contrast: np.ndarray, valid: np.ndarray, s: RegionSettings
) -> np.ndarray:
    """Bands that line a terrace's outline (the rim a microscope draws around a flake, of
    nearly its colour) join the terrace they line.

    A band is a terrace at most ``rim_band_px`` wide on average (area over its contact with
    the core) whose contrast magnitude is within ``rim_band_ratio`` of the core's and that
    spends at least a third of its outline on the core. A core takes its bands when together
    they line at least ``rim_band_share`` of its outline.
    """
    n = int(labels.max()) + 1
    if n <= 2:
        return labels
    pairs, counts = _contacts(labels)
    perim = np.bincount(pairs[:, 0], weights=counts, minlength=n)
    area = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    mean, _, _ = region_stats(labels, log_contrast, n)
    mag = np.sqrt(np.sum(mean[:, valid] ** 2, axis=1))
    a, b = pairs[:, 0], pairs[:, 1]
    ok = (a > 0) & (b > 0)
    ok &= area[a] <= s.rim_band_px * counts
    ok &= counts >= perim[a] / 3.0
    ratio = mag[a] / np.maximum(mag[b], 1e-9)
    ok &= (ratio <= s.rim_band_ratio) & (ratio >= 1.0 / s.rim_band_ratio)
    # each band lines the core it touches most
    best: dict[int, tuple[int, int]] = {}
    for k in np.flatnonzero(ok):
        band, core, c = int(a[k]), int(b[k]), int(counts[k])
        if band not in best or c > best[band][1]:
            best[band] = (core, c)
    lined = np.zeros(n)
    for core, c in best.values():
        lined[core] += c
    lut = np.arange(n, dtype=np.int32)
    for band, (core, _) in best.items():
        if lined[band] >= s.rim_band_share * perim[band]:
            continue  # itself a lined core
        if lined[core] >= s.rim_band_share * perim[core]:
            lut[band] = core
    if np.array_equal(lut, np.arange(n)):
        return labels
    return np.asarray(lut[labels])


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
