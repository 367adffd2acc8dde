"""Materials registry and the optical constants shipped as package data."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.errors import UnknownMaterialError
from flakefinder.optics import Material, get_material, material_names

LAYER_NM = {
    "graphene": 0.335,
    "hBN": 0.333,
    "MoS2": 0.615,
    "WSe2": 0.65,
    "MoSe2": 0.646,
    "WTe2": 0.703,
}


def test_material_names() -> None:
    names = material_names()
    assert names[:6] == ("graphene", "hBN", "MoS2", "WSe2", "MoSe2", "WTe2")
    assert "graphite" in names


@pytest.mark.parametrize("alias", ["graphene", "Graphene", "GRAPHENE", " graphene "])
def test_graphene_aliases(alias: str) -> None:
    assert get_material(alias).name == "graphene"


@pytest.mark.parametrize("alias", ["hBN", "h-BN", "hbn", "HBN"])
def test_hbn_aliases(alias: str) -> None:
    assert get_material(alias).name == "hBN"


def test_material_passthrough_and_frozen() -> None:
    m = get_material("mos2")
    assert get_material(m) is m
    assert isinstance(m, Material)
    with pytest.raises(AttributeError):
        m.layer_thickness_nm = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("name", "thickness"), sorted(LAYER_NM.items()))
def test_layer_thickness(name: str, thickness: float) -> None:
    m = get_material(name)
    assert m.layer_thickness_nm == thickness
    assert m.thickness_nm(3) == pytest.approx(3 * thickness)


def test_unknown_material_message_lists_known_names() -> None:
    with pytest.raises(UnknownMaterialError) as info:
        get_material("unobtainium")
    msg = str(info.value)
    assert msg.startswith("unknown material 'unobtainium'; known materials: ")
    for name in material_names():
        assert name in msg
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("name", material_names())
def test_package_data_covers_the_visible(name: str) -> None:
    m = get_material(name)
    lo, hi = m.range_nm
    assert lo <= 400.0 and hi >= 750.0
    wl = np.arange(400.0, 751.0, 2.0)
    for n_layers in (1, 2, None):
        nk = m.nk(wl, n_layers=n_layers)
        assert nk.shape == wl.shape
        assert np.all(nk.real > 0.5) and np.all(nk.imag >= 0)


def test_monolayer_data_used_for_one_layer_only() -> None:
    m = get_material("MoS2")
    wl = np.array([450.0, 620.0])
    assert m.monolayer_nk_file is not None
    assert not np.allclose(m.nk(wl, n_layers=1), m.nk(wl, n_layers=2))
    np.testing.assert_array_equal(m.nk(wl, n_layers=2), m.nk(wl))
