"""Rendered micrographs with known flakes for the Setup page and region-growing tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from flakefinder.synth import (
    RenderSettings,
    SynthFlake,
    Terrace,
    VirtualChip,
    render_view,
    view_instances,
)

UM_PER_PX = 0.4
LAYERS = (1, 2, 3, 1, 2, 3, 60, 1)  # eight 24 µm graphene squares on 90 nm SiO2
VIEWS = ((60.0, 40.0), (100.0, 50.0))
SETTINGS = RenderSettings(gamma=2.2, white_balance_rgb=(1.3, 1.0, 0.7))


def _square(cx: float, cy: float, r: float) -> tuple[tuple[float, float], ...]:
    return ((cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r))


CHIP = VirtualChip(
    180,
    100,
    90.0,
    ("graphene",),
    tuple(
        SynthFlake(i, "graphene", (Terrace(_square(20 + (i % 4) * 40, 20 + (i // 4) * 40, 12), n),))
        for i, n in enumerate(LAYERS)
    ),
    (),
    0,
)


def rendered() -> tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]]:
    """Two 240 × 180 views and, per visible flake, (image index, true mask, layer number)."""
    images, truth = [], []
    for k, (x, y) in enumerate(VIEWS):
        images.append(render_view(CHIP, x, y, 240, 180, UM_PER_PX, settings=SETTINGS, seed=k))
        truth += [(k, g.mask, g.n_layers) for g in view_instances(CHIP, x, y, 240, 180, UM_PER_PX)]
    return images, truth


def centre(mask: np.ndarray) -> tuple[int, int]:
    """A pixel well inside ``mask`` (x, y): the median of its pixels."""
    ys, xs = np.nonzero(mask)
    return int(np.median(xs)), int(np.median(ys))


def png(image: np.ndarray) -> bytes:
    """``image`` as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
