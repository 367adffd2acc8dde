"""flakefinder.synth: virtual chips with 2D flakes, physically based rendering, ground truth, COCO.

numpy / scipy / opencv only (never torch or SQLAlchemy)::

    from flakefinder.synth import random_chip, render_view, view_instances
    chip = random_chip(2000, 2000, ["graphene"], seed=0)
    image = render_view(chip, 1000, 1000, 1024, 1024, 0.2, seed=0)       # (1024, 1024, 3) uint8
    truth = view_instances(chip, 1000, 1000, 1024, 1024, 0.2)           # list[GroundTruthInstance]
"""

from __future__ import annotations

from flakefinder.synth.chip import (
    BULK_MIN_LAYERS,
    Debris,
    FlakeDistribution,
    SynthFlake,
    Terrace,
    VirtualChip,
    load_chip,
    random_chip,
    save_chip,
)
from flakefinder.synth.coco import export_coco
from flakefinder.synth.instances import GroundTruthInstance, ViewGeometry, view_instances
from flakefinder.synth.render import RenderSettings, render_linear, render_view

__all__ = [
    "BULK_MIN_LAYERS",
    "Debris",
    "FlakeDistribution",
    "GroundTruthInstance",
    "RenderSettings",
    "SynthFlake",
    "Terrace",
    "ViewGeometry",
    "VirtualChip",
    "export_coco",
    "load_chip",
    "random_chip",
    "render_linear",
    "render_view",
    "save_chip",
    "view_instances",
]
