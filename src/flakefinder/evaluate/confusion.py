"""Layer-thickness confusion matrices of matched detections.

Predictions are paired with ground truth by mask IoU >= ``iou_threshold`` *ignoring the
category* (otherwise a class confusion could never be seen), one-to-one, highest score
first. Rows are the ground truth, columns the prediction:

* ``layer_class_confusion``: rows/columns ``mono``, ``few``, ``thick``;
* ``layer_count_confusion``: rows the GT ``n_layers``, columns the detector's ``layer_count``
  estimate (``?`` when the detector gave none).

With ``include_unmatched=True`` a ``missed`` column counts GT instances no prediction matched
and a ``spurious`` row counts predictions that matched no GT instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flakefinder.artifacts import atomic_open
from flakefinder.domain import LAYER_CLASSES
from flakefinder.evaluate.pairing import match_instances

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flakefinder.evaluate.cocodata import Instance

MISSED = "missed"
SPURIOUS = "spurious"
UNKNOWN = "?"


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """``counts[i, j]`` = number of instances with true label ``true_labels[i]`` predicted as
    ``pred_labels[j]``."""

    true_labels: tuple[str, ...]
    pred_labels: tuple[str, ...]
    counts: np.ndarray
    title: str = "confusion"

    def count(self, true: str, pred: str) -> int:
        return int(self.counts[self.true_labels.index(true), self.pred_labels.index(pred)])

    def accuracy(self) -> float:
        """Fraction of matched pairs on the diagonal (labels equal); NaN without pairs."""
        hits = total = 0
        for i, t in enumerate(self.true_labels):
            for j, p in enumerate(self.pred_labels):
                if t in (SPURIOUS,) or p in (MISSED,):
                    continue
                total += int(self.counts[i, j])
                hits += int(self.counts[i, j]) if t == p else 0
        return hits / total if total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "true_labels": list(self.true_labels),
            "pred_labels": list(self.pred_labels),
            "counts": self.counts.astype(int).tolist(),
        }

    def to_markdown(self) -> str:
        """A Markdown table (every row as wide as the header, even with no labels at all)."""
        head = "| " + " | ".join(["true \\ predicted", *self.pred_labels]) + " |"
        sep = "|---" * (len(self.pred_labels) + 1) + "|"
        rows = [
            "| " + " | ".join([t, *(str(int(v)) for v in self.counts[i])]) + " |"
            for i, t in enumerate(self.true_labels)
        ]
        table = "\n".join([head, sep, *rows]) + "\n"
        if not rows or not self.pred_labels:
            table += "\n(no matched flakes: nothing to compare)\n"
        return table

    def to_csv(self) -> str:
        lines = ["true," + ",".join(self.pred_labels)]
        lines += [
            t + "," + ",".join(str(int(v)) for v in self.counts[i])
            for i, t in enumerate(self.true_labels)
        ]
        return "\n".join(lines) + "\n"

    def save_png(self, path: str | Path) -> Path:
        """Heatmap with the counts written in the cells (matplotlib Agg)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        n_t, n_p = self.counts.shape
        fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n_p, 1.0 + 0.5 * n_t))
        try:
            if self.counts.size == 0:
                ax.text(0.5, 0.5, "no matched pairs", ha="center", va="center")
                ax.set_axis_off()
                with atomic_open(p, "wb") as f:
                    fig.savefig(f, format="png", dpi=100)
                return p
            ax.imshow(self.counts, cmap="Blues", aspect="auto")
            ax.set_xticks(range(n_p), labels=list(self.pred_labels))
            ax.set_yticks(range(n_t), labels=list(self.true_labels))
            ax.set_xlabel("predicted")
            ax.set_ylabel("ground truth")
            ax.set_title(self.title)
            top = self.counts.max() if self.counts.size else 0
            for i in range(n_t):
                for j in range(n_p):
                    v = int(self.counts[i, j])
                    colour = "white" if top and v > top / 2 else "black"
                    ax.text(j, i, str(v), ha="center", va="center", color=colour, fontsize=8)
            fig.tight_layout()
            with atomic_open(p, "wb") as f:
                fig.savefig(f, format="png", dpi=100)
        finally:
            plt.close(fig)
        return p


