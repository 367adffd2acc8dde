"""Compare the flakes a scan stored with the known flakes of a virtual chip (chip µm, numpy only).

Each non-bulk terrace of a synthetic flake is one ground-truth region (the detectors report
regions of uniform thickness). A stored flake finds a region when both have the same material
and their bounding boxes overlap with IoU >= ``iou_threshold``; each region and each stored
flake is used at most once (greedy, best IoU first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flakefinder.domain import LayerClass
from flakefinder.geometry import polygon_area, polygon_bbox

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.synth.chip import VirtualChip

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class TruthRegion:
    flake_id: int
    material: str
    n_layers: int
    layer_class: LayerClass
    bbox_um: BBox
    area_um2: float


@dataclass(frozen=True)
class FoundFlake:
    """What the comparison needs of a stored flake (``StoredFlake`` and ``FlakeRecord`` fit)."""

    material: str
    layer_class: LayerClass
    layer_count: int | None
    bbox_um: BBox


@dataclass(frozen=True)
class RecallRow:
    material: str
    layer_class: str
    n_truth: int
    found: int
    class_correct: int
    count_exact: int

    @property
    def recall(self) -> float:
        return self.found / self.n_truth if self.n_truth else float("nan")


@dataclass(frozen=True)
class ChipComparison:
    rows: tuple[RecallRow, ...]
    n_stored: int
    n_matched: int

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_stored if self.n_stored else float("nan")

    def to_markdown(self) -> str:
        lines = [
            "| material | class | known | found | recall | class right | exact layers |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.material} | {r.layer_class} | {r.n_truth} | {r.found} | {r.recall:.2f} "
                f"| {r.class_correct} | {r.count_exact} |"
            )
        lines.append(
            f"\nstored flakes: {self.n_stored}, matching a known flake: {self.n_matched} "
            f"(precision {self.precision:.2f})"
        )
        return "\n".join(lines)


def truth_regions(chip: VirtualChip, *, min_area_um2: float = 4.0) -> list[TruthRegion]:
    out = []
    for flake in chip.flakes:
        for terrace in flake.terraces:
            cls = LayerClass.from_layers(terrace.n_layers)
            area = polygon_area(terrace.polygon_um)
            if cls is None or area < min_area_um2:
                continue
            out.append(
                TruthRegion(
                    flake.flake_id,
                    flake.material,
                    terrace.n_layers,
                    cls,
                    polygon_bbox(terrace.polygon_um),
                    area,
                )
            )
    return out


def bbox_iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_with_chip(
    chip: VirtualChip,
    stored: Sequence[FoundFlake],
    *,
    iou_threshold: float = 0.3,
    min_area_um2: float = 4.0,
) -> ChipComparison:
    truth = truth_regions(chip, min_area_um2=min_area_um2)
    candidates = []
    for ti, t in enumerate(truth):
        for si, s in enumerate(stored):
            if s.material != t.material:
                continue
            iou = bbox_iou(t.bbox_um, s.bbox_um)
            if iou >= iou_threshold:
                candidates.append((iou, ti, si))
    candidates.sort(reverse=True)
    used_t: dict[int, int] = {}
    used_s: set[int] = set()
    for _, ti, si in candidates:
        if ti not in used_t and si not in used_s:
            used_t[ti] = si
            used_s.add(si)
    keys = sorted({(t.material, t.layer_class.value) for t in truth})
    rows = []
    for mat, cls in keys:
        idx = [i for i, t in enumerate(truth) if t.material == mat and t.layer_class.value == cls]
        found = [i for i in idx if i in used_t]
        rows.append(
            RecallRow(
                mat,
                cls,
                len(idx),
                len(found),
                sum(stored[used_t[i]].layer_class == truth[i].layer_class for i in found),
                sum(stored[used_t[i]].layer_count == truth[i].n_layers for i in found),
            )
        )
    return ChipComparison(tuple(rows), len(stored), len(used_s))


@dataclass(frozen=True)
class OutlineMatch:
    """The known terrace an outline overlaps best, and how well (polygon IoU)."""

    flake_id: int
    n_layers: int
    iou: float


def best_truth_outline(
    chip: VirtualChip, material: str, polygon_um: Sequence[tuple[float, float]]
) -> OutlineMatch | None:
    """The terrace of ``material`` (any thickness) whose outline overlaps ``polygon_um`` best;
    None when none overlaps. Terraces nested in a thicker one are compared by their own
    outline, so a thin rim's region counts only where the truth says so."""
    from flakefinder.geometry import polygon_iou

    if len(polygon_um) < 3:
        return None
    box = polygon_bbox(polygon_um)
    best: OutlineMatch | None = None
    for flake in chip.flakes_in_rect(*box):
        if flake.material != material:
            continue
        for terrace in flake.terraces:
            iou = polygon_iou(terrace.polygon_um, polygon_um)
            if iou > 0 and (best is None or iou > best.iou):
                best = OutlineMatch(flake.flake_id, terrace.n_layers, iou)
    return best
