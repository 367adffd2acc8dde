"""Layer-class and layer-count confusion matrices: exact counts."""

from __future__ import annotations

import numpy as np

from flakefinder.evaluate.cocodata import Instance
from flakefinder.evaluate.confusion import layer_class_confusion, layer_count_confusion

H = W = 40


def square(x: int, y: int, size: int = 10) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y : y + size, x : x + size] = True
    return m


def inst(cat: str, mask: np.ndarray, n: int | None, score: float = 1.0) -> Instance:
    return Instance(image_id=0, category=cat, mask=mask, score=score, n_layers=n)


GT = {
    1: [
        inst("graphene_mono", square(0, 0), 1),
        inst("graphene_few", square(20, 0), 3),
        inst("graphene_thick", square(0, 20), 15),
    ],
    2: [inst("graphene_few", square(0, 0), 3)],
}
PRED = {
    1: [
        inst("graphene_mono", square(0, 0), 1),  # right
        inst("graphene_mono", square(20, 0), 2),  # few predicted as mono, 3 -> 2 layers
        # thick flake missed
        inst("graphene_few", square(25, 25), 4),  # spurious
    ],
    2: [inst("graphene_few", square(1, 0), None)],  # right class, no layer estimate
}


def test_layer_class_confusion() -> None:
    cm = layer_class_confusion(GT, PRED)
    assert cm.true_labels == ("mono", "few", "thick", "spurious")
    assert cm.pred_labels == ("mono", "few", "thick", "missed")
    assert cm.counts.tolist() == [
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 1],
        [0, 1, 0, 0],
    ]
    assert cm.count("few", "mono") == 1
    assert cm.accuracy() == 2 / 3
    assert "| few | 1 | 1 | 0 | 0 |" in cm.to_markdown()
    assert cm.to_csv().splitlines()[0] == "true,mono,few,thick,missed"
    plain = layer_class_confusion(GT, PRED, include_unmatched=False)
    assert plain.counts.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_layer_count_confusion() -> None:
    cm = layer_count_confusion(GT, PRED)
    assert cm.true_labels == ("1", "3")
    assert cm.pred_labels == ("1", "2", "?")
    assert cm.counts.tolist() == [[1, 0, 0], [0, 1, 1]]
    full = layer_count_confusion(GT, PRED, include_unmatched=True)
    assert full.true_labels == ("1", "3", "15", "spurious")
    assert full.pred_labels == ("1", "2", "4", "?", "missed")
    assert full.count("15", "missed") == 1 and full.count("spurious", "4") == 1


def test_png(tmp_path) -> None:
    p = layer_class_confusion(GT, PRED).save_png(tmp_path / "cm.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
