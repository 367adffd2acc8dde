"""Pure geometry of a van der Waals stack (numpy; gdstk only for boolean operations and GDSII).

A design layer places a flake's outline (chip µm) so that its centroid sits at
(``x_um``, ``y_um``) of the design frame, rotated by ``rotation_deg`` counter-clockwise about
that centroid. The crystal orientation of each flake is estimated from its straight
cleaved edges (exfoliated hexagonal crystals break along directions 60° apart), so the twist
angle between two layers is the difference of (edge orientation + rotation), reduced to the
hexagonal period: a value in (-30°, 30°].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from flakefinder.geometry import polygon_area

if TYPE_CHECKING:
    from collections.abc import Sequence

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class StackLayer:
    flake_id: int
    material: str
    layer_count: int | None
    outline_um: Polygon  # in chip coordinates, as stored
    x_um: float = 0.0
    y_um: float = 0.0
    rotation_deg: float = 0.0

    def placed(self) -> np.ndarray:
        return place(self.outline_um, self.x_um, self.y_um, self.rotation_deg)

    @property
    def crystal_angle_deg(self) -> float:
        return (edge_orientation_deg(self.outline_um) + self.rotation_deg) % 60.0


@dataclass(frozen=True)
class PairInfo:
    lower: int  # index in the stack (0 = bottom)
    upper: int
    overlap_um2: float
    twist_deg: float


@dataclass(frozen=True)
class StackSummary:
    areas_um2: tuple[float, ...]
    stack_overlap_um2: float  # area covered by every layer at once
    pairs: tuple[PairInfo, ...]  # neighbouring layers, bottom to top


def polygon_centroid(points: np.ndarray | Sequence[tuple[float, float]]) -> tuple[float, float]:
    p = np.asarray(points, dtype=float)
    x, y = p[:, 0], p[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-12:
        return float(x.mean()), float(y.mean())
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6.0 * a)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6.0 * a)
    return float(cx), float(cy)


def place(
    outline: Sequence[tuple[float, float]], x_um: float, y_um: float, rotation_deg: float
) -> np.ndarray:
    """The outline moved so its centroid is at (x_um, y_um), rotated about it."""
    p = np.asarray(outline, dtype=float)
    if p.ndim != 2 or p.shape[0] < 3 or p.shape[1] != 2:
        raise ValueError(f"an outline needs at least 3 (x, y) vertices, got shape {p.shape}")
    c = np.array(polygon_centroid(p))
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return cast("np.ndarray", (p - c) @ rot.T + np.array([x_um, y_um]))


def edge_orientation_deg(outline: Sequence[tuple[float, float]]) -> float:
    """Dominant edge direction modulo 60° (length-weighted circular mean of 6θ), in [0, 60)."""
    p = np.asarray(outline, dtype=float)
    d = np.roll(p, -1, axis=0) - p
    length = np.hypot(d[:, 0], d[:, 1])
    theta = np.arctan2(d[:, 1], d[:, 0])
    z = np.sum(length * np.exp(6j * theta))
    if abs(z) < 1e-12:
        return 0.0
    return float(np.degrees(np.angle(z)) / 6.0) % 60.0


def twist_deg(lower: StackLayer, upper: StackLayer) -> float:
    """Twist of ``upper`` relative to ``lower``, in (-30, 30]."""
    t = (upper.crystal_angle_deg - lower.crystal_angle_deg) % 60.0
    return t - 60.0 if t > 30.0 else t


def _pts(a: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in a]


def _intersection(polys: Sequence[np.ndarray]) -> list[np.ndarray]:
    import gdstk

    current = [gdstk.Polygon(_pts(polys[0]))]
    for p in polys[1:]:
        current = gdstk.boolean(current, [gdstk.Polygon(_pts(p))], "and", precision=1e-4)
        if not current:
            return []
    return [np.asarray(c.points) for c in current]


def overlap_area_um2(polys: Sequence[np.ndarray]) -> float:
    """Area covered by all polygons at once."""
    if not polys:
        return 0.0
    if len(polys) == 1:
        return polygon_area(polys[0])
    return float(sum(polygon_area(p) for p in _intersection(polys)))


def summarize(layers: Sequence[StackLayer]) -> StackSummary:
    placed = [lay.placed() for lay in layers]
    pairs = tuple(
        PairInfo(
            i,
            i + 1,
            overlap_area_um2([placed[i], placed[i + 1]]),
            twist_deg(layers[i], layers[i + 1]),
        )
        for i in range(len(layers) - 1)
    )
    return StackSummary(
        areas_um2=tuple(polygon_area(p) for p in placed),
        stack_overlap_um2=overlap_area_um2(placed),
        pairs=pairs,
    )


def to_gds(layers: Sequence[StackLayer], name: str) -> bytes:
    """GDSII (µm units, nm precision): layer k+1 holds the k-th flake from the bottom; the
    stack overlap is on layer 100 and every outline carries a text label on datatype 1."""
    import os
    import tempfile

    import gdstk

    lib = gdstk.Library(name="FLAKEFINDER", unit=1e-6, precision=1e-9)
    cell = lib.new_cell(_cell_name(name))
    placed = [lay.placed() for lay in layers]
    for k, (lay, pts) in enumerate(zip(layers, placed, strict=True)):
        cell.add(gdstk.Polygon(_pts(pts), layer=k + 1, datatype=0))
        cx, cy = polygon_centroid(pts)
        count = "" if lay.layer_count is None else f" {lay.layer_count}L"
        cell.add(
            gdstk.Label(f"#{lay.flake_id} {lay.material}{count}", (cx, cy), layer=k + 1, texttype=1)
        )
    for poly in _intersection(placed) if len(placed) > 1 else []:
        cell.add(gdstk.Polygon(_pts(poly), layer=100, datatype=0))
    fd, tmp = tempfile.mkstemp(suffix=".gds")
    os.close(fd)
    try:
        lib.write_gds(tmp)
        with open(tmp, "rb") as f:
            return f.read()
    finally:
        os.unlink(tmp)


def _cell_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name.strip())
    return (cleaned or "DESIGN")[:32]
