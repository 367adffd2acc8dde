"""Which benchmark pictures a self-trained model has seen (``bench_real.py --model DIR``).

A self-trained model folder (``flakefinder train --recipe cpu_selftrain``) lists in
``selftrain.json`` the pictures of each real set it was trained on (pseudo-labelled) and the
ones held out. The benchmark skips nothing; it says, per row, how many of the pictures it
scored were training pictures, and adds a ``none (held out)`` row that scores mode ``none`` on
the held-out pictures alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flakefinder.errors import ModelError
from flakefinder.evaluate.real import split_indices
from flakefinder.evaluate.real_score import ModeResult, TerraceScore, score_terraces

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.evaluate.real_types import RealSet

LEDGER = "selftrain.json"


@dataclass(frozen=True)
class TrainingPictures:
    """Per set: the file names a model was trained on and the held-out ones."""

    trained: dict[str, frozenset[str]]
    held_out: dict[str, frozenset[str]]


def training_pictures(model: Path) -> TrainingPictures | None:
    """What ``model/selftrain.json`` lists (None when the folder has no such file).

    Raises
    ------
    ModelError
        When the file is there but unreadable or not a self-training ledger.
    """
    from flakefinder.artifacts import load_json_file

    path = model / LEDGER
    if not path.is_file():
        return None
    data: Any = load_json_file(path, error=ModelError)
    sets = data.get("data", {}).get("sets") if isinstance(data, dict) else None
    if not isinstance(sets, dict):
        raise ModelError(f"{path} lists no sets (data.sets); not a self-training ledger")

    def names(kind: str) -> dict[str, frozenset[str]]:
        return {str(k): frozenset(str(n) for n in v.get(kind, []))
                for k, v in sets.items() if isinstance(v, dict)}  # fmt: skip

    return TrainingPictures(names("trained"), names("held_out"))


def scored_indices(row: ModeResult, n: int, splits: int, seed: int) -> list[int]:
    """The pictures a row scored (every split's test pictures for ``labels2``)."""
    if row.kind == "n/a":
        return []
    if row.mode == "labels2":
        return sorted({i for _, test in split_indices(n, 2, splits, seed) for i in test})
    return list(row.image_indices)


def annotate_rows(
    rs: RealSet, rows: list[ModeResult], seen: TrainingPictures, *, splits: int, seed: int
) -> list[ModeResult]:
    """``rows`` with a note on training pictures, and a ``none (held out)`` row after ``none``."""
    from dataclasses import replace

    trained = seen.trained.get(rs.name, frozenset())
    out: list[ModeResult] = []
    for row in rows:
        idx = scored_indices(row, len(rs.images), splits, seed)
        k = sum(1 for i in idx if rs.images[i].name in trained)
        note = f"{k}/{len(idx)} scored pictures were self-training pictures"
        out.append(replace(row, notes=(*row.notes, note)) if idx else row)
        if row.mode == "none" and row.kind == "accuracy" and rs.truth is not None:
            out.append(_held_out_row(rs, row, trained))
    return out


def _held_out_row(rs: RealSet, row: ModeResult, trained: frozenset[str]) -> ModeResult:
    assert rs.truth is not None
    keep = [(i, d) for i, d in zip(row.image_indices, row.detections, strict=True)
            if rs.images[i].name not in trained]  # fmt: skip
    score = TerraceScore()
    for i, dets in keep:
        score.add(score_terraces(rs.truth[i], dets))
    notes = (f"mode none scored on the {len(keep)} pictures the model never trained on",)
    return ModeResult(
        rs.name, "none (held out)", row.kind if keep else "n/a", len(keep),
        (score,) if keep else (), (), (), notes, exhaustive=row.exhaustive,
        layers_comparable=row.layers_comparable, image_indices=tuple(i for i, _ in keep),
        detections=tuple(d for _, d in keep),
    )  # fmt: skip
