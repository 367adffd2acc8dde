"""Transfer-matrix (characteristic-matrix) reflectance of thin-film stacks.

Stack, top to bottom: ambient (air) / film layers (complex n + ik, thickness in nm) / semi-infinite
substrate. Time convention exp(-i w t), so absorbing media have k >= 0. Everything broadcasts with
numpy: wavelengths, refractive indices, thicknesses and sin^2 of the incidence angle may be arrays of
any broadcast-compatible shapes (e.g. thickness of shape (K, 1) against W wavelengths gives (K, W)).

Objective aperture: an objective of numerical aperture NA illuminating its pupil uniformly sends
light in at all angles 0..asin(NA) with weight proportional to the pupil area, i.e. to
sin(t) cos(t) dt = d(sin^2 t) / 2. :func:`reflectance_na` therefore averages the incoherent
(intensity) reflectance of s and p light over u = sin^2 t uniformly on [0, NA^2] with Gauss-Legendre
quadrature. NA = 0 is normal incidence.

References: M. Born, E. Wolf, *Principles of Optics*, 7th ed., Sec. 1.6 (characteristic matrix);
P. Blake et al., Appl. Phys. Lett. 91, 063124 (2007) (graphene contrast, NA averaging).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Layer",
    "airy_reflection",
    "na_quadrature",
    "reflectance",
    "reflectance_na",
    "reflection_coefficient",
]

Layer = tuple[ArrayLike, ArrayLike]  # (complex refractive index, thickness in nm)
Polarization = Literal["s", "p"]


def _axial_index(n: np.ndarray, sin2: np.ndarray) -> np.ndarray:
    """q = n cos(theta) = sqrt(n^2 - n0^2 sin^2 theta0), on the branch with Im q >= 0."""
    q = np.sqrt(n * n - sin2 + 0j)
    return cast("np.ndarray", np.where(q.imag < 0, -q, q))


def _admittance(n: np.ndarray, q: np.ndarray, polarization: Polarization) -> np.ndarray:
    return q if polarization == "s" else n * n / q


def _coefficients(
    wavelength_nm: ArrayLike,
    layers: Sequence[Layer],
    substrate_n: ArrayLike,
    sin2_theta: ArrayLike,
    polarizations: tuple[Polarization, ...],
    ambient_n: float,
) -> list[np.ndarray]:
    """r for each polarization; the layer phases are shared between s and p."""
    for pol in polarizations:
        if pol not in ("s", "p"):
            raise ValueError(f"polarization must be 's' or 'p', got {pol!r}")
    wl = np.asarray(wavelength_nm, dtype=float)
    s2 = np.asarray(sin2_theta, dtype=float) * ambient_n**2  # (n0 sin t0)^2, conserved
    n0 = np.asarray(ambient_n, dtype=complex)
    ns = np.asarray(substrate_n, dtype=complex)
    q_s = _axial_index(ns, s2)
    # [B, C] = M_1 ... M_L [1, eta_s]; apply the matrices from the bottom layer upwards.
    shape = np.broadcast_shapes(q_s.shape, wl.shape)
    bc = [
        (np.ones(shape, dtype=complex), _admittance(ns, q_s, pol) * np.ones(shape))
        for pol in polarizations
    ]
    for n_layer, d_layer in reversed(layers):
        nj = np.asarray(n_layer, dtype=complex)
        qj = _axial_index(nj, s2)
        delta = (2.0 * np.pi / wl) * np.asarray(d_layer, dtype=float) * qj
        e = np.exp(1j * delta)  # |e| <= 1 because Im q >= 0
        e_inv = 1.0 / e
        cos_d = 0.5 * (e + e_inv)
        i_sin_d = 0.5 * (e - e_inv)  # i sin(delta)
        for k, pol in enumerate(polarizations):
            b, c = bc[k]
            eta = _admittance(nj, qj, pol)
            bc[k] = (cos_d * b - i_sin_d / eta * c, cos_d * c - i_sin_d * eta * b)
    out = []
    for (b, c), pol in zip(bc, polarizations, strict=True):
        eta0 = _admittance(n0, _axial_index(n0, s2), pol)
        out.append((eta0 * b - c) / (eta0 * b + c))
    return out


def reflection_coefficient(
    wavelength_nm: ArrayLike,
    layers: Sequence[Layer],
    substrate_n: ArrayLike,
    *,
    sin2_theta: ArrayLike = 0.0,
    polarization: Polarization = "s",
    ambient_n: float = 1.0,
) -> np.ndarray:
    """Complex amplitude reflection coefficient r of the stack (characteristic-matrix method).

    ``sin2_theta`` is sin^2 of the incidence angle in the ambient medium.
    """
    return _coefficients(
        wavelength_nm, layers, substrate_n, sin2_theta, (polarization,), ambient_n
    )[0]


def reflectance(
    wavelength_nm: ArrayLike,
    layers: Sequence[Layer],
    substrate_n: ArrayLike,
    *,
    sin2_theta: ArrayLike = 0.0,
    polarization: Polarization | Literal["unpolarized"] = "unpolarized",
    ambient_n: float = 1.0,
) -> np.ndarray:
    """Intensity reflectance |r|^2; ``"unpolarized"`` is the mean of s and p."""
    pols: tuple[Polarization, ...] = (
        ("s", "p") if polarization == "unpolarized" else (polarization,)
    )
    rs = _coefficients(wavelength_nm, layers, substrate_n, sin2_theta, pols, ambient_n)
    total = sum(r.real**2 + r.imag**2 for r in rs)
    return np.asarray(total) / len(rs)


@lru_cache(maxsize=64)
def na_quadrature(numerical_aperture: float, n_angles: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u = sin^2(theta) and weights (summing to 1) for the pupil average up to ``NA``."""
    na = float(numerical_aperture)
    if not 0.0 <= na < 1.0:
        raise ValueError(f"numerical aperture must be in [0, 1) in air, got {na}")
    if na == 0.0:
        return np.zeros(1), np.ones(1)
    x, w = np.polynomial.legendre.leggauss(int(n_angles))
    u = 0.5 * (x + 1.0) * na**2
    u.setflags(write=False)
    w = w / w.sum()
    w.setflags(write=False)
    return u, w


