"""refractiveindex.info parsing: tabulated and formula types, ranges, malformed files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from flakefinder.errors import WavelengthRangeError
from flakefinder.optics import NKFormatError, dispersion_formula, load_nk, load_package_nk, parse_nk

HEADER = "# test\nREFERENCES: test\n"


def _write(tmp_path: Path, body: str, name: str = "x.yml") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + body, encoding="utf-8")
    return p


def test_malitson_formula_1_by_hand() -> None:
    # Sellmeier of fused silica at 0.5 um, written out by hand from the coefficients in the file.
    lam2 = 0.5**2
    n2 = (
        1.0
        + 0.6961663 * lam2 / (lam2 - 0.0684043**2)
        + 0.4079426 * lam2 / (lam2 - 0.1162414**2)
        + 0.8974794 * lam2 / (lam2 - 9.896161**2)
    )
    nk = load_package_nk("SiO2/Malitson.yml")
    assert nk.range_nm == pytest.approx((210.0, 6700.0))
    value = nk.nk(np.array([500.0]))[0]
    assert value.real == pytest.approx(math.sqrt(n2), abs=1e-12)
    assert value.real == pytest.approx(1.4623264867, abs=1e-9)
    assert value.imag == 0.0


def test_rah_formula_2_by_hand() -> None:
    nk = load_package_nk("hBN/Rah-o.yml")
    lam2 = 0.6**2
    expected = math.sqrt(1.0 + 3.3361 * lam2 / (lam2 - 0.026322))
    assert nk.nk(600.0).real == pytest.approx(expected, abs=1e-12)
    assert nk.nk(600.0).real == pytest.approx(2.1445900211, abs=1e-9)
    assert nk.nk(400.0).real > nk.nk(750.0).real  # normal dispersion; range ends inclusive


def test_tabulated_nk_interpolates_linearly(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "DATA:\n  - type: tabulated nk\n    data: |\n        0.50 2.0 0.5\n        0.40 1.0 0.1\n"
        "        0.60 3.0 1.5\n",
    )
    nk = load_nk(p)
    assert nk.range_nm == (400.0, 600.0)
    got = nk.nk(np.array([400.0, 450.0, 550.0, 600.0]))
    np.testing.assert_allclose(got, [1 + 0.1j, 1.5 + 0.3j, 2.5 + 1.0j, 3 + 1.5j], atol=1e-14)
    assert nk.nk(np.zeros((2, 0))).shape == (2, 0)
    assert nk.nk(np.full((2, 3), 500.0)).shape == (2, 3)


def test_tabulated_n_and_k_entries_combine(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "DATA:\n  - type: tabulated n\n    data: |\n        0.3 2.0\n        0.8 3.0\n"
        "  - type: tabulated k\n    data: |\n        0.4 0.0\n        0.9 1.0\n",
    )
    nk = load_nk(p)
    assert nk.range_nm == pytest.approx((400.0, 800.0))
    assert nk.nk(600.0) == pytest.approx(2.6 + 0.4j, abs=1e-12)


def test_tabulated_n_only_is_lossless(tmp_path: Path) -> None:
    p = _write(
        tmp_path, "DATA:\n  - type: tabulated n\n    data: |\n        0.3 2.0\n        0.8 3.0\n"
    )
    assert load_nk(p).nk(550.0) == pytest.approx(2.5 + 0.0j)


@pytest.mark.parametrize(
    ("number", "coeffs", "lam", "expected"),
    [
        (3, [2.0, 0.5, 2.0], 0.6, math.sqrt(2.0 + 0.5 * 0.36)),
        (
            4,
            [2.0, 0.5, 2.0, 0.2, 2.0, 0.0, 0.0, 0.0, 0.0, 0.1, 1.0],
            0.6,
            math.sqrt(2.0 + 0.5 * 0.36 / (0.36 - 0.04) + 0.1 * 0.6),
        ),
        (5, [1.5, 0.01, -2.0], 0.5, 1.5 + 0.01 / 0.25),
        (6, [0.0, 0.05, 200.0], 0.5, 1.0 + 0.05 / (200.0 - 4.0)),
        (
            7,
            [1.5, 0.01, 0.001, -0.002, 0.0, 0.0],
            0.5,
            1.5 + 0.01 / (0.25 - 0.028) + 0.001 / (0.25 - 0.028) ** 2 - 0.002 * 0.25,
        ),
        (
            8,
            [0.2, 0.05, 0.01, 0.0],
            0.5,
            math.sqrt((1 + 2 * (0.2 + 0.05 * 0.25 / 0.24)) / (1 - (0.2 + 0.05 * 0.25 / 0.24))),
        ),
        (
            9,
            [2.0, 0.1, 0.01, 0.2, 0.3, 0.05],
            0.5,
            math.sqrt(2.0 + 0.1 / 0.24 + 0.2 * 0.2 / (0.04 + 0.05)),
        ),
    ],
)
def test_formulas_3_to_9(number: int, coeffs: list[float], lam: float, expected: float) -> None:
    assert dispersion_formula(number, np.array(coeffs), np.array(lam)) == pytest.approx(
        expected, abs=1e-12
    )
    text = (
        f"DATA:\n  - type: formula {number}\n    wavelength_range: 0.3 1.0\n"
        f"    coefficients: {' '.join(str(c) for c in coeffs)}\n"
    )
    assert parse_nk(text).nk(lam * 1000.0).real == pytest.approx(expected, abs=1e-12)


def test_formula_with_tabulated_k(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "DATA:\n  - type: formula 2\n    wavelength_range: 0.4 1.6\n    coefficients: 0 3.3361 0.026322\n"
        "  - type: tabulated k\n    data: |\n        0.35 0.1\n        0.75 0.1\n",
    )
    nk = load_nk(p)
    assert nk.range_nm == pytest.approx((400.0, 750.0))
    assert nk.nk(600.0) == pytest.approx(2.1445900211 + 0.1j, abs=1e-9)


def test_wavelength_range_error_names_file_and_range() -> None:
    nk = load_package_nk("graphene/Weber.yml")
    with pytest.raises(WavelengthRangeError) as info:
        nk.nk(np.array([500.0, 1200.0]))
    msg = str(info.value)
    assert "nkdata/graphene/Weber.yml" in msg
    assert "210.873-999.007 nm" in msg
    assert "1200 nm" in msg
    with pytest.raises(WavelengthRangeError, match="nan"):
        nk.nk(float("nan"))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("DATA: [\n", "not valid YAML"),
        ("COMMENTS: none\n", "no 'DATA' list"),
        ("DATA:\n  - type: tabulated nk\n    data: |\n        0.4 1.0\n", "at least 2 rows"),
        (
            "DATA:\n  - type: tabulated nk\n    data: |\n        0.4 1 x\n        0.5 1 0\n",
            "non-number",
        ),
        ("DATA:\n  - type: tabulated spline\n    data: '0 1'\n", "unsupported DATA type"),
        ("DATA:\n  - type: formula 12\n    wavelength_range: 0.4 1\n    coefficients: 1\n", "1..9"),
        ("DATA:\n  - type: formula 1\n    coefficients: 1 2\n", "wavelength_range"),
        (
            "DATA:\n  - type: tabulated k\n    data: |\n        0.4 0.0\n        0.5 0.1\n",
            "no refractive index n",
        ),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path: Path, body: str, fragment: str) -> None:
    p = _write(tmp_path, body, name="bad.yml")
    with pytest.raises(NKFormatError, match=fragment) as info:
        load_nk(p)
    assert "bad.yml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NKFormatError, match="cannot read"):
        load_nk(tmp_path / "missing.yml")
