"""Two-process DDP training through torchrun on the CPU (gloo); opt in with ``-m slow``."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_train_helpers import make_dataset

TINY_RECIPE = """
name = "tiny_ddp"
backbone = "mobilenet_v3_fpn"
weights = "none"
image_size = 128
batch_size = 2
iterations_per_epoch = 4
num_workers = 0
max_test_images = 4
rois_per_image = 32
rpn_post_nms_train = 100
materials = ["graphene", "WTe2"]
frozen_batchnorm = false

[[stages]]
name = "all"
layers = "all"
lr = 5e-3
epochs = 2
"""


@pytest.mark.slow
def test_torchrun_two_processes_write_one_model(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file() and shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")
    data = make_dataset(tmp_path / "data", 8)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    out = tmp_path / "model"
    cmd = [
        str(torchrun if torchrun.is_file() else "torchrun"), "--nproc-per-node", "2",
        "-m", "flakefinder.cli.main", "train", str(data), "--out", str(out),
        "--recipe", str(recipe), "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 process(es)" in r.stdout
    assert (out / "weights.pt").is_file() and (out / "config.json").is_file()
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # one row per epoch, written once (rank 0 only)
