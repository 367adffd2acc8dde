"""Training-free flake detector from optical contrast against the thin-film optics model.

Pipeline (numpy + cv2, float32 throughout):

1. undo the camera gamma (the ``gamma`` option) -> linear light;
2. fit the smooth substrate background field (:func:`flakefinder.detect.refine.fit_background`:
   dominant colour mode + robust low-order polynomial) and form the relative image
   ``rel = I / I_bg`` per channel, which is 1 on bare substrate whatever the illumination level,
   white balance or inhomogeneity;
3. smooth lightly; pixels whose ``rel`` differs from 1 by more than ``k_sigma`` times the measured
   substrate noise (and by ``min_contrast``) are foreground; small specks are removed;
4. every foreground pixel is matched to the nearest predicted colour of the context's materials for
   1..80 layers (:mod:`flakefinder.detect.colours`, cached per oxide/NA/materials). Inside each
   foreground region, the table colours supported by enough *flat* pixels (low colour gradient, so
   blurred terrace edges do not create phantom terraces) are kept, merged by non-maximum
   suppression in colour space, and all pixels are reassigned to the nearest kept colour or to the
   substrate: this splits multi-terrace flakes into uniform sub-regions; sub-regions narrower
   than the smoothing window (blurred edge bands between terraces) are discarded. A small region
   (6..40x the minimum area) with no supported colour is a small flake that the blur turned almost
   entirely into edge pixels: it gets the colour nearest its highest-contrast quarter instead;
5. each connected sub-region larger than ``min_area_um2``: median ``rel`` -> nearest (material,
   n_layers); dropped when bulk (> 40 layers) or when the residual exceeds ``max_residual`` (tape
   residue, particles: colours no material explains); confidence ``exp(-residual / scale)``.
6. saturated regions (all three channels clipped, e.g. thick TMDs on 90 nm SiO2 at the usual
   exposure) carry only a lower bound on their colour and cannot be told from bulk crystals, which
   clip too. By default they are dropped; ``report_saturated=True`` reports each one as a thick flake
   (``layer_count`` None, confidence ``saturated_confidence``) for recall-first screening.
"""

from __future__ import annotations

import math
from typing import cast

import cv2
import numpy as np

from flakefinder.detect.colours import MAX_LAYERS, ColourTable, colour_table, linearize
from flakefinder.detect.refine import fit_background
from flakefinder.domain import Detection, ImagingContext, LayerClass, check_rgb_image

QUANT = 0.004  # relative-RGB quantisation step for the colour look-up
SATURATED = 254  # camera value from which a channel counts as clipped
# A foreground region of CORE_REGION_MIN..CORE_REGION_MAX times the minimum flake area whose flat
# pixels support no table colour is a small flake blurred almost entirely into edge pixels.
CORE_REGION_MIN = 6
CORE_REGION_MAX = 40


def mask_polygon(
    mask_u8: np.ndarray, x0: int, y0: int, eps: float
) -> tuple[tuple[float, float], ...]:
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return ()
    c = max(contours, key=cv2.contourArea)
    if eps > 0 and len(c) > 8:
        c = cv2.approxPolyDP(c, eps, True)
    return tuple((float(p[0][0] + x0), float(p[0][1] + y0)) for p in c)