def _pairs(
    ground_truth: Mapping[int, Sequence[Instance]],
    predictions: Mapping[int, Sequence[Instance]],
    iou_threshold: float,
) -> tuple[list[tuple[Instance, Instance]], list[Instance], list[Instance]]:
    """(matched (gt, pred) pairs, unmatched gt, unmatched preds) over all images."""
    matched: list[tuple[Instance, Instance]] = []
    missed: list[Instance] = []
    spurious: list[Instance] = []
    for image_id in sorted(set(ground_truth) | set(predictions)):
        gts = list(ground_truth.get(image_id, ()))
        preds = list(predictions.get(image_id, ()))
        pairs = match_instances(preds, gts, iou_threshold=iou_threshold, class_agnostic=True)
        used_p = {i for i, _, _ in pairs}
        used_g = {j for _, j, _ in pairs}
        matched += [(gts[j], preds[i]) for i, j, _ in pairs]
        missed += [g for j, g in enumerate(gts) if j not in used_g]
        spurious += [p for i, p in enumerate(preds) if i not in used_p]
    return matched, missed, spurious


def _build(
    true_labels: list[str],
    pred_labels: list[str],
    matched: list[tuple[str, str]],
    missed: list[str],
    spurious: list[str],
    include_unmatched: bool,
    title: str,
) -> ConfusionMatrix:
    rows = list(true_labels) + ([SPURIOUS] if include_unmatched else [])
    cols = list(pred_labels) + ([MISSED] if include_unmatched else [])
    counts = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for t, p in matched:
        counts[rows.index(t), cols.index(p)] += 1
    if include_unmatched:
        for t in missed:
            counts[rows.index(t), cols.index(MISSED)] += 1
        for p in spurious:
            counts[rows.index(SPURIOUS), cols.index(p)] += 1
    return ConfusionMatrix(tuple(rows), tuple(cols), counts, title)


def layer_class_confusion(
    ground_truth: Mapping[int, Sequence[Instance]],
    predictions: Mapping[int, Sequence[Instance]],
    *,
    iou_threshold: float = 0.5,
    include_unmatched: bool = True,
) -> ConfusionMatrix:
    """GT thickness class vs predicted thickness class (materials pooled)."""
    matched, missed, spurious = _pairs(ground_truth, predictions, iou_threshold)
    labels = [lc.value for lc in LAYER_CLASSES]
    return _build(
        labels,
        labels,
        [(g.layer_class, p.layer_class) for g, p in matched],
        [g.layer_class for g in missed],
        [p.layer_class for p in spurious],
        include_unmatched,
        "thickness class",
    )


def layer_count_confusion(
    ground_truth: Mapping[int, Sequence[Instance]],
    predictions: Mapping[int, Sequence[Instance]],
    *,
    iou_threshold: float = 0.5,
    include_unmatched: bool = False,
) -> ConfusionMatrix:
    """GT ``n_layers`` vs predicted ``layer_count`` (labels: the numbers seen, sorted; ``?`` for
    missing values). Materials pooled."""
    matched, missed, spurious = _pairs(ground_truth, predictions, iou_threshold)

    def lab(n: int | None) -> str:
        return UNKNOWN if n is None else str(n)

    def order(labels: set[str]) -> list[str]:
        nums = sorted(int(v) for v in labels if v != UNKNOWN)
        return [str(n) for n in nums] + ([UNKNOWN] if UNKNOWN in labels else [])

    m = [(lab(g.n_layers), lab(p.n_layers)) for g, p in matched]
    mi = [lab(g.n_layers) for g in missed] if include_unmatched else []
    sp = [lab(p.n_layers) for p in spurious] if include_unmatched else []
    true_labels = order({t for t, _ in m} | set(mi))
    pred_labels = order({p for _, p in m} | set(sp))
    return _build(true_labels, pred_labels, m, mi, sp, include_unmatched, "layer count")
