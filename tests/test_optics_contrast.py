"""Camera contrast model: validation against measured graphene contrasts, caching, inversion."""

from __future__ import annotations

import time

import numpy as np
import pytest

from flakefinder.optics import CameraModel, ContrastModel, get_contrast_model, planck_spectrum

# Uslu et al. (2024), graphene on 90 nm SiO2/Si, measured RGB contrast C = 1 - I/I_bg,
# given in the paper as (B, G, R) per layer count; stored here in R, G, B order.
USLU_RGB = {
    1: (0.138, 0.139, 0.068),
    2: (0.251, 0.262, 0.147),
    3: (0.350, 0.368, 0.215),
    4: (0.441, 0.461, 0.272),
}
SIX = ("graphene", "hBN", "MoS2", "WSe2", "MoSe2", "WTe2")


@pytest.mark.parametrize("na", [0.0, 0.55])
@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
@pytest.mark.parametrize(("channel", "index"), [("R", 0), ("G", 1)])
def test_graphene_contrast_matches_uslu_2024(
    na: float, n_layers: int, channel: str, index: int
) -> None:
    model = get_contrast_model(90.0, na)  # default CameraModel, Weber et al. graphene n + ik
    got = model.contrast("graphene", n_layers)[index]
    want = USLU_RGB[n_layers][index]
    assert abs(got / want - 1.0) < 0.10, f"{channel} {n_layers}L NA={na}: model {got:.3f} vs {want}"


def test_contrast_grows_with_thickness_for_few_layer_graphene() -> None:
    c = ContrastModel(90.0, 0.55).contrast_table("graphene", range(1, 6))
    assert np.all(np.diff(c, axis=0) > 0)


def test_small_na_nearly_equals_normal_incidence() -> None:
    c0 = ContrastModel(90.0, 0.0).contrast_table("MoS2", [1, 2, 5])
    c1 = ContrastModel(90.0, 0.05).contrast_table("MoS2", [1, 2, 5])
    np.testing.assert_allclose(c1, c0, atol=2e-3)


def test_relative_rgb_and_contrast_are_consistent() -> None:
    m = ContrastModel()
    np.testing.assert_allclose(m.contrast("hBN", 7), 1.0 - m.relative_rgb("hBN", 7))
    np.testing.assert_allclose(m.relative_rgb("graphene", 0), np.ones(3))
    table = m.contrast_table("WSe2", [3, 1, 3])
    assert table.shape == (3, 3)
    np.testing.assert_array_equal(table[0], table[2])
    np.testing.assert_array_equal(table[1], m.contrast("WSe2", 1))
    assert m.contrast_table("WSe2", []).shape == (0, 3)


def test_results_are_cached_and_protected() -> None:
    m = ContrastModel(90.0, 0.55)
    a = m.relative_rgb("MoSe2", 4)
    a[:] = 0.0  # the caller's copy; the cache must not change
    b = m.relative_rgb("MoSe2", 4)
    assert np.all(b > 0)
    assert ("MoSe2", 4) in m._cache
    assert get_contrast_model(90.0, 0.55) is get_contrast_model(90.0, 0.55)


def test_full_table_is_fast() -> None:
    m = ContrastModel(90.0, 0.55)
    for name in SIX:  # load the package data once (file parsing is not part of the budget)
        m.relative_rgb(name, 1)
    t0 = time.process_time()
    for name in SIX:
        assert m.contrast_table(name, range(1, 41)).shape == (40, 3)
    assert time.process_time() - t0 < 1.0
    t0 = time.process_time()
    for name in SIX:
        m.contrast_table(name, range(1, 41))
    assert time.process_time() - t0 < 0.05


def test_substrate_rgb() -> None:
    m = ContrastModel(90.0, 0.0)
    rgb = m.substrate_rgb()
    assert rgb.shape == (3,)
    assert np.all((rgb > 0.05) & (rgb < 0.5))
    np.testing.assert_allclose(rgb, m.camera.signal(m.substrate_reflectance))
    # 90 nm oxide looks blue-violet: its reflectance minimum (~520 nm) is in red/green, not blue
    assert rgb[2] > 1.3 * max(rgb[0], rgb[1])
    assert not np.allclose(ContrastModel(285.0).substrate_rgb(), rgb)


@pytest.mark.parametrize("name", SIX)
@pytest.mark.parametrize("na", [0.0, 0.55])
def test_estimate_layers_recovers_noiseless_input(name: str, na: float) -> None:
    m = get_contrast_model(90.0, na)
    for n in range(1, 16):
        got, residual = m.estimate_layers(name, m.relative_rgb(name, n), max_layers=40)
        assert got == n
        assert residual == pytest.approx(0.0, abs=1e-12)


def test_estimate_layers_nearest_and_validation() -> None:
    m = ContrastModel()
    target = m.relative_rgb("graphene", 3) + np.array([0.002, -0.001, 0.0])
    n, residual = m.estimate_layers("graphene", target, max_layers=10)
    assert n == 3 and residual == pytest.approx(np.sqrt(0.002**2 + 0.001**2))
    with pytest.raises(ValueError, match="3 finite numbers"):
        m.estimate_layers("graphene", [1.0, 0.9])
    with pytest.raises(ValueError, match="non-negative integer"):
        m.relative_rgb("graphene", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numerical_aperture"):
        ContrastModel(90.0, 1.0)


def test_camera_model() -> None:
    cam = CameraModel()
    wl = cam.wavelengths_nm
    assert wl[0] == 400.0 and wl[-1] == 750.0 and wl.size == 176
    assert np.argmax(cam.responses[0]) == np.argmin(abs(wl - 600.0))
    np.testing.assert_allclose(cam.signal(np.ones(wl.size)), np.ones(3))
    np.testing.assert_allclose(cam.weights.sum(axis=1), np.ones(3))
    # 3200 K halogen: more red than blue
    e = planck_spectrum(wl, 3200.0)
    assert e[-1] > e[0] and e.max() == 1.0
    with pytest.raises(ValueError, match="wavelengths in its last axis"):
        cam.signal(np.ones(10))
    assert hash(cam) == hash(CameraModel())
