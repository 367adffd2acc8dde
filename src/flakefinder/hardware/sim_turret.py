"""The simulated microscope's objective turret: one virtual chip seen at every magnification."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from flakefinder.hardware.objectives import Objective, find_objective

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class _Optics(Protocol):
    """What the turret changes on the camera (``SimCamera.set_optics``)."""

    def set_optics(
        self, *, um_per_px: float, numerical_aperture: float | None, focus_offset_um: float
    ) -> None: ...


class SimTurret:
    """Objective turret of the simulated microscope: selecting an objective gives the camera
    that objective's pixel size and NA (the same virtual chip, rendered at each magnification)
    and shifts the true focal plane by ``focus_offset_um`` plus ``parfocal_error_um[name]``
    (how far the stated offset is from the truth, which autofocus has to find)."""

    def __init__(
        self,
        camera: _Optics,
        objectives: Sequence[Objective],
        current: str,
        *,
        parfocal_error_um: Mapping[str, float] | None = None,
    ) -> None:
        if not objectives:
            raise ValueError("a turret needs at least one objective")
        self.camera = camera
        self._objectives = tuple(objectives)
        self.parfocal_error_um = dict(parfocal_error_um or {})
        self._current = find_objective(self._objectives, current)
        self.switches = 0
        self._apply(self._current)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return self._objectives

    def current(self) -> Objective:
        return self._current

    def select(self, name: str) -> None:
        target = find_objective(self._objectives, name)
        self._apply(target)
        self._current = target
        self.switches += 1

    def _apply(self, obj: Objective) -> None:
        error = float(self.parfocal_error_um.get(obj.name, 0.0))
        self.camera.set_optics(
            um_per_px=obj.pixel_size(),
            numerical_aperture=obj.numerical_aperture,
            focus_offset_um=obj.focus_offset_um + error,
        )
