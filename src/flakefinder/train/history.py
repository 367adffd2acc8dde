"""Training history: one row per epoch in ``history.csv`` and the loss curves in ``loss.png``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

HISTORY_FIELDS = (
    "epoch",
    "stage",
    "stage_name",
    "layers",
    "lr",
    "iteration",
    "train_loss",
    "test_loss",
    "train_loss_classifier",
    "train_loss_box_reg",
    "train_loss_mask",
    "train_loss_objectness",
    "train_loss_rpn_box_reg",
    "seconds",
)


def write_history(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write the epoch rows as CSV (columns :data:`HISTORY_FIELDS`), atomically."""
    from flakefinder.artifacts import atomic_open

    p = Path(path)
    with atomic_open(p, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(HISTORY_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return p


def read_history(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plot_history(path: str | Path, rows: Sequence[dict[str, Any]], *, title: str = "") -> Path:
    """Loss vs epoch as in the paper's Fig. 3d: test solid, train dotted, stage boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    epochs = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [float(r["train_loss"]) for r in rows], ":", color="C3", label="train")
    test = [
        (e, float(r["test_loss"]))
        for e, r in zip(epochs, rows, strict=True)
        if r.get("test_loss") != ""
    ]
    if test:
        ax.plot([e for e, _ in test], [v for _, v in test], "-", color="C3", label="test")
    for prev, cur in zip(rows, rows[1:], strict=False):
        if int(cur["stage"]) != int(prev["stage"]):
            ax.axvline(int(prev["epoch"]) + 0.5, color="0.6", lw=0.8, ls="--")
            ax.text(int(prev["epoch"]) + 0.6, 0.98, str(cur["stage_name"]), rotation=90,
                    va="top", fontsize=7, transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted loss")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    from flakefinder.artifacts import atomic_open

    try:
        with atomic_open(p, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
    return p
