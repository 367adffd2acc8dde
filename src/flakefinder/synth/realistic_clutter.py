"""Clutter for realistic scenes: scratches, residue films, glue streaks, particle clusters, wrinkles,
bubbles, cracks, folds, bright flake edges and chip edges, painted into a
:class:`~flakefinder.synth.realistic_scene.Scene`.

Only particles and the off-chip area occlude (they change the owner map); cracks remove flake
material; everything else changes colours only. All sizes are drawn in micrometres and converted
with the image's pixel size, so the clutter scales with the magnification.
"""

from __future__ import annotations

import cv2
import numpy as np

from flakefinder.synth import shapes
from flakefinder.synth.realistic_scene import Scene, cv_points

_SHIFT = 4


def _curve(
    rng: np.random.Generator, start: np.ndarray, length_px: float, bend: float
) -> np.ndarray:
    """A gently curved polyline (N, 2) of about ``length_px`` starting at ``start``."""
    n = 12
    angle = float(rng.uniform(0, 2 * np.pi))
    turns = rng.normal(0.0, bend, n).cumsum()
    steps = np.stack([np.cos(angle + turns), np.sin(angle + turns)], axis=1) * (length_px / n)
    return np.asarray(start, dtype=float) + np.concatenate([[[0.0, 0.0]], steps.cumsum(axis=0)])


def _line_mask(shape: tuple[int, int], pts: np.ndarray, width_px: int) -> np.ndarray:
    """uint8 mask of an anti-aliasing-free polyline of ``width_px``."""
    m = np.zeros(shape, dtype=np.uint8)
    cv2.polylines(m, [cv_points(pts)], False, 1, max(int(width_px), 1), cv2.LINE_8, _SHIFT)
    return m


def scratches(scene: Scene, rng: np.random.Generator, n: int) -> None:
    """Long straight scratches in the oxide (slightly brighter or darker thin lines)."""
    h, w = scene.shape
    for _ in range(n):
        a = rng.uniform((0, 0), (w, h))
        d = rng.normal(size=2)
        d /= np.linalg.norm(d) + 1e-9
        pts = np.stack([a - d * 2 * max(h, w), a + d * 2 * max(h, w)])
        line = _line_mask(scene.shape, pts, int(rng.integers(1, 3))).astype(np.float32)
        soft: np.ndarray = cv2.GaussianBlur(line, (0, 0), 0.7)
        scene.tint(1.0 + float(rng.uniform(-0.12, 0.08)) * soft)


