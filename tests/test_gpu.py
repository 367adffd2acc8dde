"""GPU checks (opt in with ``-m gpu``; skipped where torch or CUDA is missing).

torch is imported inside the tests (via the ``cuda`` fixture), so collecting this module in the
default, CPU-only suite costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flakefinder.domain import ImagingContext
from flakefinder.synth.chip import random_chip
from flakefinder.synth.render import render_view
from test_train_helpers import make_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("cuda")]


@pytest.fixture
def cuda() -> None:
    """Skip unless torch is installed and sees a CUDA device."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


def test_shipped_model_gives_the_same_flakes_on_gpu_and_cpu() -> None:
    from flakefinder.detect.maskrcnn import MaskRCNNDetector

    chip = random_chip(600.0, 600.0, ("graphene", "hBN"), seed=7)
    image = render_view(chip, 300.0, 300.0, 1024, 1024, 0.2, seed=0)
    ctx = ImagingContext(um_per_px=0.2, materials=("graphene", "hBN"))
    cpu = MaskRCNNDetector.from_folder(None, device="cpu").detect(image, ctx)
    gpu = MaskRCNNDetector.from_folder(None, device="cuda").detect(image, ctx)
    assert [(d.material, d.layer_class) for d in gpu] == [(d.material, d.layer_class) for d in cpu]
    for a, b in zip(gpu, cpu, strict=True):
        np.testing.assert_allclose(a.bbox_px, b.bbox_px, atol=2.0)
        assert abs(a.confidence - b.confidence) < 0.02


def test_training_runs_on_gpu(tmp_path: Path) -> None:
    from flakefinder.train.loop import train
    from flakefinder.train.recipe import Stage, TrainRecipe

    data = make_dataset(tmp_path / "data", 6)
    recipe = TrainRecipe(
        backbone="mobilenet_v3_fpn", weights="none", image_size=128, batch_size=2, num_workers=0,
        materials=("graphene", "WTe2"), stages=(Stage("all", "all", 0.005, 2),),
        iterations_per_epoch=5, train_fraction=0.67,
    )  # fmt: skip
    out = train(recipe, data, tmp_path / "model", device="cuda", progress=False, log=None)
    assert (out / "weights.pt").is_file() and (out / "config.json").is_file()
