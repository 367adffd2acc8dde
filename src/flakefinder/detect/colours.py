"""Predicted flake colours from the thin-film optics model, cached, and nearest-colour look-ups.

numpy and cv2 (plus :mod:`flakefinder.optics`). Shared by the contrast detector, the rule-based
detector and :func:`flakefinder.detect.refine.refine_layer_count`, so every detector matches
colours the same way.

Colours are *relative* RGB: ``I_flake / I_substrate`` per channel in linear light, exactly what
``ContrastModel.relative_rgb`` returns. The residual of a match is the Euclidean distance between
the measured and the predicted relative RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_LAYERS = 40  # thickest flake that still gets a layer class ("thick" ends at 40)
BULK_LAYERS = 80  # extra table entries 41..BULK_LAYERS let bulk crystals match (and be dropped)


@lru_cache(maxsize=16)
def _gamma_lut(gamma: float) -> np.ndarray:
    return ((np.arange(256, dtype=np.float64) / 255.0) ** float(gamma)).astype(np.float32)


def linearize(image: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """uint8 camera values -> float32 linear light in 0..1 (``stored = linear ** (1/gamma)``)."""
    if image.dtype != np.uint8:
        return np.asarray(image, dtype=np.float32)
    lut = _gamma_lut(float(gamma))
    if image.ndim in (2, 3) and image.size > 0 and (image.ndim == 2 or image.shape[2] <= 4):
        return cv2.LUT(image, lut)  # same values as lut[image], several times faster
    return cast("np.ndarray", lut[image])


def encode(linear: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Inverse of :func:`linearize` without rounding: linear 0..1 -> camera values 0..255."""
    return 255.0 * np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0) ** (1.0 / gamma)


@dataclass(frozen=True, eq=False)
class ColourTable:
    """Predicted relative RGB of every (material, layer count) candidate, row 0 = bare substrate."""

    materials: tuple[str, ...]
    relative_rgb: np.ndarray  # (T, 3) float32; row 0 is (1, 1, 1)
    material_index: np.ndarray  # (T,) int; -1 for the substrate row
    n_layers: np.ndarray  # (T,) int; 0 for the substrate row
    substrate_rgb: np.ndarray  # (3,) bare-substrate signal relative to a perfect mirror

    def __len__(self) -> int:
        return int(self.relative_rgb.shape[0])

    def nearest(
        self, rel: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest table row (among ``rows``, default all) for each colour in ``rel`` (N, 3).

        Returns (row index into the full table, Euclidean residual), both of shape (N,).

        The search ranks ``|r'|^2 - 2 x'.r'`` (``'``: minus the substrate colour 1, which keeps
        the terms small; one float32 matrix product); colours whose best rows are within rounding
        of a tie are re-ranked by the float32 squared distance, so the result is the row
        minimising ``((x - r) ** 2).sum()`` in float32 (the first one on exact ties).
        """
        cand = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        ref = self.relative_rgb[cand]  # (K, 3)
        x = np.asarray(rel, dtype=np.float32).reshape(-1, 3)
        out_idx = np.empty(x.shape[0], dtype=np.int64)
        out_res = np.empty(x.shape[0], dtype=np.float32)
        ref_c = ref - np.float32(1.0)
        ref_t = np.ascontiguousarray(np.float32(-2.0) * ref_c.T)  # (3, K)
        ref_n = (ref_c**2).sum(axis=1)  # (K,)
        tol_r = np.float32(1e-5) * ref_n
        step = max(1, 4_000_000 // max(1, ref.shape[0]))
        for s in range(0, x.shape[0], step):
            with np.errstate(invalid="ignore"):  # NaN / inf colours: no warning, row 0 as before
                k, close = self._rank(x[s : s + step] - np.float32(1.0), ref_t, ref_n, tol_r)
            xs = x[s : s + step]
            if close.any():
                d2 = ((xs[close, None, :] - ref[None, :, :]) ** 2).sum(axis=2)
                k[close] = np.argmin(d2, axis=1)
            out_idx[s : s + step] = cand[k]
            out_res[s : s + step] = np.sqrt(((xs - ref[k]) ** 2).sum(axis=1))
        return out_idx, out_res

    @staticmethod
    def _rank(
        xc: np.ndarray, ref_t: np.ndarray, ref_n: np.ndarray, tol_r: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best row per centred colour and whether a near-tie needs the exact float32 ranking."""
        score = xc @ ref_t
        score += ref_n
        k = np.argmin(score, axis=1)
        # Tie band per (colour, row): > 10x the float32 rounding of either ranking, which is a
        # few 1e-7 of |x'|^2 + |r'|^2 for each of the two rows compared.
        score -= score[np.arange(k.size), k][:, None]
        score -= tol_r
        band = np.float32(1e-5) * (np.float32(1e-3) + (xc**2).sum(axis=1) + ref_n[k])
        close = np.count_nonzero(score <= band[:, None], axis=1) > 1
        return k, close

    def rows_for(self, material: str) -> np.ndarray:
        """Row indices of ``material`` (all its layer counts, bulk included)."""
        if material not in self.materials:
            raise KeyError(f"material {material!r} not in the colour table {self.materials}")
        return np.flatnonzero(self.material_index == self.materials.index(material))

    def label(self, row: int) -> tuple[str | None, int]:
        """(material, n_layers) of a table row; (None, 0) for the substrate row."""
        mi = int(self.material_index[row])
        return (None if mi < 0 else self.materials[mi]), int(self.n_layers[row])


@lru_cache(maxsize=32)
def _colour_table_cached(
    oxide_thickness_nm: float,
    numerical_aperture: float,
    materials: tuple[str, ...],
    max_layers: int,
) -> ColourTable:
    from flakefinder.optics.contrast import ContrastModel

    model = ContrastModel(oxide_thickness_nm, numerical_aperture)
    counts = list(range(1, max_layers + 1))
    rel = [np.ones((1, 3))]
    mat = [np.array([-1])]
    nl = [np.array([0])]
    for i, m in enumerate(materials):
        c = np.asarray(model.contrast_table(m, counts), dtype=np.float64).reshape(-1, 3)
        rel.append(1.0 - c)
        mat.append(np.full(len(counts), i))
        nl.append(np.asarray(counts))
    table = ColourTable(
        materials=materials,
        relative_rgb=np.concatenate(rel).astype(np.float32),
        material_index=np.concatenate(mat).astype(np.int64),
        n_layers=np.concatenate(nl).astype(np.int64),
        substrate_rgb=np.asarray(model.substrate_rgb(), dtype=np.float64).reshape(3),
    )
    for a in (table.relative_rgb, table.material_index, table.n_layers, table.substrate_rgb):
        a.setflags(write=False)
    return table


def colour_table(
    oxide_thickness_nm: float,
    numerical_aperture: float,
    materials: Sequence[str],
    max_layers: int = BULK_LAYERS,
) -> ColourTable:
    """Cached table for layer counts 1..``max_layers`` of each material (one model per key)."""
    return _colour_table_cached(
        round(float(oxide_thickness_nm), 6),
        round(float(numerical_aperture), 6),
        tuple(materials),
        int(max_layers),
    )
