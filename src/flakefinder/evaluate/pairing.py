"""One-to-one pairing of predicted and ground-truth :class:`Instance` s by mask IoU.

Adapter over :func:`flakefinder.evaluate.matching.match_masks` (greedy, highest score first).
Class-aware pairing runs the matcher once per category: with greedy matching that is the same
as one pass in which a prediction may only take ground truth of its own category.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flakefinder.evaluate.matching import match_masks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.evaluate.cocodata import Instance


def match_instances(
    preds: Sequence[Instance],
    gts: Sequence[Instance],
    *,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
) -> list[tuple[int, int, float]]:
    """Pairs (prediction index, ground-truth index, IoU) with IoU >= ``iou_threshold`` and,
    unless ``class_agnostic``, equal categories."""
    if not preds or not gts:
        return []
    if class_agnostic:
        groups = {"": (list(range(len(preds))), list(range(len(gts))))}
    else:
        groups = {}
        for i, p in enumerate(preds):
            groups.setdefault(p.category, ([], []))[0].append(i)
        for j, g in enumerate(gts):
            groups.setdefault(g.category, ([], []))[1].append(j)
    pairs: list[tuple[int, int, float]] = []
    for pi, gi in groups.values():
        if not pi or not gi:
            continue
        r = match_masks(
            [preds[i].mask for i in pi],
            [gts[j].mask for j in gi],
            scores=[preds[i].score for i in pi],
            iou_threshold=iou_threshold,
        )
        pairs += [(pi[a], gi[b], iou) for a, b, iou in r.matches]
    return sorted(pairs)