class ContrastDetector:
    """Detect flakes by their colour contrast to the substrate; implements ``domain.Detector``."""

    name = "contrast"
    version = "1.0"

    def __init__(
        self,
        min_area_um2: float = 1.0,
        *,
        k_sigma: float = 5.0,
        min_contrast: float = 0.015,
        max_residual: float = 0.04,
        confidence_scale: float = 0.03,
        smooth_px: int = 5,
        nms_distance: float = 0.02,
        polygon_epsilon_px: float = 1.0,
        min_support_px: int | None = None,
        report_saturated: bool = False,
        saturated_confidence: float = 0.25,
        gamma: float = 1.0,
        numerical_aperture: float = 0.55,
    ) -> None:
        if min_area_um2 < 0:
            raise ValueError(f"min_area_um2 must be >= 0, got {min_area_um2}")
        self.min_area_um2 = float(min_area_um2)
        self.k_sigma = float(k_sigma)
        self.min_contrast = float(min_contrast)
        self.max_residual = float(max_residual)
        self.confidence_scale = float(confidence_scale)
        self.smooth_px = int(smooth_px) | 1
        self.nms_distance = float(nms_distance)
        self.polygon_epsilon_px = float(polygon_epsilon_px)
        self.min_support_px = None if min_support_px is None else int(min_support_px)
        self.report_saturated = bool(report_saturated)
        self.saturated_confidence = float(saturated_confidence)
        self.gamma = float(gamma)  # camera encoding: stored = linear ** (1 / gamma)
        self.numerical_aperture = float(numerical_aperture)

    def relative_image(
        self, image: np.ndarray, context: ImagingContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rel, smoothed rel) float32 (H, W, 3): ``I / I_bg`` per channel in linear light."""
        lin = linearize(check_rgb_image(image), self.gamma)
        fit = fit_background(lin)
        rel = lin / fit.field
        s = self.smooth_px
        rel_s = cv2.blur(rel, (s, s)) if s > 1 else rel
        return rel, rel_s

    def _noise(self, rel_s: np.ndarray) -> np.ndarray:
        sample = rel_s[::4, ::4].reshape(-1, 3)
        dev = np.abs(sample - 1.0)
        near = np.all(dev < 0.05, axis=1)  # substrate-like pixels (flakes are a minority anyway)
        ref = sample[near] if near.sum() > 100 else sample
        mad = np.median(np.abs(ref - np.median(ref, axis=0)), axis=0)
        return cast("np.ndarray", np.maximum(1.4826 * mad, 1e-3).astype(np.float32))

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        img = check_rgb_image(image)
        h, w = img.shape[:2]
        table = colour_table(
            context.oxide_thickness_nm, self.numerical_aperture, tuple(context.materials)
        )
        rel, rel_s = self.relative_image(img, context)
        sigma = self._noise(rel_s)
        thr = np.maximum(self.k_sigma * sigma, self.min_contrast).astype(np.float64)
        inside = cv2.inRange(rel_s, tuple(1.0 - thr), tuple(1.0 + thr))  # 255 = substrate-like
        fg = (inside == 0).view(np.uint8)  # 0/1 for connectedComponents
        min_px = max(4, math.ceil(self.min_area_um2 / context.um_per_px**2))
        n_cc, cc, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_px) + 1
        if keep.size == 0:
            return []
        # Flat pixels: low local colour gradient (not on a blurred terrace edge).
        flat_thr = max(0.02, 12.0 * float(sigma.max()))

        dets: list[Detection] = []
        for lab in keep:
            x0, y0, bw, bh = (int(v) for v in stats[lab, :4])
            sl = (slice(y0, y0 + bh), slice(x0, x0 + bw))
            region = cc[sl] == lab
            crop = rel_s[sl]
            g = np.abs(cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3))
            g += np.abs(cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3))
            flat = cv2.inRange(g, (0.0, 0.0, 0.0), (flat_thr,) * 3) > 0
            dets.extend(
                self._split_region(
                    rel[sl], crop, region, flat, table, min_px, x0, y0, h, w, sigma, img[sl]
                )
            )
        dets.sort(key=lambda d: (d.bbox_px[1], d.bbox_px[0]))
        return dets

    def _split_region(
        self,
        rel: np.ndarray,
        rel_s: np.ndarray,
        region: np.ndarray,
        flat: np.ndarray,
        table: ColourTable,
        min_px: int,
        x0: int,
        y0: int,
        h: int,
        w: int,
        sigma: np.ndarray,
        raw: np.ndarray,
    ) -> list[Detection]:
        out: list[Detection] = []
        # Saturated pixels (all channels clipped) carry no colour: opt-in, their own regions.
        sat = np.all(raw >= SATURATED, axis=2) & region if self.report_saturated else None
        if sat is not None and sat.sum() >= min_px:
            sat_u8 = cv2.morphologyEx(sat.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            n_cc, cc, st, _ = cv2.connectedComponentsWithStats(sat_u8, connectivity=8)
            for k in range(1, n_cc):
                if st[k, cv2.CC_STAT_AREA] >= min_px:
                    comp = (cc == k).astype(np.uint8)
                    det = self._saturated_detection(comp, rel, table, x0, y0, h, w)
                    if det is not None:
                        out.append(det)
            region = region & ~sat
            if not region.any():
                return out
        colours = rel_s[region]  # (N, 3)
        q = np.clip(np.round(colours / QUANT), 0, 4095).astype(np.int64)
        codes = (q[:, 0] * 4096 + q[:, 1]) * 4096 + q[:, 2]
        ucodes, first, inv = np.unique(codes, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        ucol = (q[first].astype(np.float32)) * QUANT
        urow, _ = table.nearest(ucol)
        rows = urow[inv]
        support = np.bincount(rows[flat[region]], minlength=len(table))
        support[0] = 0
        if self.min_support_px is None:
            min_support = max(4, min_px // 2)
        else:
            min_support = self.min_support_px
        cand = np.flatnonzero(support >= min_support)
        n_reg = colours.shape[0]
        small = CORE_REGION_MIN * min_px <= n_reg <= CORE_REGION_MAX * min_px
        if cand.size == 0 and self.min_support_px is None and small:
            cand = self._core_candidate(colours, table)
        cand = cand[np.argsort(-support[cand], kind="stable")]
        d_min = max(self.nms_distance, 6.0 * float(np.linalg.norm(sigma)))
        accepted: list[int] = []
        for r in cand:
            col = table.relative_rgb[r]
            if all(np.linalg.norm(col - table.relative_rgb[a]) >= d_min for a in accepted):
                accepted.append(int(r))
        if not accepted:
            return out
        pick = np.asarray([0, *accepted])
        assign_u, _ = table.nearest(ucol, pick)
        assign = np.zeros(region.shape, dtype=np.int64)
        assign[region] = assign_u[inv]

        erode_k = np.ones((self.smooth_px, self.smooth_px), np.uint8)
        for row in accepted:
            sub = (assign == row).astype(np.uint8)
            n_cc, cc, st, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
            for k in range(1, n_cc):
                if st[k, cv2.CC_STAT_AREA] < min_px:
                    continue
                comp = (cc == k).astype(np.uint8)
                # narrower than the smoothing window: a blurred edge band, not a terrace
                dt = cv2.distanceTransform(np.pad(comp, 1), cv2.DIST_L2, 3)
                if float(dt.max()) < self.smooth_px / 2.0:
                    continue
                det = self._make_detection(comp, rel, raw, erode_k, table, x0, y0, h, w)
                if det is not None:
                    out.append(det)
        return out

    @staticmethod
    def _core_candidate(colours: np.ndarray, table: ColourTable) -> np.ndarray:
        """Fallback for a small region without flat support: the table row nearest to the median
        colour of its highest-contrast quarter (its core, least mixed with the substrate by the
        blur). Labelling still applies the residual / bulk checks to the resulting component."""
        dev = np.linalg.norm(colours - 1.0, axis=1)
        core = colours[dev >= np.quantile(dev, 0.75)]
        row, _ = table.nearest(np.median(core, axis=0, keepdims=True).astype(np.float32))
        return row[row > 0].astype(np.int64)

    def _make_detection(
        self,
        comp: np.ndarray,
        rel: np.ndarray,
        raw: np.ndarray,
        erode_k: np.ndarray,
        table: ColourTable,
        x0: int,
        y0: int,
        h: int,
        w: int,
    ) -> Detection | None:
        inner = cv2.erode(comp, erode_k) if comp.sum() > 4 * erode_k.size else comp
        if inner.sum() < 5:
            inner = comp
        sel = inner.astype(bool)
        med = np.median(rel[sel], axis=0)
        # A channel clipped at 255 in most pixels only bounds the colour from below: the model
        # colour may be brighter there without penalty.
        clipped = (raw[sel] >= SATURATED).mean(axis=0) > 0.5
        diff = table.relative_rgb[1:] - med[None, :]
        diff[:, clipped] = np.minimum(diff[:, clipped], 0.0)
        dist = np.sqrt((diff**2).sum(axis=1))
        best = int(np.argmin(dist))
        material, n = table.label(best + 1)
        residual = float(dist[best])
        if material is None or n > MAX_LAYERS or residual > self.max_residual:
            return None
        layer_class = LayerClass.from_layers(n)
        if layer_class is None:
            return None
        return self._component_detection(
            comp,
            x0,
            y0,
            h,
            w,
            material=material,
            layer_class=layer_class,
            # clipped channels make the layer count ambiguous: halve the confidence
            confidence=float(math.exp(-residual / self.confidence_scale))
            * (0.5 if clipped.any() else 1.0),
            layer_count=n,
            rel_colour=med,
        )

    def _saturated_detection(
        self,
        comp: np.ndarray,
        rel: np.ndarray,
        table: ColourTable,
        x0: int,
        y0: int,
        h: int,
        w: int,
    ) -> Detection | None:
        """A region whose every channel is clipped: only a lower bound on its colour is known.

        The candidates are the table colours at least as bright as the clip level in all three
        channels. When some of them are thick (11..40 layers) the region is reported as a thick
        flake of the material with most such candidates, ``layer_count`` None (the count is not
        measurable) and the low ``saturated_confidence``: a clipped region may equally be bulk.
        """
        bound = np.median(rel[comp.astype(bool)], axis=0) * 0.98  # clip level relative to bg
        ok = np.all(table.relative_rgb >= bound[None, :], axis=1)
        ok &= (table.n_layers >= 1) & (table.n_layers <= MAX_LAYERS)
        rows = np.flatnonzero(ok)
        if rows.size == 0:
            return None
        counts = np.bincount(table.material_index[rows], minlength=len(table.materials))
        mi = int(np.argmax(counts))
        n_ok = table.n_layers[rows][table.material_index[rows] == mi]
        layer_class = LayerClass.THICK if (n_ok > 10).any() else LayerClass.FEW
        return self._component_detection(
            comp,
            x0,
            y0,
            h,
            w,
            material=table.materials[mi],
            layer_class=layer_class,
            confidence=self.saturated_confidence,
            layer_count=None,
            rel_colour=bound,
        )

    def _component_detection(
        self,
        comp: np.ndarray,
        x0: int,
        y0: int,
        h: int,
        w: int,
        *,
        material: str,
        layer_class: LayerClass,
        confidence: float,
        layer_count: int | None,
        rel_colour: np.ndarray,
    ) -> Detection:
        """The detection of one component ``comp`` (a crop at ``x0, y0`` of an ``h x w`` image)."""
        ys, xs = np.nonzero(comp)
        mask = np.zeros((h, w), dtype=bool)
        mask[ys + y0, xs + x0] = True
        c = rel_colour - 1.0  # Detection.contrast_rgb: C = I/I_substrate - 1
        return Detection(
            material=material,
            layer_class=layer_class,
            confidence=confidence,
            polygon_px=mask_polygon(comp, x0, y0, self.polygon_epsilon_px),
            bbox_px=(
                float(xs.min() + x0),
                float(ys.min() + y0),
                float(xs.max() + x0 + 1),
                float(ys.max() + y0 + 1),
            ),
            area_px=float(xs.size),
            layer_count=layer_count,
            contrast_rgb=(float(c[0]), float(c[1]), float(c[2])),
            mask=mask,
        )
