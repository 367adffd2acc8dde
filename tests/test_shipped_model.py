"""The shipped default model folder loads, describes itself and finds a known flake.

The default suite runs one small (384²) CPU inference; the full 1024² views are ``slow``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from flakefinder.detect.maskrcnn import MaskRCNNDetector, default_model_folder  # noqa: E402
from flakefinder.domain import ImagingContext  # noqa: E402
from flakefinder.synth.chip import random_chip  # noqa: E402
from flakefinder.synth.instances import view_instances  # noqa: E402
from flakefinder.synth.render import render_view  # noqa: E402


def test_model_folder_is_complete_and_small() -> None:
    folder = default_model_folder()
    for name in ("weights.pt", "config.json", "class_map.json", "metrics.json", "model_card.md"):
        assert (folder / name).is_file(), name
    assert (folder / "weights.pt").stat().st_size <= 25 * 1024 * 1024
    config = json.loads((folder / "config.json").read_text())
    classes = json.loads((folder / "class_map.json").read_text())
    assert config["backbone"] == "mobilenet_v3_fpn" and len(config["class_names"]) == 12
    assert "graphene_mono" in json.dumps(classes)
    assert "training data sha256" in (folder / "model_card.md").read_text()


def _best_match(flake_id: int, size_px: int) -> tuple[float, str, str, str]:
    """Run the shipped model on a ``size_px``² view centred on one flake of a fixed virtual chip.

    Returns the best mask IoU with the true flake, the material and layer class of that
    detection, and the true layer class.
    """
    chip = random_chip(1000.0, 1000.0, ("hBN", "graphene"), seed=3)
    [flake] = [f for f in chip.flakes if f.flake_id == flake_id]
    x0, y0, x1, y1 = flake.bbox_um
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    image = render_view(chip, cx, cy, size_px, size_px, 0.2, seed=0)
    [truth] = [
        g for g in view_instances(chip, cx, cy, size_px, size_px, 0.2) if g.flake_id == flake_id
    ]
    ctx = ImagingContext(um_per_px=0.2, materials=("hBN", "graphene"))
    found = MaskRCNNDetector.from_folder(None, device="cpu").detect(image, ctx)
    assert found, "the shipped model found nothing"
    ious = [(d.mask & truth.mask).sum() / (d.mask | truth.mask).sum() for d in found]
    best = found[int(np.argmax(ious))]
    return float(max(ious)), best.material, str(best.layer_class), str(truth.layer_class)


def test_shipped_model_segments_a_known_flake_in_a_small_view() -> None:
    """Default-suite check on a 384² view (one cheap CPU inference): mask IoU 0.93 when written."""
    iou, material, found_class, true_class = _best_match(0, 384)
    assert iou >= 0.6
    assert material == "hBN" and found_class == true_class


@pytest.mark.slow
@pytest.mark.parametrize(("flake_id", "material"), [(0, "hBN"), (2, "graphene")])
def test_shipped_model_segments_known_flakes(flake_id: int, material: str) -> None:
    """Two thick flakes in full 1024² views: mask IoU 0.92 and 0.93 when this was written."""
    iou, found_material, found_class, true_class = _best_match(flake_id, 1024)
    assert iou >= 0.6
    assert found_material == material and found_class == true_class
