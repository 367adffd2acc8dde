"""2DMatGMM colour tables (``{"1": {"contrast": {"r", "g", "b"}, "covariance_matrix"}}``).

2DMatGMM (Uslu et al. 2024) stores per-layer contrast means with channel names and the 3 x 3
covariance in **B, G, R** order; flakefinder keeps RGB order everywhere, so both directions
reorder the covariance. Their hBN tables use thickness *classes*, not layer numbers, as keys:
the importer checks that the table behaves like layer numbers of the named material (the optics
fit must reproduce it) and refuses otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from flakefinder.artifacts import load_json_file
from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.errors import CalibrationError, ProfileError

__all__ = ["MAX_LAYER_RESIDUAL", "export_gmm", "import_gmm", "read_gmm", "table_from_gmm"]

_SWAP = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # BGR <-> RGB
MAX_LAYER_RESIDUAL = 0.08  # optics-fit rms above which a table's keys are not layer numbers


def read_gmm(path: str | Path) -> dict[str, Any]:
    """Read a 2DMatGMM JSON file (a dict keyed by layer number)."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"2DMatGMM colour table not found: {p}")
    data = load_json_file(p, error=CalibrationError)
    if not isinstance(data, dict) or not data:
        raise CalibrationError(f"{p}: a 2DMatGMM table is a non-empty JSON object keyed by layer")
    return data


def table_from_gmm(
    data: dict[str, Any], material: str, *, where: str = "GMM table"
) -> MaterialTable:
    """Convert 2DMatGMM JSON to a :class:`MaterialTable` (all entries ``measured``)."""
    entries = []
    for key, entry in data.items():
        try:
            n = int(str(key))
        except ValueError:
            raise CalibrationError(f"{where}: key {key!r} is not a layer number") from None
        try:
            c = entry["contrast"]
            mean = (float(c["r"]), float(c["g"]), float(c["b"]))
            cov_bgr = np.asarray(entry["covariance_matrix"], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: layer {key}: missing or bad field ({exc})") from None
        if cov_bgr.shape != (3, 3) or not all(math.isfinite(v) for v in mean):
            raise CalibrationError(f"{where}: layer {key}: need 3 contrasts and a 3 x 3 covariance")
        cov = _SWAP @ cov_bgr @ _SWAP
        try:
            entries.append(
                LayerColour(
                    n_layers=n,
                    contrast_rgb=mean,
                    covariance_rgb=tuple(tuple(float(v) for v in row) for row in cov),  # type: ignore[arg-type]
                    source="measured",
                )
            )
        except ProfileError as exc:
            raise CalibrationError(f"{where}: layer {key}: {exc}") from None
    try:
        return MaterialTable(material, tuple(entries))
    except ProfileError as exc:
        raise CalibrationError(f"{where}: {exc}") from None


def import_gmm(
    path: str | Path,
    *,
    material: str,
    oxide_nm: float,
    um_per_px: float,
    name: str = "setup",
    base: SetupProfile | None = None,
    check_layers: bool = True,
) -> SetupProfile:
    """A setup profile (or ``base`` plus a table) from a 2DMatGMM file.

    The optics model is fitted to the table; its residuals are recorded per entry, and a table the
    model cannot reproduce as layer numbers 1, 2, ... (rms > :data:`MAX_LAYER_RESIDUAL`, e.g.
    2DMatGMM's hBN thickness classes) is refused when ``check_layers`` is set.
    """
    from dataclasses import replace

    from flakefinder.calibration.physics import fit_physics
    from flakefinder.errors import UnknownMaterialError
    from flakefinder.optics import get_material

    try:
        mat = get_material(material).name
    except UnknownMaterialError as exc:
        raise CalibrationError(str(exc)) from None
    table = table_from_gmm(read_gmm(path), mat, where=str(path))
    fit = fit_physics(
        mat, oxide_nm, {e.n_layers: e.mean for e in table.layers}, n_starts=1, max_nfev=80
    )
    if check_layers and fit.rms_residual > MAX_LAYER_RESIDUAL:
        raise CalibrationError(
            f"{path}: the thin-film model of {mat} on {oxide_nm:g} nm SiO2 cannot reproduce this "
            f"table as layer numbers (rms residual {fit.rms_residual:.3f}); its keys are "
            "probably thickness classes (as in 2DMatGMM's hBN tables), not layer counts"
        )
    layers = tuple(
        replace(e, fit_residual_rgb=tuple(float(v) for v in r))  # type: ignore[arg-type]
        for e, r in zip(table.layers, fit.residual_rgb, strict=True)
    )
    table = MaterialTable(mat, layers)
    if base is not None:
        return replace(base.with_material(table), name=name)
    from flakefinder.calibration.profile import CameraSettings

    return SetupProfile(
        name=name,
        um_per_px=float(um_per_px),
        oxide_nm=float(oxide_nm),
        materials=(table,),
        numerical_aperture=fit.params.numerical_aperture,
        camera=CameraSettings(encoding="gamma", gamma=fit.params.gamma),
        optics_fit=fit.optics_fit(),
        notes=f"imported from 2DMatGMM table {Path(path).name}",
    )


def export_gmm(profile: SetupProfile, material: str) -> dict[str, Any]:
    """The profile's table for ``material`` as 2DMatGMM JSON (covariance in B, G, R order)."""
    table = profile.table(material)
    out: dict[str, Any] = {}
    for e in table.layers:
        cov = _SWAP @ e.covariance @ _SWAP
        out[str(e.n_layers)] = {
            "contrast": {
                "r": e.contrast_rgb[0],
                "g": e.contrast_rgb[1],
                "b": e.contrast_rgb[2],
            },
            "covariance_matrix": [[float(v) for v in row] for row in cov],
        }
    return out
