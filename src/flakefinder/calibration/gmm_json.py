"""Read 2DMatGMM colour-table JSON files (Uslu et al. 2024, MIT) into setup-profile tables.

Format: ``{"1": {"contrast": {"r": .., "g": .., "b": ..}, "covariance_matrix": [[3x3]]}, ...}``;
keys are layer numbers, contrast ``I / I_bg - 1`` on stored camera values, covariance in
**B, G, R** order (reordered to RGB here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.errors import ProfileError


def gmm_table(data: Mapping[str, Any], material: str) -> MaterialTable:
    """A :class:`MaterialTable` from the parsed JSON of a 2DMatGMM parameter file."""
    if not isinstance(data, Mapping) or not data:
        raise ProfileError("a 2DMatGMM parameter file must be a non-empty JSON object")
    layers: list[LayerColour] = []
    for key, entry in data.items():
        try:
            n = int(key)
            con = entry["contrast"]
            mean = (float(con["r"]), float(con["g"]), float(con["b"]))
            cov_bgr = np.asarray(entry["covariance_matrix"], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"2DMatGMM entry {key!r} is malformed: {exc}") from None
        if cov_bgr.shape != (3, 3):
            raise ProfileError(f"2DMatGMM entry {key!r}: covariance must be 3 x 3")
        cov_rgb = cov_bgr[::-1, ::-1]
        layers.append(
            LayerColour(
                n_layers=n,
                contrast_rgb=mean,
                covariance_rgb=tuple(map(tuple, cov_rgb.tolist())),  # type: ignore[arg-type]
                source="measured",
            )
        )
    return MaterialTable(material=material, layers=tuple(layers))


def read_gmm_file(path: str | Path, material: str) -> MaterialTable:
    """Read one 2DMatGMM parameter file as the colour table of ``material``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"cannot read the 2DMatGMM parameter file {p}: {exc}") from None
    try:
        return gmm_table(data, material)
    except ProfileError as exc:
        raise ProfileError(f"{p}: {exc}") from None


def profile_from_gmm(
    path: str | Path,
    *,
    material: str,
    oxide_nm: float,
    um_per_px: float,
    name: str | None = None,
) -> SetupProfile:
    """A one-material setup profile from a 2DMatGMM parameter file."""
    table = read_gmm_file(path, material)
    p = Path(path)
    return SetupProfile(
        name=name or f"2dmatgmm-{p.stem}",
        um_per_px=um_per_px,
        oxide_nm=oxide_nm,
        materials=(table,),
        notes=f"imported from the 2DMatGMM colour table {p.name} (Uslu et al. 2024, MIT)",
    )
