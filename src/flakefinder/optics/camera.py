"""A colour camera behind a microscope: illuminant spectrum and R, G, B spectral responses.

The channel responses are Gaussian approximations of a typical CMOS colour sensor with a Bayer
filter and an IR-cut filter (e.g. Sony IMX-series machine-vision cameras): red peaking near 600 nm,
green near 535 nm and blue near 460 nm, each with a full width at half maximum of ~80-100 nm. The
illuminant is a Planck black body (a halogen lamp at 3200 K by default). All integrals run on a
uniform wavelength grid (400-750 nm in 2 nm steps by default; the IR-cut filter removes the rest).

The camera signal of channel c for a spectral reflectance R(l) is

    S_c = sum_l  E(l) R(l) s_c(l) dl  /  sum_l E(l) s_c(l) dl

i.e. normalised so that a perfect mirror (R = 1) gives S_c = 1. White balance on the bare
substrate then gives relative colours I_flake / I_substrate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["CameraModel", "planck_spectrum"]

_H = 6.62607015e-34  # J s
_C = 2.99792458e8  # m / s
_KB = 1.380649e-23  # J / K


def planck_spectrum(wavelength_nm: ArrayLike, temperature_k: float) -> np.ndarray:
    """Black-body spectral radiance (arbitrary units, peak of the given grid = 1)."""
    if temperature_k <= 0:
        raise ValueError(f"colour temperature must be positive, got {temperature_k} K")
    lam = np.asarray(wavelength_nm, dtype=float) * 1e-9
    b = lam**-5 / np.expm1(_H * _C / (lam * _KB * temperature_k))
    return cast("np.ndarray", b / b.max())


def _gaussian(wl: np.ndarray, peak_nm: float, fwhm_nm: float) -> np.ndarray:
    sigma = fwhm_nm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return cast("np.ndarray", np.exp(-0.5 * ((wl - peak_nm) / sigma) ** 2))


@dataclass(frozen=True)
class CameraModel:
    """Spectral model of illuminant + colour camera (R, G, B order everywhere)."""

    red_peak_nm: float = 600.0
    green_peak_nm: float = 535.0
    blue_peak_nm: float = 460.0
    red_fwhm_nm: float = 80.0
    green_fwhm_nm: float = 90.0
    blue_fwhm_nm: float = 80.0
    illuminant_temperature_k: float = 3200.0
    wavelength_min_nm: float = 400.0
    wavelength_max_nm: float = 750.0
    wavelength_step_nm: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.wavelength_min_nm < self.wavelength_max_nm:
            raise ValueError(
                "camera wavelength grid needs 0 < wavelength_min_nm < wavelength_max_nm"
            )
        if self.wavelength_step_nm <= 0:
            raise ValueError("camera wavelength_step_nm must be positive")
        if min(self.red_fwhm_nm, self.green_fwhm_nm, self.blue_fwhm_nm) <= 0:
            raise ValueError("camera channel widths (fwhm) must be positive")
        if self.illuminant_temperature_k <= 0:
            raise ValueError("illuminant_temperature_k must be positive")

    @cached_property
    def wavelengths_nm(self) -> np.ndarray:
        """The integration grid (inclusive of both ends)."""
        n = int(round((self.wavelength_max_nm - self.wavelength_min_nm) / self.wavelength_step_nm))
        wl = np.linspace(
            self.wavelength_min_nm, self.wavelength_min_nm + n * self.wavelength_step_nm, n + 1
        )
        wl.setflags(write=False)
        return wl

    @cached_property
    def responses(self) -> np.ndarray:
        """Channel sensitivities s_c(l), shape (3, W), peak 1."""
        wl = self.wavelengths_nm
        resp = np.stack(
            [
                _gaussian(wl, self.red_peak_nm, self.red_fwhm_nm),
                _gaussian(wl, self.green_peak_nm, self.green_fwhm_nm),
                _gaussian(wl, self.blue_peak_nm, self.blue_fwhm_nm),
            ]
        )
        resp.setflags(write=False)
        return resp

    @cached_property
    def illuminant(self) -> np.ndarray:
        """Illuminant spectrum E(l) on the grid (Planck, peak 1 on the grid)."""
        e = planck_spectrum(self.wavelengths_nm, self.illuminant_temperature_k)
        e.setflags(write=False)
        return e

    @cached_property
    def weights(self) -> np.ndarray:
        """Normalised weights E(l) s_c(l) dl, shape (3, W); each row sums to 1."""
        w = self.illuminant[None, :] * self.responses
        w = w / w.sum(axis=1, keepdims=True)
        w.setflags(write=False)
        return cast("np.ndarray", w)

    def signal(self, reflectance: ArrayLike) -> np.ndarray:
        """Camera signal (..., 3) of spectral reflectance (..., W) on :attr:`wavelengths_nm`.

        A perfect mirror gives (1, 1, 1).
        """
        r = np.asarray(reflectance, dtype=float)
        if r.shape[-1:] != self.wavelengths_nm.shape:
            raise ValueError(
                f"reflectance must have {self.wavelengths_nm.size} wavelengths in its last axis, "
                f"got shape {r.shape}"
            )
        return cast("np.ndarray", r @ self.weights.T)
