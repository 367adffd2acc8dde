"""Random 2D shapes in micrometres: crystal flakes with straight crystallographic edges, terraces,
tape-residue blobs and particles. numpy only; every function draws from the ``rng`` it is given.

Polygons are ``(N, 2)`` float64 arrays of (x, y) vertices, x right and y down, in any winding.
"""

from __future__ import annotations

from typing import cast

import numpy as np

_BIG = 1.0e9


def clip_halfplane(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Part of ``poly`` where ``normal . p <= offset`` (Sutherland-Hodgman, one edge, vectorised).

    Works for concave subject polygons (the result may contain zero-width bridges, which
    rasterise to nothing). Returns an empty (0, 2) array when nothing is left.
    """
    if len(poly) == 0:
        return poly
    d = poly @ normal - offset
    inside = d <= 0.0
    if inside.all():
        return poly
    if not inside.any():
        return np.empty((0, 2))
    nxt = np.concatenate([poly[1:], poly[:1]])
    dn = np.concatenate([d[1:], d[:1]])
    cross = inside != np.concatenate([inside[1:], inside[:1]])
    denom = np.where(cross, d - dn, 1.0)
    t = np.where(cross, d / denom, 0.0)
    ip = poly + t[:, None] * (nxt - poly)
    out = np.empty((2 * len(poly), 2))
    keep = np.empty(2 * len(poly), dtype=bool)
    out[0::2], keep[0::2] = poly, inside
    out[1::2], keep[1::2] = ip, cross
    return out[keep]


def _crystal_halfplanes(
    rng: np.random.Generator, size_um: float, orientation_rad: float, step_deg: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normals (K, 2) and support offsets (K,) of a random crystal outline around the origin."""
    k = 360 // step_deg
    theta = orientation_rad + np.deg2rad(step_deg) * np.arange(k)
    a = 0.5 * size_um
    aspect = float(rng.uniform(1.0, 2.8))
    phi = orientation_rad + np.deg2rad(step_deg) * int(rng.integers(k))
    b = a / aspect
    h = np.sqrt((a * np.cos(theta - phi)) ** 2 + (b * np.sin(theta - phi)) ** 2)
    h *= rng.uniform(0.55 if step_deg == 60 else 0.8, 1.15, size=k)
    # Drop some edges (long edges / sharp corners) as long as the outline stays bounded.
    drop = rng.random(k) < (0.2 if step_deg == 60 else 0.45)
    for i in np.flatnonzero(drop):
        trial = drop.copy()
        keep_idx = np.flatnonzero(~trial)
        if len(keep_idx) < 4:
            drop[i] = False
            continue
        gaps = np.diff(np.concatenate([keep_idx, keep_idx[:1] + k])) * step_deg
        if gaps.max() >= 180:
            drop[i] = False
    normals = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return normals[~drop], h[~drop]


def clip_to_halfplanes(
    poly: np.ndarray, normals: np.ndarray, offsets: np.ndarray, center: np.ndarray
) -> np.ndarray:
    """Intersection of ``poly`` with every half-plane ``n . (p - center) <= h``."""
    for n, h in zip(normals, offsets, strict=True):
        poly = clip_halfplane(poly, n, float(h + n @ center))
        if len(poly) == 0:
            break
    return poly


def crystal_polygon(
    rng: np.random.Generator,
    center: tuple[float, float],
    size_um: float,
    orientation_rad: float,
    *,
    step_deg: int = 60,
) -> np.ndarray:
    """Convex polygon whose edges all run at multiples of ``step_deg`` to ``orientation_rad``."""
    c = np.asarray(center, dtype=float)
    box = c + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * size_um * 2.0
    normals, offsets = _crystal_halfplanes(rng, size_um, orientation_rad, step_deg)
    return clip_to_halfplanes(box, normals, offsets, c)


def add_notch(rng: np.random.Generator, poly: np.ndarray) -> np.ndarray:
    """Cut a triangular notch with 60-degree flanks into one edge of a convex polygon.

    The flanks run at +-60 degrees to the (crystallographic) edge, so they stay crystallographic.
    """
    n = len(poly)
    lengths = np.linalg.norm(np.roll(poly, -1, axis=0) - poly, axis=1)
    i = int(rng.choice(n, p=lengths / lengths.sum()))
    a, b = poly[i], poly[(i + 1) % n]
    length = float(lengths[i])
    if length <= 0:
        return poly
    width = float(rng.uniform(0.15, 0.45)) * length
    s = float(rng.uniform(0.05, 0.95 - width / length))
    u = (b - a) / length
    p1, p3 = a + u * s * length, a + u * (s * length + width)
    inward = np.array([-u[1], u[0]])
    mid = 0.5 * (p1 + p3)
    if _winding(poly) < 0:
        inward = -inward
    depth = float(rng.choice([0.5, 1.0])) * 0.5 * width * np.tan(np.pi / 3)
    for _ in range(4):  # shrink until the apex is well inside
        apex = mid + inward * depth
        if _inside_convex(poly, apex, margin=0.05 * width):
            return np.concatenate([poly[: i + 1], [p1, apex, p3], poly[i + 1 :]])
        depth *= 0.5
        p1, p3 = mid + (p1 - mid) * 0.5, mid + (p3 - mid) * 0.5
    return poly


def _winding(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _inside_convex(poly: np.ndarray, p: np.ndarray, margin: float) -> bool:
    e = np.roll(poly, -1, axis=0) - poly
    w = p - poly
    cross = e[:, 0] * w[:, 1] - e[:, 1] * w[:, 0]
    lengths = np.linalg.norm(e, axis=1) + 1e-12
    dist = cross / lengths * np.sign(_winding(poly))
    return bool((dist > margin).all())


def tear_edges(rng: np.random.Generator, poly: np.ndarray, probability: float) -> np.ndarray:
    """Replace each edge, with ``probability``, by an irregular torn path (midpoint displacement)."""
    out: list[np.ndarray] = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        out.append(a[None, :])
        length = float(np.linalg.norm(b - a))
        if length < 1.0 or rng.random() >= probability:
            continue
        levels = 4 if length < 20 else 5
        m = 2**levels
        t = np.linspace(0.0, 1.0, m + 1)
        offs = np.zeros(m + 1)
        amp = 0.06 * length
        step = m
        while step > 1:
            half = step // 2
            idx = np.arange(half, m, step)
            offs[idx] = 0.5 * (offs[idx - half] + offs[idx + half]) + rng.normal(0, amp, len(idx))
            amp *= 0.55
            step = half
        u = (b - a) / length
        nrm = np.array([-u[1], u[0]])
        pts = a + t[1:-1, None] * (b - a) + offs[1:-1, None] * nrm
        out.append(pts)
    return np.concatenate(out)


def terrace_inside(
    rng: np.random.Generator, parent: np.ndarray, orientation_rad: float
) -> np.ndarray:
    """A region nested in ``parent``: a straight crystallographic step or a crystal island."""
    proj_angle = orientation_rad + np.deg2rad(60) * int(rng.integers(6))
    if rng.random() < 0.5:
        n = np.array([np.cos(proj_angle), np.sin(proj_angle)])
        p = parent @ n
        lo, hi = float(p.min()), float(p.max())
        return clip_halfplane(parent, n, lo + float(rng.uniform(0.3, 0.75)) * (hi - lo))
    lo_xy, hi_xy = parent.min(axis=0), parent.max(axis=0)
    size = float(np.min(hi_xy - lo_xy)) * float(rng.uniform(0.3, 0.7))
    centroid = parent.mean(axis=0)
    corner = parent[int(rng.integers(len(parent)))]
    center = centroid + (corner - centroid) * float(rng.uniform(0.0, 0.6))
    normals, offsets = _crystal_halfplanes(rng, size, orientation_rad, 60)
    return clip_to_halfplanes(parent, normals, offsets, center)


def blob_polygon(
    rng: np.random.Generator,
    center: tuple[float, float],
    radius_um: float,
    *,
    n_points: int = 40,
    roughness: float = 0.3,
) -> np.ndarray:
    """Smooth irregular closed blob (residue, particles): radius with a few random harmonics."""
    c = np.asarray([center], dtype=float)
    return cast("np.ndarray", blob_polygons(rng, c, np.asarray([radius_um]), n_points=n_points, roughness=roughness)[0])


def blob_polygons(
    rng: np.random.Generator,
    centers: np.ndarray,
    radii_um: np.ndarray,
    *,
    n_points: int = 40,
    roughness: float = 0.3,
) -> np.ndarray:
    """(M, n_points, 2) blobs around ``centers`` (M, 2) with mean radii ``radii_um`` (M,)."""
    m = len(centers)
    theta = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
    k = np.arange(2, 6, dtype=float)
    amp = roughness / k * rng.normal(size=(m, len(k)))
    phase = rng.uniform(0, 2 * np.pi, size=(m, len(k)))
    r = 1.0 + np.einsum("mk,mkt->mt", amp, np.cos(k[None, :, None] * theta + phase[:, :, None]))
    r = np.asarray(radii_um, dtype=float)[:, None] * np.clip(r, 0.3, None)
    pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=2)
    return cast("np.ndarray", pts + np.asarray(centers, dtype=float)[:, None, :])
