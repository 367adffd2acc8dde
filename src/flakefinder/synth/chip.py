"""Virtual chips: flakes (with terraces) and debris placed on a SiO2/Si chip, in chip micrometres.

``random_chip`` is deterministic for a seed. A chip round-trips through JSON
(:meth:`VirtualChip.to_json` / :meth:`VirtualChip.from_json`, :func:`save_chip` / :func:`load_chip`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flakefinder.artifacts import load_json_file, parse_json, write_atomic
from flakefinder.errors import DatasetError, JsonInputError
from flakefinder.geometry import polygon_area
from flakefinder.synth import shapes

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

Point = tuple[float, float]
Polygon = tuple[Point, ...]

#: Flakes with more layers than this are bulk: rendered, never ground-truth instances.
BULK_MIN_LAYERS = 41

_FORMAT = "flakefinder.virtual_chip"


def _bbox_um(polygon_um: Polygon) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of a polygon's vertices."""
    a = np.asarray(polygon_um)
    return (
        float(a[:, 0].min()),
        float(a[:, 1].min()),
        float(a[:, 0].max()),
        float(a[:, 1].max()),
    )


@dataclass(frozen=True)
class Terrace:
    """A region of constant thickness. ``polygon_um`` is (x, y) vertices in chip micrometres."""

    polygon_um: Polygon
    n_layers: int


@dataclass(frozen=True)
class SynthFlake:
    """One exfoliated piece. ``terraces[0]`` is the outline; later terraces lie inside it and are
    thicker (each terrace is nested in the one before it)."""

    flake_id: int
    material: str
    terraces: tuple[Terrace, ...]

    @property
    def n_layers(self) -> int:
        """Layer count of the outline (thinnest) terrace."""
        return self.terraces[0].n_layers

    @property
    def is_bulk(self) -> bool:
        return self.n_layers >= BULK_MIN_LAYERS

    @property
    def bbox_um(self) -> tuple[float, float, float, float]:
        return _bbox_um(self.terraces[0].polygon_um)


@dataclass(frozen=True)
class Debris:
    """Tape residue (large faint blob, ``strength`` = fractional darkening ~0.01-0.08) or a
    particle (small dot; ``strength`` > 0 darkens, < 0 brightens)."""

    kind: Literal["residue", "particle"]
    polygon_um: Polygon
    strength: float

    @property
    def bbox_um(self) -> tuple[float, float, float, float]:
        return _bbox_um(self.polygon_um)


@dataclass(frozen=True)
class FlakeDistribution:
    """What ``random_chip`` draws. Weights need not sum to 1."""

    mono_weight: float = 0.06
    few_weight: float = 0.22  # 2-10 layers
    thick_weight: float = 0.30  # 11-40 layers
    bulk_weight: float = 0.42  # > 40 layers
    bulk_max_layers: int = 400
    min_size_um: float = 2.0
    max_size_um: float = 100.0
    thin_max_size_um: float = 40.0  # monolayers are rarely larger
    terrace_probability: float = 0.35
    max_extra_terraces: int = 3
    concave_probability: float = 0.3
    torn_edge_probability: float = 0.15  # per edge
    edge_step30_probability: float = 0.35  # edges at multiples of 30 (else 60) degrees
    residue_per_mm2: float = 3.0
    particles_per_mm2: float = 150.0

    def layer_count(self, rng: np.random.Generator) -> int:
        w = np.array([self.mono_weight, self.few_weight, self.thick_weight, self.bulk_weight])
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"FlakeDistribution weights must be >= 0 with a positive sum, got {w}")
        cls = int(rng.choice(4, p=w / w.sum()))
        if cls == 0:
            return 1
        if cls == 1:
            n = np.arange(2, 11)
            p = n**-0.7
            return int(rng.choice(n, p=p / p.sum()))
        if cls == 2:
            return int(rng.integers(11, 41))
        hi = max(self.bulk_max_layers, BULK_MIN_LAYERS)
        return int(round(np.exp(rng.uniform(np.log(BULK_MIN_LAYERS), np.log(hi)))))

    def size_um(self, rng: np.random.Generator, n_layers: int) -> float:
        hi = self.max_size_um
        if n_layers <= 1:
            hi = min(hi, self.thin_max_size_um)
        elif n_layers <= 10:
            hi = min(hi, 1.5 * self.thin_max_size_um)
        lo = min(self.min_size_um, hi)
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


