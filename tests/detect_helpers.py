"""Synthetic test scenes shared by tests/test_detect_*.py (small chips rendered by flakefinder.synth)."""

from __future__ import annotations

import numpy as np

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.domain import ImagingContext
from flakefinder.synth.chip import Debris, SynthFlake, Terrace, VirtualChip
from flakefinder.synth.instances import view_instances
from flakefinder.synth.render import RenderSettings, render_view

UM_PER_PX = 0.2
VIEW = (35.0, 35.0, 350, 350, UM_PER_PX)  # centre x, y (µm), width, height (px), µm/px


def hexagon(cx: float, cy: float, r: float) -> tuple[tuple[float, float], ...]:
    a = np.linspace(0.0, 2.0 * np.pi, 7)[:-1] + 0.3
    return tuple((float(cx + r * np.cos(t)), float(cy + r * np.sin(t))) for t in a)


def chip(*, flakes: bool = True, debris: bool = True, terraces: bool = False) -> VirtualChip:
    """70 x 70 µm chip: graphene 1L, 3L, 20L (+ a 2L flake with a 6L terrace), residue, particles."""
    fl = []
    if flakes:
        fl = [
            SynthFlake(0, "graphene", (Terrace(hexagon(15, 15, 8), 1),)),
            SynthFlake(1, "graphene", (Terrace(hexagon(45, 20, 9), 3),)),
            SynthFlake(2, "graphene", (Terrace(hexagon(25, 45, 10), 20),)),
        ]
        if terraces:
            fl.append(
                SynthFlake(
                    3, "graphene", (Terrace(hexagon(55, 54, 11), 2), Terrace(hexagon(57, 55, 5), 6))
                )
            )
    db = []
    if debris:
        db = [
            Debris("residue", hexagon(58, 32, 9), 0.05),
            Debris("residue", hexagon(10, 62, 7), 0.03),
            Debris("particle", hexagon(8, 50, 1.5), 0.3),
            Debris("particle", hexagon(35, 5, 1.0), -0.2),
            Debris("particle", hexagon(62, 8, 2.0), 0.15),
        ]
    return VirtualChip(70.0, 70.0, 90.0, ("graphene",), tuple(fl), tuple(db), 0)


def context(materials: tuple[str, ...] = ("graphene",)) -> ImagingContext:
    return ImagingContext(UM_PER_PX, 90.0, materials)


def render(c: VirtualChip, seed: int = 1, **settings: object) -> np.ndarray:
    return render_view(c, *VIEW, settings=RenderSettings(**settings), seed=seed)  # type: ignore[arg-type]


def instances(c: VirtualChip) -> list:
    return view_instances(c, *VIEW)


def setup_profile(name: str = "scope") -> SetupProfile:
    """A small valid setup profile (one graphene layer colour)."""
    cov = ((1e-4, 0.0, 0.0), (0.0, 1e-4, 0.0), (0.0, 0.0, 1e-4))
    table = MaterialTable("graphene", (LayerColour(1, (-0.05, -0.06, -0.04), cov),))
    return SetupProfile(name=name, um_per_px=0.2, oxide_nm=90.0, materials=(table,))