def residue_films(scene: Scene, rng: np.random.Generator, um_per_px: float, n: int) -> None:
    """Large faint tape-residue films (soft blobs absorbing more blue than red)."""
    h, w = scene.shape
    if n <= 0:
        return
    k = 8
    small = np.zeros((-(-h // k), -(-w // k)), dtype=np.float32)
    for _ in range(n):
        c = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        r_px = float(np.exp(rng.uniform(np.log(15.0), np.log(200.0)))) / um_per_px
        poly = shapes.blob_polygon(rng, c, max(r_px, 4.0), roughness=0.6) / k
        tmp = np.zeros_like(small)
        cv2.fillPoly(tmp, [cv_points(poly)], float(rng.uniform(0.01, 0.05)), cv2.LINE_8, _SHIFT)
        small += tmp
    smooth: np.ndarray = cv2.GaussianBlur(small, (0, 0), 2.0)
    dark: np.ndarray = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR)
    tint = np.array([0.8, 1.0, 1.3], dtype=np.float32)
    scene.tint(np.clip(1.0 - dark[:, :, None] * tint, 0.3, 1.0))


def glue_streaks(scene: Scene, rng: np.random.Generator, um_per_px: float, n: int) -> None:
    """Curved glue streaks from the tape: soft bands, hazy and a little brighter or darker."""
    h, w = scene.shape
    for _ in range(n):
        length = float(rng.uniform(0.3, 1.2)) * max(h, w)
        pts = _curve(rng, rng.uniform((0, 0), (w, h)), length, 0.15)
        width = max(2, int(float(rng.uniform(2.0, 15.0)) / um_per_px))
        band = _line_mask(scene.shape, pts, min(width, max(h, w) // 8 + 2)).astype(np.float32)
        m: np.ndarray = cv2.GaussianBlur(band, (0, 0), max(width / 3.0, 0.8))
        strength = float(rng.uniform(-0.15, 0.12))
        tint = np.array([1.0, 1.0, 1.0 + 0.5 * np.sign(strength)], dtype=np.float32)
        scene.tint(1.0 + strength * m[:, :, None] * tint)


def particles(
    scene: Scene, rng: np.random.Generator, um_per_px: float, n_single: int, n_clusters: int
) -> None:
    """Dust and debris: isolated particles and tight clusters, dark or bright, occluding."""
    h, w = scene.shape
    centers: list[np.ndarray] = [rng.uniform((0, 0), (w, h), size=(n_single, 2))]
    for _ in range(n_clusters):
        c = rng.uniform((0, 0), (w, h))
        spread = float(rng.uniform(3.0, 25.0)) / um_per_px
        centers.append(c + rng.normal(0.0, spread, size=(int(rng.integers(5, 40)), 2)))
    pts = np.concatenate(centers)
    if len(pts) == 0:
        return
    radii = np.exp(rng.uniform(np.log(0.3), np.log(2.5), size=len(pts))) / um_per_px
    polys = shapes.blob_polygons(rng, pts, np.maximum(radii, 0.7), n_points=10, roughness=0.25)
    for poly in polys:
        got = scene.polygon_mask([poly])
        if got is None:
            continue
        m, box = got
        if rng.random() < 0.8:
            rgb = rng.uniform(0.15, 0.7) * np.array([1.0, 1.0, 1.0]) * rng.uniform(0.85, 1.15, 3)
        else:
            rgb = rng.uniform(1.3, 2.5) * np.array([1.0, 1.0, 1.2])
        scene.paint_clutter(m, box, rgb)


def flake_pixels(scene: Scene, flake_id: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Bool mask (box-sized) of the pixels owned by ``flake_id``."""
    x0, y0, x1, y1 = box
    ids = np.array([r.flake_id == flake_id for r in scene.regions], dtype=bool)
    return ids[scene.owner[y0:y1, x0:x1]]


def _box(poly: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    h, w = shape
    x0 = max(int(poly[:, 0].min()) - 2, 0)
    y0 = max(int(poly[:, 1].min()) - 2, 0)
    x1 = min(int(poly[:, 0].max()) + 3, w)
    y1 = min(int(poly[:, 1].max()) + 3, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def wrinkles_and_bubbles(
    scene: Scene, rng: np.random.Generator, poly: np.ndarray, flake_id: int, um_per_px: float
) -> None:
    """Wrinkles (thin darker ridges) and bubbles (round spots with a bright rim) on one flake."""
    box = _box(poly, scene.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    own = flake_pixels(scene, flake_id, box)
    if not own.any():
        return
    local = np.zeros(own.shape, dtype=np.float32)
    size = float(np.ptp(poly, axis=0).max())
    for _ in range(int(rng.integers(0, 3))):
        start = poly[int(rng.integers(len(poly)))] - (x0, y0)
        start = start + (poly.mean(axis=0) - poly[0]) * 0.2
        line = _curve(rng, start, size * float(rng.uniform(0.3, 0.9)), 0.2)
        local -= _line_mask(own.shape, line, 1) * float(rng.uniform(0.1, 0.3))
    for _ in range(int(rng.integers(0, 4))):
        c = poly.mean(axis=0) - (x0, y0) + rng.normal(0, size / 5, 2)
        r = max(float(rng.uniform(0.5, 3.0)) / um_per_px, 1.5)
        ring = np.zeros(own.shape, dtype=np.uint8)
        cv2.circle(ring, (int(c[0]), int(c[1])), int(round(r)), 1, max(int(r / 3), 1))
        local += ring * float(rng.uniform(0.1, 0.35))
    soft: np.ndarray = cv2.GaussianBlur(local, (0, 0), 0.6)
    scene.tint(np.where(own, 1.0 + soft, 1.0), box)


def crack(scene: Scene, rng: np.random.Generator, poly: np.ndarray, flake_id: int) -> None:
    """A crack across a flake: a 1-2 px line of bare substrate (may split it in two)."""
    box = _box(poly, scene.shape)
    if box is None:
        return
    x0, y0, _x1, _y1 = box
    own = flake_pixels(scene, flake_id, box)
    c = poly.mean(axis=0) - (x0, y0)
    size = float(np.ptp(poly, axis=0).max())
    line = _curve(rng, c - rng.normal(0, size / 4, 2), size * 1.5, 0.3)
    m = _line_mask(own.shape, line, int(rng.integers(1, 3))).astype(bool) & own
    scene.cut(m, box)


def fold_region(rng: np.random.Generator, poly: np.ndarray) -> np.ndarray:
    """The cap of a flake beyond a random straight fold line (to be drawn at double thickness)."""
    angle = float(rng.uniform(0, 2 * np.pi))
    normal = np.array([np.cos(angle), np.sin(angle)])
    p = poly @ normal
    lo, hi = float(p.min()), float(p.max())
    cut = lo + float(rng.uniform(0.6, 0.9)) * (hi - lo)
    return shapes.clip_halfplane(poly, -normal, -cut)


def bright_edges(scene: Scene, rng: np.random.Generator, polys: list[np.ndarray]) -> None:
    """Thin bright bluish rims along the edges of thick flakes (edge scattering)."""
    if not polys:
        return
    m = np.zeros(scene.shape, dtype=np.uint8)
    cv2.polylines(m, [cv_points(p) for p in polys], True, 1, 1, cv2.LINE_8, _SHIFT)
    g = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.8) * float(rng.uniform(0.5, 1.5))
    tint = np.array([0.6, 0.9, 1.8], dtype=np.float32)
    scene.tint(1.0 + g[:, :, None] * tint)


def chip_edge(scene: Scene, rng: np.random.Generator) -> None:
    """A chip edge: beyond a straight line the chip ends (dark stage or bright bevel), occluding."""
    h, w = scene.shape
    angle = float(rng.uniform(0, 2 * np.pi))
    normal = np.array([np.cos(angle), np.sin(angle)])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float)
    p = corners @ normal
    cut = float(p.min()) + float(rng.uniform(0.6, 0.95)) * float(p.max() - p.min())
    off = shapes.clip_halfplane(corners, -normal, -cut)
    if len(off) < 3:
        return
    got = scene.polygon_mask([off])
    if got is None:
        return
    m, box = got
    level = float(rng.uniform(0.05, 0.4)) if rng.random() < 0.7 else float(rng.uniform(1.5, 3.0))
    scene.paint_clutter(m, box, level * rng.uniform(0.9, 1.1, 3))
