"""A pixel-space scene with exact ground truth: a reflectance-factor map plus an owner map.

Every painted region gets an id in ``owner`` (0 = bare substrate). A region is a flake of one
material and one thickness, or clutter (particles, chip edge). Flakes painted over another flake
of the same material stack: the overlap becomes its own region with the summed layer count (and
the colour of that thickness). Ground-truth instances are the connected components of the regions
that are flakes of 1-40 layers; decoration that leaves the flake in place (wrinkles, bubbles,
residue, glue) changes the colour only, never the owner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from flakefinder.domain import LayerClass
from flakefinder.synth.chip import BULK_MIN_LAYERS
from flakefinder.synth.instances import GroundTruthInstance

ColourFn = Callable[[str, int], tuple[float, float, float]]

_SHIFT = 4


@dataclass(frozen=True)
class Region:
    """What one owner id stands for.

    Parameters
    ----------
    material : str
        Material name ("" for clutter and substrate).
    n_layers : int
        Layer count (0 for clutter and substrate).
    flake_id : int
        The flake the region belongs to (-1 for clutter and substrate).
    """

    material: str
    n_layers: int
    flake_id: int

    @property
    def is_instance(self) -> bool:
        """True for flake regions of 1-40 layers (the ground-truth instances)."""
        return self.flake_id >= 0 and 1 <= self.n_layers < BULK_MIN_LAYERS


def cv_points(poly_px: np.ndarray) -> np.ndarray:
    """int32 sub-pixel vertices for ``cv2.fillPoly(..., shift=4)`` (pixel centres at integers)."""
    return np.rint((np.asarray(poly_px, dtype=float) - 0.5) * (1 << _SHIFT)).astype(np.int32)


class Scene:
    """Reflectance map ``f`` (H, W, 3; 1 = bare substrate) and region map ``owner`` (H, W).

    Parameters
    ----------
    height_px, width_px : int
        Image size.
    colour : callable
        ``colour(material, n_layers)`` -> reflectance relative to the substrate (R, G, B).
    """

    def __init__(self, height_px: int, width_px: int, colour: ColourFn) -> None:
        self.f = np.ones((height_px, width_px, 3), dtype=np.float32)
        self.owner = np.zeros((height_px, width_px), dtype=np.int32)
        self.regions: list[Region] = [Region("", 0, -1)]
        self._ids: dict[tuple[str, int, int], int] = {}
        self._colour = colour

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (int(self.owner.shape[0]), int(self.owner.shape[1]))

    def region_id(self, material: str, n_layers: int, flake_id: int) -> int:
        """Owner id of (material, n_layers, flake_id), created on first use."""
        key = (material, n_layers, flake_id)
        rid = self._ids.get(key)
        if rid is None:
            rid = self._ids[key] = len(self.regions)
            self.regions.append(Region(material, n_layers, flake_id))
        return rid

    def colour(self, material: str, n_layers: int) -> np.ndarray:
        """Relative reflectance of a film as float32 (3,)."""
        return np.asarray(self._colour(material, n_layers), dtype=np.float32)

    def polygon_mask(
        self, polys_px: list[np.ndarray]
    ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """Bool mask of the union of polygons in its clipped bounding box, or None if outside."""
        h, w = self.shape
        allp = np.concatenate([np.asarray(p, dtype=float) for p in polys_px])
        x0 = max(int(np.floor(allp[:, 0].min())) - 1, 0)
        y0 = max(int(np.floor(allp[:, 1].min())) - 1, 0)
        x1 = min(int(np.ceil(allp[:, 0].max())) + 1, w)
        y1 = min(int(np.ceil(allp[:, 1].max())) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return None
        m = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        off = np.array([x0, y0], dtype=float)
        cv2.fillPoly(m, [cv_points(p - off) for p in polys_px], 1, cv2.LINE_8, _SHIFT)
        return m.astype(bool), (x0, y0, x1, y1)

    def paint_flake(
        self,
        poly_px: np.ndarray,
        material: str,
        n_layers: int,
        flake_id: int,
        *,
        stack: bool = True,
    ) -> None:
        """Paint a film. ``stack``: over another flake of the same material the layers add up;
        else (a terrace or fold of the same flake) the region is replaced by ``n_layers``."""
        got = self.polygon_mask([poly_px])
        if got is None:
            return
        m, (x0, y0, x1, y1) = got
        own = self.owner[y0:y1, x0:x1]
        f = self.f[y0:y1, x0:x1]
        if not stack:
            rid = self.region_id(material, n_layers, flake_id)
            own[m] = rid
            f[m] = self.colour(material, n_layers)
            return
        under_ids = np.unique(own[m])
        for uid in under_ids.tolist():
            sel = m & (own == uid)
            under = self.regions[uid]
            if under.flake_id >= 0 and under.flake_id != flake_id and under.material == material:
                n = n_layers + under.n_layers
                rid = self.region_id(material, n, flake_id)
                own[sel] = rid
                f[sel] = self.colour(material, n)
            elif under.flake_id >= 0 and under.material != material:
                # a heterostack: drawn as the product of both films, never an instance
                rid = self.region_id("", 0, -1)
                own[sel] = rid
                f[sel] = f[sel] * self.colour(material, n_layers)
            else:
                rid = self.region_id(material, n_layers, flake_id)
                own[sel] = rid
                f[sel] = self.colour(material, n_layers)

    def paint_clutter(
        self, mask: np.ndarray, box: tuple[int, int, int, int], rgb: np.ndarray
    ) -> None:
        """Occluding clutter (particles, off-chip area): owner -> clutter, F -> ``rgb`` in ``mask``
        (bool, the size of ``box``)."""
        x0, y0, x1, y1 = box
        self.owner[y0:y1, x0:x1][mask] = self.region_id("", 0, -1)
        self.f[y0:y1, x0:x1][mask] = np.asarray(rgb, dtype=np.float32)

    def tint(self, factor: np.ndarray, box: tuple[int, int, int, int] | None = None) -> None:
        """Multiply F (or its ``box``) by a 2-D or (.., .., 3) factor (residue, glue, wrinkles):
        owner unchanged."""
        if factor.ndim == 2:
            factor = factor[:, :, None]
        if box is None:
            self.f *= factor.astype(np.float32)
        else:
            x0, y0, x1, y1 = box
            self.f[y0:y1, x0:x1] *= factor.astype(np.float32)

    def cut(self, mask: np.ndarray, box: tuple[int, int, int, int]) -> None:
        """Remove the flake under ``mask`` (a crack): bare substrate again."""
        x0, y0, x1, y1 = box
        self.owner[y0:y1, x0:x1][mask] = 0
        self.f[y0:y1, x0:x1][mask] = 1.0

    def instances(self, min_area_px: int = 20) -> list[GroundTruthInstance]:
        """Ground truth: connected components (8-connected) of every 1-40-layer flake region with
        at least ``min_area_px`` pixels, ordered by flake id, then layer count, then position."""
        from scipy.ndimage import find_objects

        out: list[tuple[tuple[int, int, int, int], GroundTruthInstance]] = []
        h, w = self.shape
        for rid0, sl in enumerate(find_objects(self.owner)):
            rid = rid0 + 1
            if sl is None or not self.regions[rid].is_instance:
                continue
            region = self.regions[rid]
            layer_class = LayerClass.from_layers(region.n_layers)
            if layer_class is None:  # pragma: no cover - is_instance guarantees a class
                continue
            ys, xs = sl
            local = (self.owner[sl] == rid).astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(local, connectivity=8)
            for k in range(1, n):
                if int(stats[k, cv2.CC_STAT_AREA]) < min_area_px:
                    continue
                comp_local = labels == k
                contours, _h = cv2.findContours(
                    comp_local.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                c = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(float)
                c += (xs.start + 0.5, ys.start + 0.5)
                comp = np.zeros((h, w), dtype=bool)
                comp[sl] = comp_local
                inst = GroundTruthInstance(
                    flake_id=region.flake_id,
                    material=region.material,
                    n_layers=region.n_layers,
                    layer_class=layer_class,
                    mask=comp,
                    polygon_px=tuple((float(x), float(y)) for x, y in c),
                    terrace_index=0,
                )
                key = (
                    region.flake_id,
                    region.n_layers,
                    int(stats[k, 1]) + ys.start,
                    int(stats[k, 0]) + xs.start,
                )
                out.append((key, inst))
        out.sort(key=lambda t: t[0])
        return [inst for _k, inst in out]
