"""Registry of 2D materials and substrate media with their optical constants.

Optical constants come from refractiveindex.info files shipped as package data under
``flakefinder/optics/nkdata/`` (see the README there for the references). A flake of N layers is
modelled as one isotropic film of thickness ``N * layer_thickness_nm`` with the in-plane (ordinary)
bulk optical constants; where a monolayer measurement exists it is used for N = 1.

Layer thicknesses are interlayer spacings c/2 of the bulk crystals at room temperature:
graphene 0.335 nm (graphite, c = 6.70 A; e.g. Blake et al., Appl. Phys. Lett. 91, 063124 (2007)),
hBN 0.333 nm (c = 6.66 A; R. S. Pease, Acta Cryst. 5, 356 (1952)),
MoS2 0.615 nm (c = 12.30 A; Wakabayashi et al., Phys. Rev. B 11, 1540 (1975)),
MoSe2 0.646 nm (c = 12.93 A; Bronsema et al., Z. Anorg. Allg. Chem. 540, 15 (1986)),
WSe2 0.65 nm (c = 12.98 A; Schutte et al., J. Solid State Chem. 70, 207 (1987)),
WTe2 0.703 nm (Td, c = 14.06 A; Mar et al., J. Am. Chem. Soc. 114, 8963 (1992)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import cast

import numpy as np

from flakefinder.errors import UnknownMaterialError
from flakefinder.optics.nk import NKData, parse_nk

__all__ = [
    "Material",
    "get_material",
    "load_package_nk",
    "material_names",
    "oxide_nk",
    "silicon_nk",
]

SILICON_NK_FILE = "Si/Schinke.yml"
OXIDE_NK_FILE = "SiO2/Malitson.yml"


@cache
def load_package_nk(relative_path: str) -> NKData:
    """Load ``nkdata/<relative_path>`` shipped with flakefinder (cached)."""
    ref = resources.files("flakefinder.optics").joinpath("nkdata")
    for part in relative_path.split("/"):
        ref = ref.joinpath(part)
    if not ref.is_file():
        raise FileNotFoundError(f"optical-constant file nkdata/{relative_path} is not installed")
    return parse_nk(ref.read_text(encoding="utf-8"), source=f"nkdata/{relative_path}")


def silicon_nk(wavelength_nm: np.ndarray) -> np.ndarray:
    """Crystalline Si (Schinke et al. 2015)."""
    return load_package_nk(SILICON_NK_FILE).nk(wavelength_nm)


def oxide_nk(wavelength_nm: np.ndarray) -> np.ndarray:
    """Thermal SiO2 approximated by fused silica (Malitson 1965 Sellmeier)."""
    return load_package_nk(OXIDE_NK_FILE).nk(wavelength_nm)


@dataclass(frozen=True)
class Material:
    """A layered crystal. ``nk_files`` are averaged in permittivity (in-plane anisotropy)."""

    name: str
    display_name: str
    layer_thickness_nm: float
    nk_files: tuple[str, ...]
    monolayer_nk_file: str | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""

    def thickness_nm(self, n_layers: int) -> float:
        return float(n_layers) * self.layer_thickness_nm

    def nk(self, wavelength_nm: np.ndarray, n_layers: int | None = None) -> np.ndarray:
        """Complex n + ik of an ``n_layers`` flake (monolayer data for 1 layer when available)."""
        if n_layers == 1 and self.monolayer_nk_file is not None:
            return load_package_nk(self.monolayer_nk_file).nk(wavelength_nm)
        if len(self.nk_files) == 1:
            return load_package_nk(self.nk_files[0]).nk(wavelength_nm)
        eps = np.mean([load_package_nk(f).nk(wavelength_nm) ** 2 for f in self.nk_files], axis=0)
        return cast("np.ndarray", np.sqrt(eps))

    @property
    def range_nm(self) -> tuple[float, float]:
        files = self.nk_files + ((self.monolayer_nk_file,) if self.monolayer_nk_file else ())
        ranges = [load_package_nk(f).range_nm for f in files]
        return max(r[0] for r in ranges), min(r[1] for r in ranges)


_MATERIALS: tuple[Material, ...] = (
    Material(
        "graphene",
        "Graphene",
        0.335,
        ("graphene/Weber.yml",),
        aliases=("gr", "graphene_mono"),
        note="Weber et al. 2010, exfoliated graphene on 98 nm SiO2/Si; used for every N",
    ),
    Material(
        "hBN",
        "hexagonal boron nitride",
        0.333,
        ("hBN/Rah-o.yml",),
        aliases=("h-bn", "boron nitride", "bn"),
        note="Rah et al. 2019, ordinary ray, Sellmeier (formula 2)",
    ),
    Material(
        "MoS2",
        "MoS\u2082",
        0.615,
        ("MoS2/Munkhbat-o.yml",),
        monolayer_nk_file="MoS2/Hsu-1L.yml",
        note="bulk: Munkhbat et al. 2022 (o); 1L: Hsu et al. 2019",
    ),
    Material(
        "WSe2",
        "WSe\u2082",
        0.65,
        ("WSe2/Munkhbat-o.yml",),
        monolayer_nk_file="WSe2/Hsu-1L.yml",
        note="bulk: Munkhbat et al. 2022 (o); 1L: Hsu et al. 2019",
    ),
    Material(
        "MoSe2",
        "MoSe\u2082",
        0.646,
        ("MoSe2/Munkhbat-o.yml",),
        monolayer_nk_file="MoSe2/Hsu-1L.yml",
        note="bulk: Munkhbat et al. 2022 (o); 1L: Hsu et al. 2019",
    ),
    Material(
        "WTe2",
        "WTe\u2082",
        0.703,
        ("WTe2/Munkhbat-alpha.yml", "WTe2/Munkhbat-beta.yml"),
        aliases=("td-wte2",),
        note="Munkhbat et al. 2022, mean permittivity of the two in-plane axes (alpha, beta)",
    ),
    Material(
        "graphite",
        "Graphite",
        0.335,
        ("graphite/Song-cHOPG-o.yml",),
        aliases=("hopg",),
        note="Song et al. 2018, HOPG ordinary ray (for bulk / thick carbon flakes)",
    ),
)

_BY_KEY: dict[str, Material] = {}
for _m in _MATERIALS:
    for _key in (_m.name, *_m.aliases):
        _BY_KEY[_key.lower()] = _m


def material_names() -> tuple[str, ...]:
    """Canonical names of all known materials (graphene, hBN, MoS2, WSe2, MoSe2, WTe2, graphite)."""
    return tuple(m.name for m in _MATERIALS)


def get_material(name: str | Material) -> Material:
    """Look up a material by name or alias, case-insensitively (``"Graphene"``, ``"h-BN"``)."""
    if isinstance(name, Material):
        return name
    key = str(name).strip().lower()
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownMaterialError(
            f"unknown material {name!r}; known materials: {', '.join(material_names())}"
        ) from None
