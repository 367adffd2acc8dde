"""Conventional rule-based flake detector: fixed colour windows, edges and local entropy.

This is the baseline the paper compares Mask R-CNN against (Fig. 2): handcrafted features with
*absolute* thresholds, tuned once by an expert for one microscope setting and never normalised to
the background. It therefore works at the illumination it was tuned for and degrades when the lamp
is dimmed, exactly the failure the paper shows.

Tuning (documented, reproducible): the target colours are the optics model's predicted flake
colours at **nominal illumination 1.0**, i.e. ``ContrastModel(oxide, NA).relative_rgb(m, n)`` times
the bare-substrate camera signal at the nominal exposure (``substrate_level`` = 0.55 of full scale
on average, the auto-exposure level of the simulated camera in ``flakefinder.synth``), gamma-encoded
with the detector's ``gamma`` into 0..255 values. A real installation would instead pass the substrate
colour it measured once (``substrate_rgb8``), as an expert does when tuning.

Rules, all with fixed thresholds in camera units (DN = 8-bit digital numbers):

1. colour: a 5x5-smoothed pixel belongs to (material, n) when that target colour is the nearest one
   (bare substrate included) and within ``colour_tolerance_dn`` in every channel;
2. regions: connected pixels of one (material, layer class); smaller than ``min_area_um2`` or
   larger than ``max_area_fraction`` of the image are rejected;
3. edges: at least ``min_edge_fraction`` of a region's boundary must lie within 2 px of a Canny edge
   (fixed hysteresis thresholds) of the grey image;
4. entropy: the median local Shannon entropy (grey levels in 16 bins, ``entropy_window_px``
   window) inside the region must stay below ``max_entropy_bits`` (flakes are uniform).
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from flakefinder.detect.colours import MAX_LAYERS, colour_table, encode
from flakefinder.detect.contrast import mask_polygon
from flakefinder.domain import Detection, ImagingContext, LayerClass, check_rgb_image


@lru_cache(maxsize=32)
def _targets(
    oxide_nm: float,
    na: float,
    materials: tuple[str, ...],
    gamma: float,
    substrate_rgb8: tuple[float, float, float] | None,
    substrate_level: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(target colours (T, 3) in DN, row 0 = substrate; material index; n_layers; substrate DN)."""
    table = colour_table(oxide_nm, na, materials, MAX_LAYERS)
    if substrate_rgb8 is None:
        sub = table.substrate_rgb * (substrate_level / float(table.substrate_rgb.mean()))
    else:
        sub = (np.clip(np.asarray(substrate_rgb8, dtype=np.float64), 0, 255) / 255.0) ** gamma
    dn = encode(sub[None, :] * table.relative_rgb.astype(np.float64), gamma).astype(np.float32)
    return dn, table.material_index, table.n_layers, dn[0]


