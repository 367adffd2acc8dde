"""Optical constants n + ik from refractiveindex.info YAML files.

The refractiveindex.info database (https://refractiveindex.info, CC0) stores each material as a YAML
file whose ``DATA`` list holds one or two entries; wavelengths are in micrometres. Supported types:

* ``tabulated nk`` (columns: wavelength, n, k), ``tabulated n``, ``tabulated k``;
* ``formula 1`` .. ``formula 9`` (dispersion formulas of the database documentation, with the
  coefficients ``C1, C2, ...`` and a ``wavelength_range``; missing trailing coefficients are zero).

An entry for n (formula or table) may be combined with a ``tabulated k`` entry; the valid range is
then the intersection. Tabulated values are interpolated linearly. Asking for a wavelength outside
the range raises :class:`~flakefinder.errors.WavelengthRangeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import yaml

from flakefinder.errors import FlakefinderError, WavelengthRangeError

__all__ = ["NKData", "NKFormatError", "dispersion_formula", "load_nk", "parse_nk"]

_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Relative slack on the range ends, so that e.g. 0.4 um * 1000 still counts as 400 nm.
_RANGE_TOL = 1e-9


class NKFormatError(FlakefinderError, ValueError):
    """A refractiveindex.info file that cannot be understood."""


def dispersion_formula(number: int, coefficients: np.ndarray, wl_um: np.ndarray) -> np.ndarray:
    """Real refractive index of refractiveindex.info dispersion formula ``number`` (1..9).

    ``coefficients`` is ``(C1, C2, ...)``; ``wl_um`` the wavelength in micrometres.
    """
    lam = np.asarray(wl_um, dtype=float)
    c = np.zeros(17)
    given = np.asarray(coefficients, dtype=float)
    if given.size > 17:
        raise NKFormatError(f"formula {number}: at most 17 coefficients, got {given.size}")
    c[: given.size] = given
    l2 = lam**2
    if number == 1:  # Sellmeier: n^2 - 1 = C1 + sum C_i l^2 / (l^2 - C_{i+1}^2)
        n2 = 1.0 + c[0] + sum(c[i] * l2 / (l2 - c[i + 1] ** 2) for i in range(1, 17, 2))
        return cast("np.ndarray", np.sqrt(n2))
    if number == 2:  # Sellmeier-2: n^2 - 1 = C1 + sum C_i l^2 / (l^2 - C_{i+1})
        n2 = 1.0 + c[0] + sum(c[i] * l2 / (l2 - c[i + 1]) for i in range(1, 17, 2))
        return cast("np.ndarray", np.sqrt(n2))
    if number == 3:  # polynomial: n^2 = C1 + sum C_i l^C_{i+1}
        n2 = c[0] + sum(c[i] * lam ** c[i + 1] for i in range(1, 17, 2))
        return cast("np.ndarray", np.sqrt(n2))
    if number == 4:  # RefractiveIndex.INFO
        n2 = (
            c[0]
            + c[1] * lam ** c[2] / (l2 - c[3] ** c[4])
            + c[5] * lam ** c[6] / (l2 - c[7] ** c[8])
        )
        n2 = n2 + sum(c[i] * lam ** c[i + 1] for i in range(9, 17, 2))
        return cast("np.ndarray", np.sqrt(n2))
    if number == 5:  # Cauchy: n = C1 + sum C_i l^C_{i+1}
        return cast("np.ndarray", c[0] + sum(c[i] * lam ** c[i + 1] for i in range(1, 17, 2)))
    if number == 6:  # gases: n - 1 = C1 + sum C_i / (C_{i+1} - l^-2)
        return cast("np.ndarray", 1.0 + c[0] + sum(c[i] / (c[i + 1] - lam**-2.0) for i in range(1, 17, 2)))
    if number == 7:  # Herzberger
        g = 1.0 / (l2 - 0.028)
        return cast("np.ndarray", c[0] + c[1] * g + c[2] * g**2 + c[3] * l2 + c[4] * l2**2 + c[5] * l2**3)
    if number == 8:  # Retro: (n^2 - 1) / (n^2 + 2) = C1 + C2 l^2 / (l^2 - C3) + C4 l^2
        a = c[0] + c[1] * l2 / (l2 - c[2]) + c[3] * l2
        return cast("np.ndarray", np.sqrt((1.0 + 2.0 * a) / (1.0 - a)))
    if number == 9:  # Exotic
        d = lam - c[4]
        return cast("np.ndarray", np.sqrt(c[0] + c[1] / (l2 - c[2]) + c[3] * d / (d**2 + c[5])))
    raise NKFormatError(f"unknown dispersion formula {number} (refractiveindex.info has 1..9)")


_Component = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class NKData:
    """Complex refractive index n + ik (k >= 0) of one data file, on a wavelength range."""

    source: str
    range_nm: tuple[float, float]
    n_func: _Component = field(repr=False)
    k_func: _Component | None = field(repr=False, default=None)
    kinds: tuple[str, ...] = ()
    references: str = field(default="", repr=False)
    comments: str = field(default="", repr=False)

    def nk(self, wavelength_nm: np.ndarray | float) -> np.ndarray:
        """Complex n + ik at ``wavelength_nm`` (any shape). Raises WavelengthRangeError outside."""
        wl = np.asarray(wavelength_nm, dtype=float)
        lo, hi = self.range_nm
        if wl.size and (
            not np.all(np.isfinite(wl))
            or wl.min() < lo * (1 - _RANGE_TOL)
            or wl.max() > hi * (1 + _RANGE_TOL)
        ):
            bad = wl[~((wl >= lo * (1 - _RANGE_TOL)) & (wl <= hi * (1 + _RANGE_TOL)))]
            raise WavelengthRangeError(
                f"{self.source}: optical constants are known for {lo:g}-{hi:g} nm only; "
                f"asked for {float(bad.flat[0]):g} nm"
            )
        wl_um = np.clip(wl, lo, hi) / 1000.0
        n = np.asarray(self.n_func(wl_um), dtype=float)
        if self.k_func is None:
            return n.astype(complex)
        return n + 1j * np.asarray(self.k_func(wl_um), dtype=float)


def _table(raw: Any, columns: int, source: str, kind: str) -> np.ndarray:
    if not isinstance(raw, str):
        raise NKFormatError(f"{source}: {kind!r} entry has no 'data' text block")
    try:
        rows = [
            [float(v) for v in line.split()] for line in raw.strip().splitlines() if line.strip()
        ]
    except ValueError as exc:
        raise NKFormatError(f"{source}: {kind!r} data holds a non-number ({exc})") from None
    if len(rows) < 2 or any(len(r) != columns for r in rows):
        raise NKFormatError(
            f"{source}: {kind!r} data must have at least 2 rows of {columns} numbers each"
        )
    arr = np.array(rows, dtype=float)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    if not np.all(np.isfinite(arr)) or arr[0, 0] <= 0:
        raise NKFormatError(f"{source}: {kind!r} data has non-finite or non-positive values")
    return arr


def _interp(x: np.ndarray, y: np.ndarray) -> _Component:
    return lambda wl_um: np.interp(wl_um, x, y)


def _formula(number: int, coeffs: np.ndarray) -> _Component:
    return lambda wl_um: dispersion_formula(number, coeffs, wl_um)


def parse_nk(text: str, source: str = "<string>") -> NKData:
    """Parse the text of a refractiveindex.info YAML file. ``source`` names it in error messages."""
    try:
        doc = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise NKFormatError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("DATA"), list) or not doc["DATA"]:
        raise NKFormatError(f"{source}: not a refractiveindex.info file (no 'DATA' list)")
    n_func: _Component | None = None
    k_func: _Component | None = None
    lo, hi = 0.0, np.inf
    kinds: list[str] = []
    for entry in doc["DATA"]:
        kind = str(entry.get("type", "")).strip() if isinstance(entry, dict) else ""
        kinds.append(kind)
        if kind in ("tabulated nk", "tabulated n", "tabulated k"):
            cols = 3 if kind == "tabulated nk" else 2
            arr = _table(entry.get("data"), cols, source, kind)
            lo, hi = max(lo, arr[0, 0]), min(hi, arr[-1, 0])
            if kind != "tabulated k":
                n_func = _interp(arr[:, 0], arr[:, 1])
            if kind != "tabulated n":
                k_func = _interp(arr[:, 0], arr[:, -1])
        elif kind.startswith("formula "):
            try:
                number = int(kind.split()[1])
                rng = [float(v) for v in str(entry["wavelength_range"]).split()]
                coeffs = np.array([float(v) for v in str(entry["coefficients"]).split()])
            except (KeyError, ValueError, IndexError):
                raise NKFormatError(
                    f"{source}: {kind!r} entry needs numeric 'wavelength_range' and 'coefficients'"
                ) from None
            if not 1 <= number <= 9:
                raise NKFormatError(f"{source}: unknown dispersion formula {number!r} (1..9)")
            if len(rng) != 2 or not 0 < rng[0] < rng[1]:
                raise NKFormatError(f"{source}: bad wavelength_range {entry['wavelength_range']!r}")
            lo, hi = max(lo, rng[0]), min(hi, rng[1])
            n_func = _formula(number, coeffs)
        else:
            raise NKFormatError(f"{source}: unsupported DATA type {kind!r}")
    if n_func is None:
        raise NKFormatError(f"{source}: has no refractive index n (only {kinds})")
    if not lo < hi:
        raise NKFormatError(f"{source}: the n and k entries have no wavelength range in common")
    return NKData(
        source=source,
        range_nm=(float(lo) * 1000.0, float(hi) * 1000.0),
        n_func=n_func,
        k_func=k_func,
        kinds=tuple(kinds),
        references=str(doc.get("REFERENCES", "")).strip(),
        comments=str(doc.get("COMMENTS", "")).strip(),
    )


def load_nk(path: str | Path) -> NKData:
    """Load a refractiveindex.info YAML file (wavelengths in µm) as :class:`NKData`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise NKFormatError(f"{p}: cannot read optical-constant file ({exc.strerror})") from None
    return parse_nk(text, source=str(p))
