"""Placing detections on the chip and storing each flake once although tiles overlap.

Two rules, both deterministic and local to what is already stored, so a resumed scan gives the
same flakes as an uninterrupted one:

1. *Border rule* (prefer the more complete view): a detection touching its image border is
   dropped when the field of view of another planned tile contains its whole chip bbox well
   inside; that tile sees everything this one sees of the flake, and more.
2. *Match rule*: a detection whose bbox, clipped to the region both tiles see, overlaps a
   stored flake of the same material with IoU >= ``iou_threshold`` (or whose centroid lies
   in that flake's clipped bbox) is a duplicate and is not stored; the stored one (the first
   in plan order) is kept.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flakefinder.domain import Detection, FlakeRecord, StagePosition, pixel_to_chip_um

if TYPE_CHECKING:
    from collections.abc import Iterable

Rect = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max


def detection_to_record(
    det: Detection,
    stage: StagePosition,
    width_px: int,
    height_px: int,
    um_per_px: float,
    *,
    detector: str,
    detector_version: str,
    tile_index: int | None,
) -> FlakeRecord:
    """A :class:`FlakeRecord` with the detection's outline in chip µm."""
    poly_px = det.polygon_px
    if len(poly_px) < 3:
        x0, y0, x1, y1 = det.bbox_px
        poly_px = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    poly_um = tuple(
        pixel_to_chip_um(x, y, stage, width_px, height_px, um_per_px) for x, y in poly_px
    )
    bx0, by0 = pixel_to_chip_um(
        det.bbox_px[0], det.bbox_px[1], stage, width_px, height_px, um_per_px
    )
    bx1, by1 = pixel_to_chip_um(
        det.bbox_px[2], det.bbox_px[3], stage, width_px, height_px, um_per_px
    )
    return FlakeRecord(
        material=det.material,
        layer_class=det.layer_class,
        confidence=float(det.confidence),
        polygon_um=poly_um,
        bbox_um=(bx0, by0, bx1, by1),
        area_um2=float(det.area_px) * um_per_px * um_per_px,
        polygon_px=tuple(det.polygon_px),
        bbox_px=tuple(det.bbox_px),  # type: ignore[arg-type]
        detector=detector,
        detector_version=detector_version,
        layer_count=det.layer_count,
        contrast_rgb=det.contrast_rgb,
        tile_index=tile_index,
    )


def touches_border(bbox_px: Rect, width_px: int, height_px: int, margin_px: float = 2.0) -> bool:
    x0, y0, x1, y1 = bbox_px
    return (
        x0 <= margin_px
        or y0 <= margin_px
        or x1 >= width_px - 1 - margin_px
        or y1 >= height_px - 1 - margin_px
    )


def _intersect(a: Rect, b: Rect) -> Rect | None:
    r = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return r if r[0] < r[2] and r[1] < r[3] else None


def _area(r: Rect) -> float:
    return max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])


def _inside(inner: Rect, outer: Rect) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


@dataclass
class DedupeIndex:
    """Stored flakes of one scan, searchable by chip position.

    ``tile_rects`` maps plan tile index -> field of view (x_min, y_min, x_max, y_max) in µm.
    """

    tile_rects: dict[int, Rect]
    iou_threshold: float = 0.3
    cell_um: float = 200.0

    def __post_init__(self) -> None:
        self._cells: dict[tuple[int, int], list[FlakeRecord]] = defaultdict(list)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _cell_range(self, r: Rect) -> Iterable[tuple[int, int]]:
        c = self.cell_um
        for i in range(int(r[0] // c), int(r[2] // c) + 1):
            for j in range(int(r[1] // c), int(r[3] // c) + 1):
                yield (i, j)

    def add(self, flake: FlakeRecord) -> None:
        for key in self._cell_range(flake.bbox_um):
            self._cells[key].append(flake)
        self._count += 1

    def extend(self, flakes: Iterable[FlakeRecord]) -> None:
        for f in flakes:
            self.add(f)

    def _shared_region(self, a: FlakeRecord, b: FlakeRecord) -> Rect | None:
        ra = self.tile_rects.get(a.tile_index) if a.tile_index is not None else None
        rb = self.tile_rects.get(b.tile_index) if b.tile_index is not None else None
        if ra is None or rb is None:
            return None
        return _intersect(ra, rb)

    def same_flake(self, a: FlakeRecord, b: FlakeRecord) -> bool:
        if a.material != b.material:
            return False
        if a.tile_index is not None and a.tile_index == b.tile_index:
            return False  # one image: the detector separated them
        ba, bb = a.bbox_um, b.bbox_um
        shared = self._shared_region(a, b)
        if shared is not None:
            ca, cb = _intersect(ba, shared), _intersect(bb, shared)
            if ca is None or cb is None:
                return False
            ba, bb = ca, cb
        inter = _intersect(ba, bb)
        if inter is None:
            return False
        iou = _area(inter) / max(_area(ba) + _area(bb) - _area(inter), 1e-12)
        if iou >= self.iou_threshold:
            return True
        ax, ay = a.centroid_um
        bx, by = b.centroid_um
        return _inside((ax, ay, ax, ay), bb) and _inside((bx, by, bx, by), ba)

    def find_match(self, candidate: FlakeRecord) -> FlakeRecord | None:
        seen: set[int] = set()
        for key in self._cell_range(candidate.bbox_um):
            for f in self._cells.get(key, ()):
                if id(f) in seen:
                    continue
                seen.add(id(f))
                if self.same_flake(candidate, f):
                    return f
        return None


def covered_by_other_tile(
    bbox_um: Rect, tile_index: int, tile_rects: dict[int, Rect], margin_um: float
) -> bool:
    """True if another tile's field of view, shrunk by ``margin_um``, contains ``bbox_um``."""
    for k, r in tile_rects.items():
        if k == tile_index:
            continue
        inner = (r[0] + margin_um, r[1] + margin_um, r[2] - margin_um, r[3] - margin_um)
        if _inside(bbox_um, inner):
            return True
    return False
