"""Optical contrast of 2D flakes on SiO2/Si as seen by a colour camera.

Stack: air / flake (N layers, one film of N * layer thickness) / SiO2 (``oxide_thickness_nm``) /
Si (semi-infinite). The spectral reflectance is averaged over the illumination cone of the objective
(``numerical_aperture``; 0 = normal incidence), weighted with the camera's channel responses and the
illuminant, and white-balanced on the bare substrate:

    relative_rgb = S(flake) / S(substrate),   contrast C = 1 - relative_rgb   (R, G, B order)

Validation (tests/test_optics_contrast.py): with the default :class:`CameraModel` and graphene
optical constants of Weber et al. (2010), the model reproduces the measured green and red contrasts of
graphene 1-4L on 90 nm SiO2 of Uslu et al. (2024) within 10 % both at NA = 0 and NA = 0.55.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from numbers import Integral
from typing import TYPE_CHECKING, cast

import numpy as np

from flakefinder.optics.camera import CameraModel
from flakefinder.optics.materials import Material, get_material, oxide_nk, silicon_nk
from flakefinder.optics.tmm import reflectance_na

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike

__all__ = ["ContrastModel", "get_contrast_model"]


def _check_layers(n_layers: object) -> int:
    if isinstance(n_layers, bool) or not isinstance(n_layers, Integral) or int(n_layers) < 0:
        raise ValueError(f"n_layers must be a non-negative integer, got {n_layers!r}")
    return int(n_layers)


class ContrastModel:
    """Camera colour of flakes relative to the bare substrate, cached per (material, layers)."""

    def __init__(
        self,
        oxide_thickness_nm: float = 90.0,
        numerical_aperture: float = 0.0,
        camera: CameraModel | None = None,
        *,
        n_angles: int = 8,
    ) -> None:
        if not (np.isfinite(oxide_thickness_nm) and oxide_thickness_nm >= 0):
            raise ValueError(f"oxide_thickness_nm must be >= 0, got {oxide_thickness_nm}")
        if not 0.0 <= numerical_aperture < 1.0:
            raise ValueError(f"numerical_aperture must be in [0, 1), got {numerical_aperture}")
        if n_angles < 1:
            raise ValueError(f"n_angles must be >= 1, got {n_angles}")
        self.oxide_thickness_nm = float(oxide_thickness_nm)
        self.numerical_aperture = float(numerical_aperture)
        self.camera = camera if camera is not None else CameraModel()
        self.n_angles = int(n_angles)
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"ContrastModel(oxide_thickness_nm={self.oxide_thickness_nm}, "
            f"numerical_aperture={self.numerical_aperture}, camera={self.camera!r})"
        )

    # -- spectra ---------------------------------------------------------------------------
    @property
    def wavelengths_nm(self) -> np.ndarray:
        return self.camera.wavelengths_nm

    @cached_property
    def _media(self) -> tuple[np.ndarray, np.ndarray]:
        wl = self.wavelengths_nm
        return oxide_nk(wl), silicon_nk(wl)

    def _spectra(self, film_n: np.ndarray | None, thickness_nm: np.ndarray) -> np.ndarray:
        """Reflectance (K, W) for films of the given thicknesses (K,) on the substrate."""
        ox, si = self._media
        layers: list[tuple[ArrayLike, ArrayLike]] = []
        if film_n is not None:
            layers.append((film_n, thickness_nm[:, None]))
        layers.append((ox, self.oxide_thickness_nm))
        r = reflectance_na(
            self.wavelengths_nm,
            layers,
            si,
            numerical_aperture=self.numerical_aperture,
            n_angles=self.n_angles,
        )
        return np.broadcast_to(r, (len(thickness_nm), r.shape[-1]))

    @cached_property
    def substrate_reflectance(self) -> np.ndarray:
        """Spectral reflectance of the bare SiO2/Si substrate on :attr:`wavelengths_nm`."""
        r = self._spectra(None, np.zeros(1))[0].copy()
        r.setflags(write=False)
        return cast("np.ndarray", r)

    @cached_property
    def _substrate_signal(self) -> np.ndarray:
        return self.camera.signal(self.substrate_reflectance)

    def reflectance_spectrum(self, material: str | Material, n_layers: int) -> np.ndarray:
        """Spectral reflectance (W,) of an ``n_layers`` flake on the substrate."""
        mat = get_material(material)
        n = _check_layers(n_layers)
        if n == 0:
            return self.substrate_reflectance.copy()
        film = mat.nk(self.wavelengths_nm, n_layers=n)
        return cast("np.ndarray", self._spectra(film, np.array([mat.thickness_nm(n)]))[0])

    # -- colours ---------------------------------------------------------------------------
    def _fill(self, mat: Material, counts: Iterable[int]) -> None:
        missing = sorted({n for n in counts if (mat.name, n) not in self._cache})
        if not missing:
            return
        groups: dict[bool, list[int]] = {}
        for n in missing:
            if n == 0:
                self._cache[(mat.name, 0)] = np.ones(3)
                continue
            groups.setdefault(n == 1 and mat.monolayer_nk_file is not None, []).append(n)
        for is_mono, ns in groups.items():
            film = mat.nk(self.wavelengths_nm, n_layers=1 if is_mono else None)
            thick = np.array([mat.thickness_nm(n) for n in ns])
            rel = self.camera.signal(self._spectra(film, thick)) / self._substrate_signal
            for n, row in zip(ns, rel, strict=True):
                row.setflags(write=False)
                self._cache[(mat.name, n)] = row

    def relative_rgb(self, material: str | Material, n_layers: int) -> np.ndarray:
        """I_flake / I_substrate per channel (R, G, B), white-balanced on the bare substrate."""
        mat = get_material(material)
        n = _check_layers(n_layers)
        self._fill(mat, (n,))
        return self._cache[(mat.name, n)].copy()

    def contrast(self, material: str | Material, n_layers: int) -> np.ndarray:
        """Optical contrast C = 1 - I_flake / I_substrate per channel (R, G, B)."""
        return 1.0 - self.relative_rgb(material, n_layers)

    def relative_table(self, material: str | Material, layer_counts: Iterable[int]) -> np.ndarray:
        """:meth:`relative_rgb` for each layer count, shape (N, 3)."""
        mat = get_material(material)
        counts = [_check_layers(n) for n in layer_counts]
        self._fill(mat, counts)
        if not counts:
            return np.zeros((0, 3))
        return np.stack([self._cache[(mat.name, n)] for n in counts])

    def contrast_table(self, material: str | Material, layer_counts: Iterable[int]) -> np.ndarray:
        """:meth:`contrast` for each layer count, shape (N, 3)."""
        return 1.0 - self.relative_table(material, layer_counts)

    def substrate_rgb(self) -> np.ndarray:
        """Camera signal of the bare substrate relative to a perfect (R = 1) mirror, (R, G, B)."""
        return self._substrate_signal.copy()

    def estimate_layers(
        self,
        material: str | Material,
        measured_relative_rgb: ArrayLike,
        max_layers: int = 40,
    ) -> tuple[int, float]:
        """Layer count 1..max_layers whose model colour is nearest (least squares over R, G, B).

        Returns ``(n_layers, residual)`` where the residual is the Euclidean distance in relative
        RGB between the measurement and the best model colour.
        """
        measured = np.asarray(measured_relative_rgb, dtype=float)
        if measured.shape != (3,) or not np.all(np.isfinite(measured)):
            raise ValueError(
                f"measured_relative_rgb must be 3 finite numbers (R, G, B), got {measured!r}"
            )
        if _check_layers(max_layers) < 1:
            raise ValueError("max_layers must be >= 1")
        table = self.relative_table(material, range(1, max_layers + 1))
        dist = np.sqrt(((table - measured) ** 2).sum(axis=1))
        best = int(np.argmin(dist))
        return best + 1, float(dist[best])


@lru_cache(maxsize=32)
def get_contrast_model(
    oxide_thickness_nm: float = 90.0,
    numerical_aperture: float = 0.0,
    camera: CameraModel | None = None,
) -> ContrastModel:
    """A shared :class:`ContrastModel` per parameter set, so callers share one cache."""
    return ContrastModel(oxide_thickness_nm, numerical_aperture, camera)