def reflectance_na(
    wavelength_nm: ArrayLike,
    layers: Sequence[Layer],
    substrate_n: ArrayLike,
    *,
    numerical_aperture: float = 0.0,
    n_angles: int = 8,
    ambient_n: float = 1.0,
) -> np.ndarray:
    """Unpolarized reflectance averaged over the illumination cone of an objective of aperture NA."""
    u, w = na_quadrature(float(numerical_aperture), int(n_angles))
    shapes = [np.shape(wavelength_nm), np.shape(substrate_n)]
    for n_layer, d_layer in layers:
        shapes += [np.shape(n_layer), np.shape(d_layer)]
    ndim = len(np.broadcast_shapes(*shapes))
    u_b = u.reshape((-1,) + (1,) * ndim)
    r = reflectance(wavelength_nm, layers, substrate_n, sin2_theta=u_b, ambient_n=ambient_n)
    return np.tensordot(w, r, axes=(0, 0))


def airy_reflection(
    wavelength_nm: ArrayLike, film_n: ArrayLike, film_thickness_nm: float, substrate_n: ArrayLike
) -> np.ndarray:
    """Analytic r = (r01 + r12 e^{2i delta}) / (1 + r01 r12 e^{2i delta}) of one film at normal incidence."""
    wl = np.asarray(wavelength_nm, dtype=float)
    n1 = np.asarray(film_n, dtype=complex)
    n2 = np.asarray(substrate_n, dtype=complex)
    r01 = (1.0 - n1) / (1.0 + n1)
    r12 = (n1 - n2) / (n1 + n2)
    phase = np.exp(2j * (2.0 * np.pi * n1 * film_thickness_nm / wl))
    return cast("np.ndarray", (r01 + r12 * phase) / (1.0 + r01 * r12 * phase))