def local_entropy(grey: np.ndarray, window_px: int = 9, levels: int = 16) -> np.ndarray:
    """Shannon entropy (bits) of the grey-level histogram in a square window, float32 (H, W).

    Like ``skimage.filters.rank.entropy`` on ``levels`` grey bins, computed with box filters.
    """
    q = (grey.astype(np.uint16) * levels // 256).astype(np.uint8)
    out = np.zeros(grey.shape, dtype=np.float32)
    for lv in np.unique(q):
        p = cv2.boxFilter((q == lv).astype(np.float32), -1, (window_px, window_px))
        np.clip(p, 1e-12, 1.0, out=p)
        out -= p * np.log2(p)
    return np.maximum(out, 0.0)


class RuleBasedDetector:
    """Fixed-threshold colour/edge/entropy detector; implements ``domain.Detector``."""

    name = "rulebased"
    version = "1.0"

    def __init__(
        self,
        min_area_um2: float = 1.0,
        *,
        colour_tolerance_dn: float = 9.0,
        substrate_rgb8: tuple[float, float, float] | None = None,
        substrate_level: float = 0.55,
        canny_low: float = 8.0,
        canny_high: float = 20.0,
        min_edge_fraction: float = 0.3,
        entropy_window_px: int = 9,
        max_entropy_bits: float = 2.0,
        max_area_fraction: float = 0.5,
        smooth_px: int = 5,
        gamma: float = 1.0,
        numerical_aperture: float = 0.55,
    ) -> None:
        self.min_area_um2 = float(min_area_um2)
        self.colour_tolerance_dn = float(colour_tolerance_dn)
        self.substrate_rgb8 = None if substrate_rgb8 is None else tuple(map(float, substrate_rgb8))
        self.substrate_level = float(substrate_level)
        self.canny_low = float(canny_low)
        self.canny_high = float(canny_high)
        self.min_edge_fraction = float(min_edge_fraction)
        self.entropy_window_px = int(entropy_window_px) | 1
        self.max_entropy_bits = float(max_entropy_bits)
        self.max_area_fraction = float(max_area_fraction)
        self.smooth_px = int(smooth_px) | 1
        self.gamma = float(gamma)  # camera encoding: stored = linear ** (1 / gamma)
        self.numerical_aperture = float(numerical_aperture)

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        img = check_rgb_image(image)
        h, w = img.shape[:2]
        targets, mat_idx, n_layers, sub = _targets(
            round(context.oxide_thickness_nm, 6),
            round(self.numerical_aperture, 6),
            tuple(context.materials),
            self.gamma,
            self.substrate_rgb8,  # type: ignore[arg-type]
            self.substrate_level,
        )
        s = cv2.blur(img, (self.smooth_px, self.smooth_px)).astype(np.float32)
        tol = self.colour_tolerance_dn
        near_sub = cv2.inRange(s, tuple((sub - tol).tolist()), tuple((sub + tol).tolist()))
        cand = near_sub == 0
        if not cand.any():
            return []
        # Nearest target per distinct colour (1 DN grid), within the tolerance window.
        q = np.rint(s[cand]).astype(np.int64)
        codes = (q[:, 0] * 256 + q[:, 1]) * 256 + q[:, 2]
        ucodes, first, inv = np.unique(codes, return_index=True, return_inverse=True)
        ucol = q[first].astype(np.float32)
        d = np.abs(ucol[:, None, :] - targets[None, :, :]).max(axis=2)
        best = np.argmin(d, axis=1)
        ok = d[np.arange(best.size), best] <= tol
        row = np.where(ok, best, 0)
        # class label per pixel: material * 3 + class index + 1 (0 = none)
        cls_of_row = np.zeros(len(targets), dtype=np.int64)
        for r in range(1, len(targets)):
            lc = LayerClass.from_layers(int(n_layers[r]))
            if lc is not None:
                cls_of_row[r] = int(mat_idx[r]) * 3 + [*LayerClass].index(lc) + 1
        labels = np.zeros((h, w), dtype=np.int64)
        labels[cand] = cls_of_row[row[inv.reshape(-1)]]

        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(grey, self.canny_low, self.canny_high)
        edges_near = cv2.dilate(edges, np.ones((5, 5), np.uint8)) > 0
        min_px = max(4, math.ceil(self.min_area_um2 / context.um_per_px**2))
        max_px = self.max_area_fraction * h * w
        entropy: np.ndarray | None = None
        open_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        dets: list[Detection] = []
        for lab in np.unique(labels):
            if lab == 0:
                continue
            # opening removes the thin rings of blurred edge colours around other flakes
            m = cv2.morphologyEx((labels == lab).astype(np.uint8), cv2.MORPH_OPEN, open_k)
            n_cc, cc, st, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            for k in range(1, n_cc):
                area = int(st[k, cv2.CC_STAT_AREA])
                if area < min_px or area > max_px:
                    continue
                x0, y0, bw, bh = (int(v) for v in st[k, :4])
                sl = (slice(y0, y0 + bh), slice(x0, x0 + bw))
                comp = (cc[sl] == k).astype(np.uint8)
                boundary = comp.astype(bool) & ~cv2.erode(comp, np.ones((3, 3), np.uint8)).astype(
                    bool
                )
                if boundary.sum() == 0:
                    continue
                edge_frac = float(edges_near[sl][boundary].mean())
                if edge_frac < self.min_edge_fraction:
                    continue
                if entropy is None:
                    entropy = local_entropy(grey, self.entropy_window_px)
                inner = comp.astype(bool)
                if float(np.median(entropy[sl][inner])) > self.max_entropy_bits:
                    continue
                med = np.median(s[sl][inner], axis=0)
                dist = np.abs(targets[1:] - med[None, :]).max(axis=1)
                r = int(np.argmin(dist)) + 1
                material = context.materials[int(mat_idx[r])]
                layer_class = LayerClass.from_layers(int(n_layers[r]))
                if layer_class is None:
                    continue
                ys, xs = np.nonzero(comp)
                mask = np.zeros((h, w), dtype=bool)
                mask[ys + y0, xs + x0] = True
                dets.append(
                    Detection(
                        material=material,
                        layer_class=layer_class,
                        confidence=float(
                            max(0.0, 1.0 - float(dist[r - 1]) / (2 * tol)) * edge_frac
                        ),
                        polygon_px=mask_polygon(comp, x0, y0, 1.0),
                        bbox_px=(float(x0), float(y0), float(x0 + bw), float(y0 + bh)),
                        area_px=float(area),
                        layer_count=int(n_layers[r]),
                        mask=mask,
                    )
                )
        dets.sort(key=lambda dd: (dd.bbox_px[1], dd.bbox_px[0]))
        return dets
