"""Small fakes for the hardware and scan tests: a rectangle chip, its renderer, a threshold
detector and an in-memory ScanStore. No flakefinder.synth / db / detect needed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from flakefinder.domain import Detection, FlakeRecord, ImagingContext, LayerClass, TileRecord

BACKGROUND = 200
FLAKE = 120


@dataclass(frozen=True)
class RectChip:
    """A chip with dark axis-aligned rectangular 'flakes' (x0, y0, x1, y1) in µm."""

    width_um: float
    height_um: float
    flakes: tuple[tuple[float, float, float, float], ...] = ()
    texture: bool = False


def pixel_centres(center_um: float, n_px: int, um_per_px: float) -> np.ndarray:
    return center_um + (np.arange(n_px) + 0.5 - n_px / 2.0) * um_per_px


def render_rects(
    chip,
    center_x_um,
    center_y_um,
    width_px,
    height_px,
    um_per_px,
    *,
    focus_error_um=0.0,
    seed=0,
    settings=None,
):
    """Fake renderer: flakes dark on bright; optional texture blurred by |focus error|."""
    xs = pixel_centres(center_x_um, width_px, um_per_px)
    ys = pixel_centres(center_y_um, height_px, um_per_px)
    img = np.full((height_px, width_px), float(BACKGROUND))
    for x0, y0, x1, y1 in chip.flakes:
        inside = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        img[inside] = FLAKE
    if chip.texture:
        # a chip-fixed speckle pattern (depends on chip coordinates, not on the seed)
        ix = np.floor(xs / um_per_px).astype(np.int64)
        iy = np.floor(ys / um_per_px).astype(np.int64)
        h = (ix[None, :] * 73856093) ^ (iy[:, None] * 19349663)
        speck = (h % 97).astype(float) / 97.0 - 0.5
        img = img + 80.0 * speck
        sigma = 1.5 * abs(focus_error_um)
        if sigma > 0:
            img = ndimage.gaussian_filter(img, sigma, mode="nearest")
    if settings is not None and "noise" in settings:
        rng = np.random.default_rng(seed)
        img = img + rng.normal(0, settings["noise"], img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


class ThresholdDetector:
    """Fake detector: connected dark regions -> rectangle detections."""

    name = "fake-threshold"
    version = "1"

    def __init__(self, interrupt_at: int | None = None, min_area_px: int = 4) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at
        self.min_area_px = min_area_px

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            self.calls += 1
            raise KeyboardInterrupt
        self.calls += 1
        dark = image[:, :, 0] < (BACKGROUND + FLAKE) / 2
        labels, _ = ndimage.label(dark)
        out = []
        for sl in ndimage.find_objects(labels):
            if sl is None:
                continue
            y0, y1 = sl[0].start, sl[0].stop
            x0, x1 = sl[1].start, sl[1].stop
            area = float((x1 - x0) * (y1 - y0))
            if area < self.min_area_px:
                continue
            poly = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
            out.append(
                Detection(
                    material="graphene",
                    layer_class=LayerClass.MONO,
                    confidence=0.9,
                    polygon_px=tuple((float(a), float(b)) for a, b in poly),
                    bbox_px=(float(x0), float(y0), float(x1), float(y1)),
                    area_px=area,
                    layer_count=1,
                )
            )
        return out


@dataclass
class MemoryStore:
    """In-memory ScanStore."""

    tiles: dict[int, dict[int, TileRecord]] = field(default_factory=dict)
    flakes: dict[int, list[FlakeRecord]] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    interrupted: list[int] = field(default_factory=list)
    record_order: list[int] = field(default_factory=list)

    def completed_tiles(self, scan_id: int) -> set[int]:
        return set(self.tiles.get(scan_id, {}))

    def scan_flakes(self, scan_id: int) -> list[FlakeRecord]:
        return list(self.flakes.get(scan_id, []))

    def record_tile(self, scan_id: int, tile: TileRecord, flakes: list[FlakeRecord]) -> None:
        assert tile.tile_index not in self.tiles.get(scan_id, {}), "tile stored twice"
        self.tiles.setdefault(scan_id, {})[tile.tile_index] = tile
        self.flakes.setdefault(scan_id, []).extend(flakes)
        self.record_order.append(tile.tile_index)

    def finish_scan(self, scan_id: int) -> None:
        self.finished.add(scan_id)

    def mark_interrupted(self, scan_id: int) -> None:
        self.interrupted.append(scan_id)


def flake_key(f: FlakeRecord) -> tuple:
    return (f.material, tuple(round(v, 6) for v in f.bbox_um), f.tile_index, round(f.area_um2, 6))
