"""``--detector union``: the terrace detector's flakes, plus network instances where they help.

Both detectors classify with the same per-terrace classifier (:mod:`.net_terrace`), so the
union only decides *which outline* to keep. The terrace detector's detections stand, except
where the rules below (on masks; IoU = intersection / union) say that the network saw better:

1. **Found by both**: a network instance whose best IoU with a terrace detection is >= 0.5
   adds nothing.
2. **Missed**: a network instance of which terrace detections cover less than 25 % is added.
3. **Cut apart**: a network instance containing two or more terrace detections (each at least
   80 % inside it) whose union matches it (IoU >= 0.5) and whose layer calls agree (same layer
   number; without numbers, contrasts within 0.03 in every channel) replaces them: one terrace
   that the segmentation split.
4. **Joined**: a terrace detection containing two or more network instances (each at least
   80 % inside it) whose union matches it (IoU >= 0.5) and whose layer calls differ is replaced
   by them: two terraces of different thickness that the segmentation merged.

Everything else keeps the terrace detection and drops the network instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.detect.net_terrace import _Delegates, classify_segments
from flakefinder.detect.segment_classify import rasterised_mask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.domain import Detection, ImagingContext

MATCH_IOU = 0.5
MISSED_COVER = 0.25
INSIDE = 0.8
SAME_CONTRAST = 0.03


def _box(d: Detection) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = d.bbox_px
    return (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))


class _Overlaps:
    """Areas and pairwise intersections of two lists of detections (box-pruned)."""

    def __init__(self, a: Sequence[Detection], b: Sequence[Detection], shape: tuple[int, int]):
        ma = [rasterised_mask(d, shape) for d in a]
        mb = [rasterised_mask(d, shape) for d in b]
        self.area_a = [int(np.count_nonzero(m)) for m in ma]
        self.area_b = [int(np.count_nonzero(m)) for m in mb]
        self.inter = np.zeros((len(a), len(b)), dtype=np.int64)
        self.masks_a, self.masks_b = ma, mb
        for i, da in enumerate(a):
            ax0, ay0, ax1, ay1 = _box(da)
            for j, db in enumerate(b):
                bx0, by0, bx1, by1 = _box(db)
                x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
                if x0 >= x1 or y0 >= y1:
                    continue
                self.inter[i, j] = int(np.count_nonzero(ma[i][y0:y1, x0:x1] & mb[j][y0:y1, x0:x1]))

    def iou(self, i: int, j: int) -> float:
        u = self.area_a[i] + self.area_b[j] - int(self.inter[i, j])
        return float(self.inter[i, j]) / u if u > 0 else 0.0


def _union_iou(one: np.ndarray, group: Sequence[np.ndarray]) -> float:
    joined = np.logical_or.reduce(list(group))
    u = int(np.count_nonzero(one | joined))
    return int(np.count_nonzero(one & joined)) / u if u else 0.0


def same_call(a: Detection, b: Detection) -> bool:
    """Whether two detections name the same thickness (see rule 3 of the module docstring)."""
    if a.layer_count is not None and b.layer_count is not None:
        return a.layer_count == b.layer_count
    if a.layer_count is None and b.layer_count is None and a.contrast_rgb and b.contrast_rgb:
        diff = np.abs(np.subtract(a.contrast_rgb, b.contrast_rgb))
        return bool(np.all(diff <= SAME_CONTRAST))
    return False


def _all_same(dets: Sequence[Detection]) -> bool:
    return all(same_call(dets[0], d) for d in dets[1:])


def merge_union(
    terrace: Sequence[Detection], network: Sequence[Detection], shape: tuple[int, int]
) -> list[Detection]:
    """The union of one image's detections by the rules of the module docstring.

    Returns the kept terrace detections (in their order), then the network's instances that
    were added or that replaced terrace detections (in theirs).
    """
    ov = _Overlaps(terrace, network, shape)
    dropped_t: set[int] = set()
    used_n: set[int] = set()
    # 4. joined: a terrace detection holding network instances of different thickness
    for i in range(len(terrace)):
        inside = [j for j in range(len(network))
                  if ov.area_b[j] and ov.inter[i, j] >= INSIDE * ov.area_b[j]]  # fmt: skip
        if len(inside) < 2 or _all_same([network[j] for j in inside]):
            continue
        if _union_iou(ov.masks_a[i], [ov.masks_b[j] for j in inside]) >= MATCH_IOU:
            dropped_t.add(i)
            used_n.update(inside)
    # 3. cut apart: a network instance holding terrace pieces of one thickness
    for j in range(len(network)):
        if j in used_n:
            continue
        inside = [i for i in range(len(terrace)) if i not in dropped_t and ov.area_a[i]
                  and ov.inter[i, j] >= INSIDE * ov.area_a[i]]  # fmt: skip
        if len(inside) < 2 or not _all_same([terrace[i] for i in inside]):
            continue
        if _union_iou(ov.masks_b[j], [ov.masks_a[i] for i in inside]) >= MATCH_IOU:
            dropped_t.update(inside)
            used_n.add(j)
    # 1./2. found by both, or missed by the terrace detector
    for j in range(len(network)):
        if j in used_n or not ov.area_b[j]:
            continue
        best = max((ov.iou(i, j) for i in range(len(terrace))), default=0.0)
        if best >= MATCH_IOU:
            continue
        covered = sum(int(ov.inter[i, j]) for i in range(len(terrace)) if i not in dropped_t)
        if covered < MISSED_COVER * ov.area_b[j]:
            used_n.add(j)
    kept = [d for i, d in enumerate(terrace) if i not in dropped_t]
    return kept + [d for j, d in enumerate(network) if j in used_n]


@dataclass
class TerraceUnionDetector(_Delegates):
    """The terrace detector's flakes with the network's where they help (``--detector union``,
    with or without a setup profile); ``Detector``, ``BatchDetector``, ``SelfCalibrating``."""

    batch_size: int = 1
    name: str = "union"
    version: str = field(init=False)

    def __post_init__(self) -> None:
        """Version: the terrace detector's and the segmenter's."""
        self.version = f"terrace:{self.terrace.version}|{self.segmenter.name}:{self.segmenter.version}"

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext, **_: Any
    ) -> list[list[Detection]]:
        """Both detectors on ``images``, merged per image by :func:`merge_union`."""
        k = self.terrace.settings.k_sigma
        out: list[list[Detection]] = []
        for image, (tm, clf, segs) in zip(
            images, self._analysed(images, context, self.batch_size), strict=True
        ):
            if tm is None or clf is None:
                out.append([])
                continue
            own = self.terrace.detections(tm, clf, context)
            net = classify_segments(tm, clf, segs, k)
            out.append(merge_union(own, net, (int(image.shape[0]), int(image.shape[1]))))
        return out
