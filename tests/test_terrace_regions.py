"""Label-image steps of the terrace segmentation (:mod:`flakefinder.detect.terrace.regions`)."""

from __future__ import annotations

import numpy as np

from flakefinder.detect.terrace.regions import RegionSettings, _absorb_rims, _cut_necks


def _lobes() -> np.ndarray:
    lab = np.zeros((60, 120), np.int32)
    lab[10:40, 10:40] = 1  # lobe A
    lab[24:26, 40:70] = 1  # a 2-pixel neck ...
    lab[10:40, 70:100] = 1  # ... to lobe B
    lab[45:47, 10:60] = 2  # a band 2 pixels wide: nothing survives
    lab[50:58, 100:118] = 3  # a compact terrace
    lab[53:55, 90:100] = 3  # with a thin tail
    return lab


def test_cut_necks_splits_lobes_and_drops_bands() -> None:
    out = _cut_necks(_lobes(), 2)
    a, b, c = out[25, 25], out[25, 85], out[54, 110]
    assert len({int(a), int(b), int(c)}) == 3 and min(a, b, c) > 0  # three terraces
    assert not out[24:26, 45:65].any()  # the neck is cut
    assert not out[45:47].any()  # the band is gone
    assert not out[53:55, 90:99].any()  # and so is the tail
    for lab_, (ys, xs) in ((a, np.s_[10:40, 10:40]), (b, np.s_[10:40, 70:100])):
        assert (out[ys, xs] == lab_).sum() >= 0.98 * 900  # a lobe loses at most its corners
    assert set(np.unique(out)) == {0, int(a), int(b), int(c)}


def test_cut_necks_drops_small_fragments_and_keeps_radius_zero() -> None:
    lab = np.zeros((50, 80), np.int32)
    lab[5:45, 5:45] = 1  # main part, 1600 px
    lab[24:26, 45:55] = 1  # neck
    lab[20:30, 55:65] = 1  # a 100 px knob: under a quarter of the main part
    out = _cut_necks(lab, 2)
    assert out[25, 25] > 0 and not out[20:30, 55:65].any()
    assert np.array_equal(_cut_necks(lab, 0), lab)


def _ring(core_c: float, band_c: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    lab = np.zeros((80, 80), np.int32)
    lab[20 - width : 60 + width, 20 - width : 60 + width] = 2  # band all round the core
    lab[20:60, 20:60] = 1
    lc = np.zeros((80, 80, 3), np.float32)
    lc[lab == 1] = (core_c, core_c, core_c / 2)
    lc[lab == 2] = (band_c, band_c * 1.2, band_c / 2)
    return lab, lc


def test_a_rim_of_nearly_the_core_colour_joins_the_core() -> None:
    valid = np.ones(3, bool)
    lab, lc = _ring(-0.4, -0.35, 4)
    out = _absorb_rims(lab, lc, valid, RegionSettings())
    assert set(np.unique(out)) == {0, 1}
    assert (out == 1).sum() == 48 * 48


def test_a_wide_band_or_one_of_another_colour_stays_a_terrace() -> None:
    valid = np.ones(3, bool)
    for core_c, band_c, width in ((-0.4, -0.35, 12), (-0.4, -0.1, 4)):
        lab, lc = _ring(core_c, band_c, width)
        out = _absorb_rims(lab, lc, valid, RegionSettings())
        assert np.array_equal(out, lab), (core_c, band_c, width)


def test_a_faint_region_crossed_by_edge_lines_is_residue_but_a_dark_flake_is_not() -> None:
    from flakefinder.detect.terrace.features import (
        FeatureLimits,
        TerraceFeatures,
        measure,
        rejection_reason,
    )

    comp = np.zeros((40, 40), bool)
    comp[5:35, 5:35] = True  # a 30 x 30 region: its interior (2 px in) is 26 x 26
    lines = np.zeros((40, 40), bool)
    lines[::3, :] = True  # every third row an edge line: a third of the interior
    valid = np.ones(3, bool)
    labels = comp.astype(np.int32)
    lab_mean = np.zeros((2, 3))

    def features(level: float, with_lines: bool) -> TerraceFeatures:
        lc = np.where(comp[:, :, None], np.float32(level), np.float32(0)) * np.ones(3, np.float32)
        return measure(comp, lc, valid, np.zeros((40, 40), bool), labels, lab_mean, False,
                       lines if with_lines else None)

    faint = features(-0.08, True)
    assert faint.edge_share == (lines[7:33, 7:33]).mean()
    assert rejection_reason(faint, valid, FeatureLimits()) == "residue"
    flat = features(-0.08, False)
    assert flat.edge_share == 0.0 and rejection_reason(flat, valid, FeatureLimits()) is None
    dark = features(-0.9, True)  # noisy log contrast draws lines in a dark flake: not residue
    assert rejection_reason(dark, valid, FeatureLimits()) is None