@dataclass(frozen=True)
class VirtualChip:
    """A chip of ``width_um`` x ``height_um`` with origin at its top-left corner."""

    width_um: float
    height_um: float
    oxide_thickness_nm: float
    materials: tuple[str, ...]
    flakes: tuple[SynthFlake, ...]
    debris: tuple[Debris, ...] = ()
    seed: int | None = None

    @cached_property
    def _flake_boxes(self) -> np.ndarray:
        return np.array([f.bbox_um for f in self.flakes], dtype=float).reshape(-1, 4)

    @cached_property
    def _debris_boxes(self) -> np.ndarray:
        return np.array([d.bbox_um for d in self.debris], dtype=float).reshape(-1, 4)

    def flakes_in_rect(self, x0: float, y0: float, x1: float, y1: float) -> list[SynthFlake]:
        """Flakes whose bounding box overlaps the rectangle, in chip order (vectorised test)."""
        b = self._flake_boxes
        hit = (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)
        return [self.flakes[i] for i in np.flatnonzero(hit)]

    def debris_in_rect(self, x0: float, y0: float, x1: float, y1: float) -> list[Debris]:
        b = self._debris_boxes
        hit = (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)
        return [self.debris[i] for i in np.flatnonzero(hit)]

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": 1,
            "width_um": self.width_um,
            "height_um": self.height_um,
            "oxide_thickness_nm": self.oxide_thickness_nm,
            "materials": list(self.materials),
            "seed": self.seed,
            "flakes": [
                {
                    "flake_id": f.flake_id,
                    "material": f.material,
                    "terraces": [
                        {"n_layers": t.n_layers, "polygon_um": [list(p) for p in t.polygon_um]}
                        for t in f.terraces
                    ],
                }
                for f in self.flakes
            ],
            "debris": [
                {
                    "kind": d.kind,
                    "strength": d.strength,
                    "polygon_um": [list(p) for p in d.polygon_um],
                }
                for d in self.debris
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VirtualChip:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DatasetError(f"not a flakefinder virtual chip (expected format {_FORMAT!r})")
        try:
            return cls(
                width_um=float(data["width_um"]),
                height_um=float(data["height_um"]),
                oxide_thickness_nm=float(data["oxide_thickness_nm"]),
                materials=tuple(str(m) for m in data["materials"]),
                seed=None if data.get("seed") is None else int(data["seed"]),
                flakes=tuple(
                    SynthFlake(
                        flake_id=int(f["flake_id"]),
                        material=str(f["material"]),
                        terraces=tuple(
                            Terrace(_poly(t["polygon_um"]), int(t["n_layers"]))
                            for t in f["terraces"]
                        ),
                    )
                    for f in data["flakes"]
                ),
                debris=tuple(
                    Debris(d["kind"], _poly(d["polygon_um"]), float(d["strength"]))
                    for d in data.get("debris", [])
                ),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DatasetError(f"malformed virtual chip JSON: {exc!r}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> VirtualChip:
        try:
            data = parse_json(text, what="virtual chip file")
        except JsonInputError as exc:
            raise DatasetError(str(exc)) from None
        return cls.from_dict(data)


def _poly(points: Sequence[Sequence[float]]) -> Polygon:
    return tuple((float(p[0]), float(p[1])) for p in points)


def _to_poly(a: np.ndarray) -> Polygon:
    return tuple(map(tuple, np.round(np.asarray(a, dtype=float), 4).tolist()))


def save_chip(chip: VirtualChip, path: str | Path) -> Path:
    """Write ``chip`` as JSON (e.g. ``chip.json``); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, chip.to_json())
    return p


def load_chip(path: str | Path) -> VirtualChip:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"virtual chip file not found: {p}")
    return VirtualChip.from_dict(load_json_file(p, error=DatasetError, what=f"virtual chip file {p}"))


def check_materials(materials: Sequence[str]) -> tuple[str, ...]:
    """Validate material names against the optics database (raises UnknownMaterialError)."""
    from flakefinder.optics import get_material

    if not materials:
        raise ValueError("at least one material is needed")
    for m in materials:
        get_material(m)
    return tuple(materials)


def random_flake(
    rng: np.random.Generator,
    flake_id: int,
    material: str,
    center: Point,
    dist: FlakeDistribution,
) -> SynthFlake:
    """One random flake centred near ``center``."""
    n0 = dist.layer_count(rng)
    size = dist.size_um(rng, n0)
    orientation = float(rng.uniform(0.0, np.pi / 3))
    step = 30 if rng.random() < dist.edge_step30_probability else 60
    outline = shapes.crystal_polygon(rng, center, size, orientation, step_deg=step)
    if rng.random() < dist.concave_probability:
        outline = shapes.add_notch(rng, outline)
        if rng.random() < 0.3:
            outline = shapes.add_notch(rng, outline)
    if dist.torn_edge_probability > 0:
        outline = shapes.tear_edges(rng, outline, dist.torn_edge_probability)
    terraces = [Terrace(_to_poly(outline), n0)]
    if rng.random() < dist.terrace_probability:
        parent, n = outline, n0
        min_area = max(1.0, 0.03 * polygon_area(outline))
        for _ in range(int(rng.integers(1, dist.max_extra_terraces + 1))):
            inner = shapes.terrace_inside(rng, parent, orientation)
            if polygon_area(inner) < min_area:
                break
            if n < BULK_MIN_LAYERS and rng.random() < 0.1:
                n = int(rng.integers(BULK_MIN_LAYERS, max(dist.bulk_max_layers, 42)))
            elif n <= 10:
                n += int(rng.choice([1, 1, 1, 2, 2, 3, 5]))
            else:
                n += 1 + int(n * rng.uniform(0.1, 0.6))
            terraces.append(Terrace(_to_poly(inner), n))
            parent = inner
    return SynthFlake(flake_id, material, tuple(terraces))


def random_chip(
    width_um: float,
    height_um: float,
    materials: Sequence[str],
    *,
    oxide_thickness_nm: float = 90.0,
    flakes_per_mm2: float = 25.0,
    distribution: FlakeDistribution | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> VirtualChip:
    """A random chip (deterministic for ``seed``). Flakes do not overlap (bounding boxes are
    kept apart); each flake's material is drawn uniformly from ``materials``.

    ``progress(done, total)`` is called every 1000 flakes drawn and once at the end (large
    chips take minutes to generate).
    """
    materials = check_materials(materials)
    if width_um <= 0 or height_um <= 0:
        raise ValueError(f"chip size must be positive, got {width_um} x {height_um} µm")
    dist = distribution or FlakeDistribution()
    rng = np.random.default_rng(seed)
    area_mm2 = width_um * height_um * 1e-6
    n_flakes = int(rng.poisson(flakes_per_mm2 * area_mm2))
    flakes: list[SynthFlake] = []
    boxes = np.empty((max(n_flakes, 1), 4))
    for k in range(n_flakes):
        if progress is not None and k % 1000 == 0:
            progress(k, n_flakes)
        material = materials[int(rng.integers(len(materials)))]
        for _attempt in range(4):
            center = (float(rng.uniform(0, width_um)), float(rng.uniform(0, height_um)))
            flake = random_flake(rng, len(flakes), material, center, dist)
            x0, y0, x1, y1 = flake.bbox_um
            if x0 < 0 or y0 < 0 or x1 > width_um or y1 > height_um:
                continue
            b = boxes[: len(flakes)]
            gap = 2.0
            if (
                (b[:, 0] < x1 + gap)
                & (b[:, 2] > x0 - gap)
                & (b[:, 1] < y1 + gap)
                & (b[:, 3] > y0 - gap)
            ).any():
                continue
            boxes[len(flakes)] = (x0, y0, x1, y1)
            flakes.append(flake)
            break
    if progress is not None:
        progress(n_flakes, n_flakes)
    debris: list[Debris] = []
    for _ in range(int(rng.poisson(dist.residue_per_mm2 * area_mm2))):
        c = (float(rng.uniform(0, width_um)), float(rng.uniform(0, height_um)))
        radius = float(np.exp(rng.uniform(np.log(10.0), np.log(120.0))))
        poly = shapes.blob_polygon(rng, c, radius, roughness=0.5)
        debris.append(Debris("residue", _to_poly(poly), round(float(rng.uniform(0.01, 0.06)), 4)))
    n_particles = int(rng.poisson(dist.particles_per_mm2 * area_mm2))
    if n_particles:
        centers = rng.uniform((0.0, 0.0), (width_um, height_um), size=(n_particles, 2))
        radii = np.exp(rng.uniform(np.log(0.2), np.log(2.5), size=n_particles))
        polys = shapes.blob_polygons(rng, centers, radii, n_points=10, roughness=0.2)
        strength = rng.uniform(0.15, 0.6, n_particles) * np.where(
            rng.random(n_particles) < 0.75, 1.0, -0.5
        )
        for poly, st in zip(polys, np.round(strength, 4).tolist(), strict=True):
            debris.append(Debris("particle", _to_poly(poly), st))
    return VirtualChip(
        width_um=float(width_um),
        height_um=float(height_um),
        oxide_thickness_nm=float(oxide_thickness_nm),
        materials=materials,
        flakes=tuple(flakes),
        debris=tuple(debris),
        seed=seed,
    )
