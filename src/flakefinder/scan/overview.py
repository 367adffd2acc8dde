"""The overview pass's image analysis: a low-magnification mosaic of the whole chip, the chip
outline, tape residue and empty areas, and the proposed search region.

numpy + OpenCV only. Steps:

1. *Flat field*: all overview frames share the camera's illumination field; a quadratic
   surface of log intensity is fitted per channel to the bare-substrate blocks of every frame
   (the substrate is the dominant colour: the overview area should be mostly chip), and each
   frame becomes ``rel = I / I_substrate`` (1 on bare substrate).
2. *Mosaic*: frames pasted at their stage positions (``rel``, plus a display picture).
3. *Chip*: substrate-like pixels, closed and hole-filled, largest connected part; its bounding
   box and minimum-area rectangle (the outline's four corners).
4. *Tape residue*: inside the chip, broad faint darkening (0.6-10 % after a ~10 µm smoothing,
   strong objects masked out) over at least ``min_residue_um2``.
5. *Empty areas*: search tiles (at the search objective's field of view) in which the
   overview shows no object at all (no region of contrast above ``object_contrast``).
6. *Proposal*: the chip's box inset by ``edge_margin_um``, with residue and empty areas as
   exclusions (:class:`flakefinder.scan.region.SearchRegion`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np

from flakefinder.errors import FlakefinderError
from flakefinder.scan.region import Exclusion, SearchRegion, plan_region

if TYPE_CHECKING:
    from collections.abc import Sequence

Rect = tuple[float, float, float, float]
BLOCK_PX = 8


class OverviewError(FlakefinderError):
    """An overview that does not show a chip (nothing that looks like bare substrate)."""


@dataclass(frozen=True, eq=False)
class OverviewFrame:
    """One overview frame: pixels and the stage position (µm) of its centre."""

    image: np.ndarray
    x_um: float
    y_um: float


@dataclass(frozen=True, eq=False)
class Mosaic:
    """Flat-fielded relative image (float32, 1 on bare substrate) and a display picture
    (uint8 RGB) of the overview, with the stage position of their top-left corner."""

    rel: np.ndarray
    picture: np.ndarray
    x_um: float
    y_um: float
    um_per_px: float

    @property
    def extent_um(self) -> Rect:
        h, w = self.rel.shape[:2]
        return (
            self.x_um,
            self.y_um,
            self.x_um + w * self.um_per_px,
            self.y_um + h * self.um_per_px,
        )


@dataclass(frozen=True)
class OverviewAnalysis:
    """What the overview found (stage µm) and the search region it proposes."""

    chip_rect_um: Rect
    chip_corners_um: tuple[tuple[float, float], ...]
    residue_um: tuple[Rect, ...]
    empty_um: tuple[Rect, ...]
    region: SearchRegion
    substrate_rgb: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "chip_rect_um": list(self.chip_rect_um),
            "chip_corners_um": [list(p) for p in self.chip_corners_um],
            "residue_um": [list(r) for r in self.residue_um],
            "empty_um": [list(r) for r in self.empty_um],
            "region": self.region.to_dict(),
            "substrate_rgb": list(self.substrate_rgb),
        }


def _blocks(image: np.ndarray) -> np.ndarray:
    """Mean of BLOCK_PX x BLOCK_PX blocks of a linear float image -> (gh, gw, 3)."""
    h, w = image.shape[0] // BLOCK_PX * BLOCK_PX, image.shape[1] // BLOCK_PX * BLOCK_PX
    a = image[:h, :w].reshape(h // BLOCK_PX, BLOCK_PX, w // BLOCK_PX, BLOCK_PX, 3)
    return cast("np.ndarray", a.mean(axis=(1, 3)))


def _terms(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def flat_field(
    frames: Sequence[OverviewFrame], um_per_px: float, chip_hint_um: Rect | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(field (H, W, 3) float32, 1 at the fit's centre; substrate colour (3,)) shared by the
    frames. The substrate is the dominant colour of the blocks inside ``chip_hint_um`` (where
    the chip should be: its corners as given), of all blocks without a hint.

    Raises :class:`OverviewError` when no frame shows enough bare substrate."""
    shape = frames[0].image.shape
    logs, us, vs, hint = [], [], [], []
    for f in frames:
        if f.image.shape != shape:
            raise OverviewError("overview frames must all have the same size")
        b = _blocks(f.image.astype(np.float32) / 255.0)
        gh, gw = b.shape[:2]
        v, u = np.meshgrid(
            (np.arange(gh) + 0.5) / gh * 2 - 1, (np.arange(gw) + 0.5) / gw * 2 - 1, indexing="ij"
        )
        logs.append(np.log(np.maximum(b, 1e-3)).reshape(-1, 3))
        us.append(u.reshape(-1))
        vs.append(v.reshape(-1))
        if chip_hint_um is not None:
            x = f.x_um + u.reshape(-1) * shape[1] * um_per_px / 2.0
            y = f.y_um + v.reshape(-1) * shape[0] * um_per_px / 2.0
            x0, y0, x1, y1 = chip_hint_um
            hint.append((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    logm = np.concatenate(logs)
    u, v = np.concatenate(us), np.concatenate(vs)
    inside = np.concatenate(hint) if hint else np.ones(len(logm), dtype=bool)
    if inside.sum() < 24:
        raise OverviewError(
            "the overview frames do not cover where the chip should be (check its corners)"
        )
    chroma = logm[:, [0, 2]] - logm[:, [1]]
    q = np.round(np.column_stack([chroma / 0.03, logm[:, 1] / 0.1])).astype(np.int64)
    keys, inv, counts = np.unique(q[inside], axis=0, return_inverse=True, return_counts=True)
    mode = keys[int(np.argmax(counts))]
    sel = np.all(q == mode, axis=1)
    sel = np.all(np.abs(logm - np.median(logm[sel], axis=0)) < 0.25, axis=1)
    if float(np.exp(np.median(logm[sel, 1]))) < 0.02:
        raise OverviewError(
            "the overview frames are dark (no bare substrate to calibrate on): check the lamp,"
            " the shutter and the exposure"
        )
    if sel.sum() < 24:
        raise OverviewError(
            "the overview shows no bare substrate to calibrate on; is the chip under the"
            " objective (check the overview area and the light)?"
        )
    a_full = _terms(u, v)
    coef = np.zeros((6, 3))
    for _ in range(3):
        a = a_full[sel]
        coef = np.linalg.lstsq(a, logm[sel], rcond=None)[0]
        res = logm - a_full @ coef
        sigma = np.maximum(1.4826 * np.median(np.abs(res[sel]), axis=0), 0.003)
        new = np.all(np.abs(res) < 4.0 * sigma, axis=1)
        if new.sum() < 24 or np.array_equal(new, sel):
            break
        sel = new
    h, w = shape[:2]
    vv, uu = np.meshgrid(
        (np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1, indexing="ij"
    )
    log_field = _terms(uu.astype(np.float32), vv.astype(np.float32)) @ coef.astype(np.float32)
    substrate = np.exp(coef[0])
    return np.exp(log_field - coef[0]).astype(np.float32), substrate


def stitch(
    frames: Sequence[OverviewFrame], um_per_px: float, chip_hint_um: Rect | None = None
) -> Mosaic:
    """Flat-field the frames and paste them at their stage positions (later frames on top);
    ``chip_hint_um`` is where the chip should be (see :func:`flat_field`)."""
    if not frames:
        raise OverviewError("an overview needs at least one frame")
    field_, substrate = flat_field(frames, um_per_px, chip_hint_um)
    h, w = frames[0].image.shape[:2]
    x0 = min(f.x_um for f in frames) - w * um_per_px / 2.0
    y0 = min(f.y_um for f in frames) - h * um_per_px / 2.0
    x1 = max(f.x_um for f in frames) + w * um_per_px / 2.0
    y1 = max(f.y_um for f in frames) + h * um_per_px / 2.0
    mw, mh = round((x1 - x0) / um_per_px), round((y1 - y0) / um_per_px)
    rel = np.ones((mh, mw, 3), np.float32)
    norm = (field_ * substrate.astype(np.float32)[None, None, :]) * 255.0
    for f in frames:
        c0 = round((f.x_um - w * um_per_px / 2.0 - x0) / um_per_px)
        r0 = round((f.y_um - h * um_per_px / 2.0 - y0) / um_per_px)
        c0, r0 = min(max(c0, 0), mw - w), min(max(r0, 0), mh - h)
        rel[r0 : r0 + h, c0 : c0 + w] = f.image.astype(np.float32) / norm
    colour = np.clip(substrate * 255.0, 0, 255).astype(np.float32)
    picture = np.clip(np.rint(rel * colour[None, None, :]), 0, 255).astype(np.uint8)
    return Mosaic(rel, picture, x0, y0, um_per_px)


def _rect_um(mosaic: Mosaic, x: int, y: int, w: int, h: int, grow_um: float = 0.0) -> Rect:
    s = mosaic.um_per_px
    return (
        mosaic.x_um + x * s - grow_um,
        mosaic.y_um + y * s - grow_um,
        mosaic.x_um + (x + w) * s + grow_um,
        mosaic.y_um + (y + h) * s + grow_um,
    )


def _chip_mask(mosaic: Mosaic) -> np.ndarray:
    rel = mosaic.rel
    substrate = np.all(np.abs(rel - 1.0) < 0.2, axis=2).astype(np.uint8)
    k = max(3, int(round(20.0 / mosaic.um_per_px)) | 1)
    closed = cv2.morphologyEx(substrate, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if n <= 1:
        raise OverviewError("the overview shows no chip (no area of bare substrate)")
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    chip = (labels == big).astype(np.uint8)
    contours, _ = cv2.findContours(chip, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(chip)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return cast("np.ndarray", filled.astype(bool))


def _objects(mosaic: Mosaic, threshold: float) -> np.ndarray:
    """Pixels whose contrast to the substrate exceeds ``threshold`` in any channel."""
    return cast("np.ndarray", np.any(np.abs(mosaic.rel - 1.0) > threshold, axis=2))


def _residue(
    mosaic: Mosaic, chip: np.ndarray, min_area_um2: float, strong: np.ndarray
) -> list[Rect]:
    s = mosaic.um_per_px
    dark = 1.0 - mosaic.rel.mean(axis=2)
    masked = np.where(
        cv2.dilate(strong.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0, 0.0, dark
    ).astype(np.float32)
    k = max(3, int(round(10.0 / s)) | 1)
    smooth = cv2.blur(masked, (k, k))
    inner = cv2.erode(chip.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    cand = ((smooth > 0.006) & (smooth < 0.10) & inner).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area * s * s >= min_area_um2:
            out.append(_rect_um(mosaic, x, y, w, h, grow_um=2.0 * s))
    return out


def analyse_overview(
    mosaic: Mosaic,
    *,
    search_fov_um: tuple[float, float],
    overlap: float = 0.1,
    edge_margin_um: float = 10.0,
    min_residue_um2: float = 400.0,
    object_contrast: float = 0.08,
    min_object_um2: float = 12.0,
) -> OverviewAnalysis:
    """Chip outline, residue, empty areas and the proposed region (see the module docstring)."""
    s = mosaic.um_per_px
    chip = _chip_mask(mosaic)
    ys, xs = np.nonzero(chip)
    cx0, cy0, cx1, cy1 = _rect_um(
        mosaic,
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    )
    contours, _ = cv2.findContours(
        chip.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    box = cv2.boxPoints(cv2.minAreaRect(max(contours, key=cv2.contourArea)))
    corners = tuple(
        (float(mosaic.x_um + (px + 0.5) * s), float(mosaic.y_um + (py + 0.5) * s)) for px, py in box
    )
    strong = _objects(mosaic, object_contrast) & chip
    residue = _residue(mosaic, chip, min_residue_um2, strong)
    m = edge_margin_um
    rect = (cx0 + m, cy0 + m, cx1 - m, cy1 - m)
    if rect[2] <= rect[0] or rect[3] <= rect[1]:
        raise OverviewError(
            f"the chip found in the overview ({cx1 - cx0:.0f} x {cy1 - cy0:.0f} µm) is smaller"
            f" than twice the edge margin ({m:g} µm)"
        )
    proposal = SearchRegion(rect, tuple(Exclusion("residue", r) for r in residue))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(strong.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] * s * s >= min_object_um2
    objects = keep[labels]
    empty: list[Rect] = []
    fw, fh = search_fov_um
    for t in plan_region(proposal, fw, fh, overlap):
        x0, y0, x1, y1 = t.x_um - fw / 2, t.y_um - fh / 2, t.x_um + fw / 2, t.y_um + fh / 2
        c0, r0 = int((x0 - mosaic.x_um) / s), int((y0 - mosaic.y_um) / s)
        c1, r1 = int(np.ceil((x1 - mosaic.x_um) / s)), int(np.ceil((y1 - mosaic.y_um) / s))
        if not objects[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)].any():
            empty.append((x0, y0, x1, y1))
    region = SearchRegion(rect, proposal.exclusions + tuple(Exclusion("empty", r) for r in empty))
    substrate = mosaic.picture[chip & ~strong].reshape(-1, 3)
    mean = substrate.mean(axis=0) if len(substrate) else np.zeros(3)
    return OverviewAnalysis(
        chip_rect_um=(cx0, cy0, cx1, cy1),
        chip_corners_um=corners,
        residue_um=tuple(residue),
        empty_um=tuple(empty),
        region=region,
        substrate_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
    )
