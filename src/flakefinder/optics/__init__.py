"""flakefinder.optics: optical constants, thin-film reflectance and the camera contrast of flakes.

numpy / scipy / pyyaml only. Submodules are imported lazily on first attribute access::

    from flakefinder.optics import ContrastModel
    ContrastModel(oxide_thickness_nm=90.0, numerical_aperture=0.55).contrast("graphene", 1)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "NKData": "nk",
    "NKFormatError": "nk",
    "dispersion_formula": "nk",
    "load_nk": "nk",
    "parse_nk": "nk",
    "Material": "materials",
    "get_material": "materials",
    "material_names": "materials",
    "load_package_nk": "materials",
    "silicon_nk": "materials",
    "oxide_nk": "materials",
    "airy_reflection": "tmm",
    "na_quadrature": "tmm",
    "reflectance": "tmm",
    "reflectance_na": "tmm",
    "reflection_coefficient": "tmm",
    "CameraModel": "camera",
    "planck_spectrum": "camera",
    "ContrastModel": "contrast",
    "get_contrast_model": "contrast",
}

__all__ = [
    "CameraModel",
    "ContrastModel",
    "Material",
    "NKData",
    "NKFormatError",
    "airy_reflection",
    "dispersion_formula",
    "get_contrast_model",
    "get_material",
    "load_nk",
    "load_package_nk",
    "material_names",
    "na_quadrature",
    "oxide_nk",
    "parse_nk",
    "planck_spectrum",
    "reflectance",
    "reflectance_na",
    "reflection_coefficient",
    "silicon_nk",
]

if TYPE_CHECKING:
    from flakefinder.optics.camera import CameraModel, planck_spectrum
    from flakefinder.optics.contrast import ContrastModel, get_contrast_model
    from flakefinder.optics.materials import (
        Material,
        get_material,
        load_package_nk,
        material_names,
        oxide_nk,
        silicon_nk,
    )
    from flakefinder.optics.nk import NKData, NKFormatError, dispersion_formula, load_nk, parse_nk
    from flakefinder.optics.tmm import (
        airy_reflection,
        na_quadrature,
        reflectance,
        reflectance_na,
        reflection_coefficient,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flakefinder.optics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flakefinder.optics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
