"""Match predicted instance masks to ground-truth masks by mask IoU (numpy only).

Greedy matching in the COCO style: predictions are taken in order of decreasing score, each
is matched to the still-unmatched ground-truth instance with the highest IoU, if that IoU is at
least ``iou_threshold``. IoUs are computed on bounding-box crops, so sparse masks on large images
are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :func:`match_masks`; indices refer to the input sequences."""

    matches: tuple[tuple[int, int, float], ...]  # (prediction, ground truth, IoU)
    unmatched_predictions: tuple[int, ...]
    unmatched_ground_truth: tuple[int, ...]

    @property
    def true_positives(self) -> int:
        return len(self.matches)

    @property
    def false_positives(self) -> int:
        return len(self.unmatched_predictions)

    @property
    def false_negatives(self) -> int:
        return len(self.unmatched_ground_truth)

    def gt_for_prediction(self) -> dict[int, int]:
        return {p: g for p, g, _ in self.matches}

    def prediction_for_gt(self) -> dict[int, int]:
        return {g: p for p, g, _ in self.matches}


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def mask_iou_matrix(
    predictions: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray]
) -> np.ndarray:
    """IoU of every prediction mask with every ground-truth mask, shape (P, G).

    All masks are boolean arrays of one common (H, W) shape; empty masks have IoU 0.
    """
    pm = [np.asarray(m, dtype=bool) for m in predictions]
    gm = [np.asarray(m, dtype=bool) for m in ground_truth]
    shapes = {m.shape for m in pm + gm}
    if len(shapes) > 1:
        raise ValueError(f"all masks must have one shape, got {sorted(shapes)}")
    pb, gb = [_bbox(m) for m in pm], [_bbox(m) for m in gm]
    pa = [int(m.sum()) for m in pm]
    ga = [int(m.sum()) for m in gm]
    iou = np.zeros((len(pm), len(gm)), dtype=np.float64)
    for i, (p, bp) in enumerate(zip(pm, pb, strict=True)):
        if bp is None:
            continue
        for j, (g, bg) in enumerate(zip(gm, gb, strict=True)):
            if bg is None:
                continue
            r0, r1 = max(bp[0], bg[0]), min(bp[1], bg[1])
            c0, c1 = max(bp[2], bg[2]), min(bp[3], bg[3])
            if r0 >= r1 or c0 >= c1:
                continue
            inter = int(np.count_nonzero(p[r0:r1, c0:c1] & g[r0:r1, c0:c1]))
            if inter:
                iou[i, j] = inter / (pa[i] + ga[j] - inter)
    return iou


def match_masks(
    predictions: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    *,
    scores: Sequence[float] | None = None,
    iou_threshold: float = 0.5,
) -> MatchResult:
    """Greedy one-to-one matching of predictions to ground truth by mask IoU >= ``iou_threshold``."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if scores is not None and len(scores) != len(predictions):
        raise ValueError(f"{len(scores)} scores for {len(predictions)} predictions")
    iou = mask_iou_matrix(predictions, ground_truth)
    order = (
        list(range(len(predictions)))
        if scores is None
        else sorted(range(len(predictions)), key=lambda i: (-float(scores[i]), i))
    )
    taken = np.zeros(len(ground_truth), dtype=bool)
    matches: list[tuple[int, int, float]] = []
    unmatched: list[int] = []
    for i in order:
        cand = np.where(taken, -1.0, iou[i]) if len(ground_truth) else np.zeros(0)
        j = int(np.argmax(cand)) if cand.size else -1
        if j >= 0 and cand[j] >= iou_threshold:
            taken[j] = True
            matches.append((i, j, float(cand[j])))
        else:
            unmatched.append(i)
    return MatchResult(
        matches=tuple(matches),
        unmatched_predictions=tuple(sorted(unmatched)),
        unmatched_ground_truth=tuple(int(j) for j in np.flatnonzero(~taken)),
    )
