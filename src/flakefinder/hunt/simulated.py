"""The simulated microscope of a scan, stored with the scan so later passes (a revisit in
another process) see exactly the same virtual chip through the same optics.

:class:`SimSpec` is kept in the scan's ``settings["sim"]``; :func:`build_chip` and
:func:`build_microscope` rebuild the chip and the microscope from it. The chip's fingerprint
(sha256 of its JSON) tells a revisit whether the chip on the stage is the scanned one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flakefinder.artifacts import sha256_json
from flakefinder.errors import FlakefinderError
from flakefinder.hardware.objectives import Objective

if TYPE_CHECKING:
    from flakefinder.hardware.protocols import Microscope
    from flakefinder.synth.chip import VirtualChip


class WrongChipError(FlakefinderError):
    """A pass asked for on a scan of another chip than the one under the microscope."""


def chip_fingerprint(chip: VirtualChip) -> str:
    return sha256_json(chip.to_dict())


@dataclass(frozen=True)
class SimSpec:
    """Everything that makes a simulated scan's images: the chip (a random chip's parameters
    or a chip file), the camera, the objectives and the focal plane."""

    seed: int
    frame_px: int
    chip_size_mm: float | None = None
    materials: tuple[str, ...] = ("graphene",)
    oxide_nm: float = 90.0
    chip_file: str | None = None
    um_per_px: float = 0.2  # without objectives
    objectives: tuple[Objective, ...] = ()
    objective: str | None = None
    focus_plane_um: tuple[float, float, float] = (0.0, 0.0, 0.0)
    parfocal_error_um: dict[str, float] = field(default_factory=dict)
    chip_edge: bool = False
    chip_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "frame_px": self.frame_px,
            "chip_size_mm": self.chip_size_mm,
            "materials": list(self.materials),
            "oxide_nm": self.oxide_nm,
            "chip_file": self.chip_file,
            "um_per_px": self.um_per_px,
            "objectives": [o.to_dict() for o in self.objectives],
            "objective": self.objective,
            "focus_plane_um": list(self.focus_plane_um),
            "parfocal_error_um": dict(self.parfocal_error_um),
            "chip_edge": self.chip_edge,
            "chip_sha256": self.chip_sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimSpec:
        try:
            objectives = tuple(Objective(**o) for o in d.get("objectives") or ())
            z0, dx, dy = (float(v) for v in d.get("focus_plane_um") or (0.0, 0.0, 0.0))
            return cls(
                seed=int(d["seed"]),
                frame_px=int(d["frame_px"]),
                chip_size_mm=None if d.get("chip_size_mm") is None else float(d["chip_size_mm"]),
                materials=tuple(str(m) for m in d.get("materials") or ("graphene",)),
                oxide_nm=float(d.get("oxide_nm", 90.0)),
                chip_file=d.get("chip_file"),
                um_per_px=float(d.get("um_per_px", 0.2)),
                objectives=objectives,
                objective=d.get("objective"),
                focus_plane_um=(z0, dx, dy),
                parfocal_error_um={
                    str(k): float(v) for k, v in (d.get("parfocal_error_um") or {}).items()
                },
                chip_edge=bool(d.get("chip_edge", False)),
                chip_sha256=str(d.get("chip_sha256", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FlakefinderError(
                f"the scan's simulated microscope settings are unreadable: {exc}"
            ) from None


def build_chip(spec: SimSpec) -> VirtualChip:
    """The virtual chip of ``spec`` (its chip file, else the random chip of its parameters)."""
    from flakefinder.synth.chip import load_chip, random_chip

    if spec.chip_file is not None:
        return load_chip(spec.chip_file)
    if spec.chip_size_mm is None:
        raise FlakefinderError("the scan's simulated chip has neither a chip file nor a size")
    side = spec.chip_size_mm * 1000.0
    return random_chip(side, side, spec.materials, oxide_thickness_nm=spec.oxide_nm, seed=spec.seed)


def build_microscope(spec: SimSpec, chip: VirtualChip) -> Microscope:
    from flakefinder.hardware.sim import simulated_microscope

    return simulated_microscope(
        chip,
        shape_px=(spec.frame_px, spec.frame_px),
        um_per_px=spec.um_per_px,
        seed=spec.seed,
        focus_plane_um=spec.focus_plane_um,
        objectives=spec.objectives or None,
        objective=spec.objective,
        parfocal_error_um=spec.parfocal_error_um,
        chip_edge=spec.chip_edge,
    )
