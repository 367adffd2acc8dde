"""Assemble a heterostructure design from stored flakes, with every number checked first.

The web API and anything else that draws a design go through :func:`assemble`: it looks the
layers' flakes up, checks the placements (finite, inside :data:`flakefinder.bounds.POSITION_UM`
and :data:`flakefinder.bounds.ANGLE_DEG`) and the stored outlines, and only then hands the
geometry to :mod:`flakefinder.design.geometry` (whose polygon library aborts the whole process
on non-finite or astronomically large coordinates). A design that cannot be drawn raises
:class:`~flakefinder.errors.DesignError` with the layer and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from flakefinder import bounds
from flakefinder.db.records import DesignLayer, StoredFlake
from flakefinder.design.geometry import StackLayer, StackSummary, summarize, to_gds
from flakefinder.errors import DesignError, UnknownFlakeError

MAX_OUTLINE_VERTICES = 20_000
MAX_LAYERS = 64
# placed vertices stay well inside GDSII's 32-bit nanometre grid (±2.1e6 µm)
PLACED_LIMIT_UM = 1e6


class FlakeSource(Protocol):
    """Where flakes come from (``flakefinder.db.Database`` is one)."""

    def get_flake(self, flake_id: int) -> StoredFlake | None:
        """The flake with this id, or ``None``."""
        ...


@dataclass(frozen=True)
class Assembly:
    """A design's flakes (bottom first) and their placed layers."""

    flakes: tuple[StoredFlake, ...]
    stack: tuple[StackLayer, ...]


def check_layer(layer: DesignLayer, position: int) -> None:
    """Raise :class:`DesignError` unless the placement of ``layer`` is finite and in range."""
    where = f"layer {position + 1} (flake {layer.flake_id})"
    try:
        bounds.POSITION_UM.check(layer.x_um, f"{where}: x_um")
        bounds.POSITION_UM.check(layer.y_um, f"{where}: y_um")
        bounds.ANGLE_DEG.check(layer.rotation_deg, f"{where}: rotation_deg")
    except ValueError as exc:
        raise DesignError(str(exc)) from None


def check_outline(outline: Sequence[tuple[float, float]], flake_id: int) -> None:
    """Raise :class:`DesignError` unless a stored outline can be drawn."""
    if not 3 <= len(outline) <= MAX_OUTLINE_VERTICES:
        raise DesignError(
            f"flake {flake_id}: its outline has {len(outline)} vertices"
            f" (3..{MAX_OUTLINE_VERTICES} can be drawn)"
        )
    for x, y in outline:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DesignError(f"flake {flake_id}: its outline holds a non-finite coordinate")
        if abs(x) > bounds.POSITION_UM.hi or abs(y) > bounds.POSITION_UM.hi:
            raise DesignError(
                f"flake {flake_id}: its outline lies outside {bounds.POSITION_UM.describe()}"
            )


def check_placed(stack: Sequence[StackLayer]) -> None:
    """Raise :class:`DesignError` unless every placed vertex is finite and in range."""
    for k, layer in enumerate(stack):
        pts = layer.placed()
        if not bool((abs(pts) <= PLACED_LIMIT_UM).all()):  # also False for NaN
            raise DesignError(
                f"layer {k + 1} (flake {layer.flake_id}) is placed outside ±{PLACED_LIMIT_UM:g} µm"
            )


def assemble(source: FlakeSource, layers: Sequence[DesignLayer]) -> Assembly:
    """Look up, check and place ``layers`` (sorted by ``order``; bottom first).

    Raises
    ------
    UnknownFlakeError
        A layer names a flake that ``source`` does not have.
    DesignError
        A placement or a stored outline cannot be drawn.
    """
    if len(layers) > MAX_LAYERS:
        raise DesignError(f"a design has at most {MAX_LAYERS} layers, got {len(layers)}")
    ordered = sorted(layers, key=lambda item: item.order)
    flakes: list[StoredFlake] = []
    stack: list[StackLayer] = []
    for position, lay in enumerate(ordered):
        check_layer(lay, position)
        flake = source.get_flake(lay.flake_id)
        if flake is None:
            raise UnknownFlakeError(f"no flake with id {lay.flake_id}")
        check_outline(flake.polygon_um, flake.id)
        flakes.append(flake)
        stack.append(
            StackLayer(
                flake.id,
                flake.material,
                flake.layer_count,
                flake.polygon_um,
                float(lay.x_um),
                float(lay.y_um),
                float(lay.rotation_deg),
            )
        )
    check_placed(stack)
    return Assembly(tuple(flakes), tuple(stack))


def design_summary(assembly: Assembly) -> StackSummary:
    """Areas, stack overlap and neighbour pairs of an assembled design."""
    return summarize(assembly.stack)


def design_gds(assembly: Assembly, name: str) -> bytes:
    """GDSII bytes of an assembled design; :class:`DesignError` for a design without layers."""
    if not assembly.stack:
        raise DesignError("the design has no layers to export")
    return to_gds(assembly.stack, name)
