"""Transfer-matrix reflectance against analytic formulas."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.optics import (
    airy_reflection,
    na_quadrature,
    oxide_nk,
    reflectance,
    reflectance_na,
    reflection_coefficient,
    silicon_nk,
)
from flakefinder.optics.tmm import Layer

WL = np.array([405.0, 450.0, 532.0, 600.0, 633.0, 700.0, 750.0])


@pytest.mark.parametrize("oxide_nm", [0.0, 90.0, 285.0, 300.0])
def test_bare_substrate_equals_airy_formula(oxide_nm: float) -> None:
    ox, si = oxide_nk(WL), silicon_nk(WL)
    r_tmm = reflection_coefficient(WL, [(ox, oxide_nm)], si)
    r_airy = airy_reflection(WL, ox, oxide_nm, si)
    np.testing.assert_allclose(r_tmm, r_airy, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        reflectance(WL, [(ox, oxide_nm)], si), np.abs(r_airy) ** 2, atol=1e-12
    )


def test_absorbing_film_equals_airy_formula() -> None:
    film = 2.6 + 1.3j
    r_tmm = reflection_coefficient(WL, [(film, 5.0)], 1.46)
    np.testing.assert_allclose(r_tmm, airy_reflection(WL, film, 5.0, 1.46), atol=1e-12)


def test_single_interface_fresnel_at_oblique_incidence() -> None:
    n = 1.5
    theta = np.deg2rad(40.0)
    cos_t = np.sqrt(1 - (np.sin(theta) / n) ** 2)
    rs = (np.cos(theta) - n * cos_t) / (np.cos(theta) + n * cos_t)
    rp = (n * np.cos(theta) - cos_t) / (n * np.cos(theta) + cos_t)
    s2 = np.sin(theta) ** 2
    assert reflectance(500.0, [], n, sin2_theta=s2, polarization="s") == pytest.approx(rs**2)
    assert reflectance(500.0, [], n, sin2_theta=s2, polarization="p") == pytest.approx(rp**2)
    # a zero-thickness layer changes nothing
    assert reflectance(500.0, [(3.0 + 0.5j, 0.0)], n, sin2_theta=s2, polarization="p") == (
        pytest.approx(rp**2)
    )


def test_lossless_stack_reflects_at_most_everything() -> None:
    r = reflectance(WL, [(2.2, 123.0), (1.46, 90.0)], 1.5, sin2_theta=0.3)
    assert np.all((r >= 0) & (r <= 1))


def test_thickness_broadcasting() -> None:
    ox, si = oxide_nk(WL), silicon_nk(WL)
    d = np.array([[0.0], [90.0], [285.0]])
    r = reflectance_na(WL, [(ox, d)], si, numerical_aperture=0.4)
    assert r.shape == (3, WL.size)
    for i, di in enumerate(d[:, 0]):
        np.testing.assert_allclose(
            r[i], reflectance_na(WL, [(ox, di)], si, numerical_aperture=0.4), atol=1e-14
        )


def test_na_zero_is_normal_incidence_and_small_na_is_close() -> None:
    ox, si = oxide_nk(WL), silicon_nk(WL)
    layers: list[Layer] = [(2.6 + 1.3j, 0.335), (ox, 90.0)]
    r0 = reflectance_na(WL, layers, si, numerical_aperture=0.0)
    np.testing.assert_allclose(r0, reflectance(WL, layers, si, polarization="s"), atol=1e-15)
    r_small = reflectance_na(WL, layers, si, numerical_aperture=0.05)
    np.testing.assert_allclose(r_small, r0, rtol=2e-3)
    assert not np.allclose(reflectance_na(WL, layers, si, numerical_aperture=0.8), r0, rtol=1e-2)


def test_na_quadrature_weights() -> None:
    u, w = na_quadrature(0.55, 8)
    assert w.sum() == pytest.approx(1.0)
    assert np.all((u > 0) & (u < 0.55**2))
    # integrates polynomials in u = sin^2 exactly: mean of u over [0, NA^2] is NA^2 / 2
    assert (w * u).sum() == pytest.approx(0.55**2 / 2)
    with pytest.raises(ValueError, match="numerical aperture"):
        na_quadrature(1.2)
    with pytest.raises(ValueError, match="polarization"):
        reflection_coefficient(500.0, [], 1.5, polarization="x")  # type: ignore[arg-type]
