"""Ground truth for a rendered view: one instance mask per terrace region, plus the chip-to-pixel
geometry shared with the renderer (so masks and pixels line up exactly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from flakefinder.domain import LayerClass

if TYPE_CHECKING:
    from flakefinder.synth.chip import Polygon, SynthFlake, VirtualChip

#: Sub-pixel bits used for cv2.fillPoly (1/16 px vertex precision).
SHIFT = 4
_SCALE = float(1 << SHIFT)

#: Instances with fewer pixels than this are not reported.
MIN_INSTANCE_AREA_PX = 20


@dataclass(frozen=True)
class ViewGeometry:
    """A field of view: image centre in chip µm, size in pixels, pixel pitch."""

    center_x_um: float
    center_y_um: float
    width_px: int
    height_px: int
    um_per_px: float

    def rect_um(self, margin_px: float = 0.0) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the view in chip µm, grown by ``margin_px`` on every side."""
        hw = (self.width_px / 2.0 + margin_px) * self.um_per_px
        hh = (self.height_px / 2.0 + margin_px) * self.um_per_px
        return (
            self.center_x_um - hw,
            self.center_y_um - hh,
            self.center_x_um + hw,
            self.center_y_um + hh,
        )

    def to_px(self, polygon_um: Polygon | np.ndarray, pad_px: int = 0) -> np.ndarray:
        """Continuous pixel coordinates (origin at the top-left pixel corner), float64 (N, 2)."""
        a = np.asarray(polygon_um, dtype=float)
        px = (a[:, 0] - self.center_x_um) / self.um_per_px + self.width_px / 2.0 + pad_px
        py = (a[:, 1] - self.center_y_um) / self.um_per_px + self.height_px / 2.0 + pad_px
        return np.stack([px, py], axis=1)

    def to_cv(self, polygon_um: Polygon | np.ndarray, pad_px: int = 0) -> np.ndarray:
        """int32 vertices for ``cv2.fillPoly(..., shift=SHIFT)`` (cv2 puts pixel centres at integers)."""
        return np.rint((self.to_px(polygon_um, pad_px) - 0.5) * _SCALE).astype(np.int32)


def fill_mask(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    """uint8 mask (0/1) of the union of cv-format polygons."""
    m = np.zeros(shape, dtype=np.uint8)
    if polys:
        cv2.fillPoly(m, polys, 1, cv2.LINE_8, SHIFT)
    return m


@dataclass(frozen=True, eq=False)
class GroundTruthInstance:
    """One terrace region of one flake in one view (terrace minus the thicker terraces inside,
    minus whatever later flakes cover). ``polygon_px`` is the terrace's outer polygon in continuous
    pixel coordinates (it may reach outside the image and ignores the holes in ``mask``)."""

    flake_id: int
    material: str
    n_layers: int
    layer_class: LayerClass
    mask: np.ndarray = field(repr=False)  # bool (H, W)
    polygon_px: tuple[tuple[float, float], ...] = ()
    terrace_index: int = 0

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def bbox_px(self) -> tuple[float, float, float, float]:
        """x_min, y_min, x_max, y_max in pixel-edge convention (columns 3..5 -> 3, 6)."""
        ys = np.flatnonzero(self.mask.any(axis=1))
        xs = np.flatnonzero(self.mask.any(axis=0))
        if len(xs) == 0:
            return (0.0, 0.0, 0.0, 0.0)
        return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))


def view_instances(
    chip: VirtualChip,
    center_x_um: float,
    center_y_um: float,
    width_px: int,
    height_px: int,
    um_per_px: float,
    *,
    min_area_px: int = MIN_INSTANCE_AREA_PX,
) -> list[GroundTruthInstance]:
    """Ground-truth instances of the view, in chip flake order then terrace order.

    Bulk terraces (> 40 layers) and regions smaller than ``min_area_px`` are left out; bulk
    terraces still cut their region out of the thinner terrace around them.
    """
    view = ViewGeometry(center_x_um, center_y_um, width_px, height_px, um_per_px)
    flakes = chip.flakes_in_rect(*view.rect_um(1.0))
    shape = (height_px, width_px)
    per_flake: list[list[GroundTruthInstance]] = []
    covered: np.ndarray | None = None  # union of the outlines of later (overlying) flakes
    for flake in reversed(flakes):
        if not flake.is_bulk:
            per_flake.append(_flake_instances(flake, view, shape, covered, min_area_px))
        if len(flakes) > 1:
            if covered is None:
                covered = np.zeros(shape, dtype=np.uint8)
            cv2.fillPoly(covered, [view.to_cv(flake.terraces[0].polygon_um)], 1, cv2.LINE_8, SHIFT)
    return [inst for group in reversed(per_flake) for inst in group]


def _flake_instances(
    flake: SynthFlake,
    view: ViewGeometry,
    shape: tuple[int, int],
    covered: np.ndarray | None,
    min_area_px: int,
) -> list[GroundTruthInstance]:
    cv_polys = [view.to_cv(t.polygon_um) for t in flake.terraces]
    masks = [fill_mask(shape, [p]) for p in cv_polys]
    out = []
    for k, terrace in enumerate(flake.terraces):
        layer_class = LayerClass.from_layers(terrace.n_layers)
        if layer_class is None:
            continue
        region = masks[k].astype(bool)
        for inner in masks[k + 1 :]:
            region &= inner == 0
        if covered is not None:
            region &= covered == 0
        if int(np.count_nonzero(region)) < min_area_px:
            continue
        poly = tuple((float(x), float(y)) for x, y in view.to_px(terrace.polygon_um))
        out.append(
            GroundTruthInstance(
                flake_id=flake.flake_id,
                material=flake.material,
                n_layers=terrace.n_layers,
                layer_class=layer_class,
                mask=region,
                polygon_px=poly,
                terrace_index=k,
            )
        )
    return out
