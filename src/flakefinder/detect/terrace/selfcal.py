"""Self-calibration on a batch: group images by camera setting, calibrate each group on its own
terraces (no labels), fall back to the thin-film model where that is not possible.

A change of exposure scales all channels and leaves the contrast ``I / I_substrate - 1`` as it
is; a change of white balance or colour rendering does not. Images are grouped by the hue of
their substrate (log chromaticity of the substrate colour): images of one group share one colour
table. Each group's flake terraces go to :func:`flakefinder.calibration.calibrate` in masks mode:
their colours are clustered and the clusters get layer numbers from the thin-film fit, which
also predicts the layers not seen. A group whose terraces cannot determine a table (too few, or
the fit fails) uses the thin-film model with the default camera, and says so. A material without
optical constants gets no layer numbers (unknown thickness) unless a profile with labels is
given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.detect.terrace.classify import (
    LayerCall,
    ProfileClassifier,
    TerraceClassifier,
    unknown_call,
)
from flakefinder.errors import CalibrationError, UnknownMaterialError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.detect.terrace.segment import Terrace, TerraceMap

HUE_TOLERANCE = 0.08  # log-chromaticity distance within which two substrates are one setting
MAX_CAL_IMAGES = 12
MAX_CAL_REGIONS = 300
MIN_CAL_REGIONS = 3
PHYSICS_LAYERS = 12


def substrate_hue(rgb: np.ndarray) -> np.ndarray:
    """(2,) log chromaticity (log R/G, log B/G) of a colour: exposure-independent."""
    v = np.log(np.maximum(np.asarray(rgb, dtype=float), 1.0))
    return np.array([v[0] - v[1], v[2] - v[1]])


def group_settings(substrates: Sequence[np.ndarray], tolerance: float = HUE_TOLERANCE) -> list[list[int]]:
    """Indices of images grouped by substrate hue (greedy, largest groups first, stable)."""
    hues = [substrate_hue(s) for s in substrates]
    left = list(range(len(hues)))
    groups: list[list[int]] = []
    while left:
        # the image with the most neighbours seeds the next group
        counts = [sum(int(np.linalg.norm(hues[i] - hues[j]) <= tolerance) for j in left) for i in left]
        seed = left[int(np.argmax(counts))]
        members = [j for j in left if np.linalg.norm(hues[seed] - hues[j]) <= tolerance]
        groups.append(sorted(members))
        left = [j for j in left if j not in members]
    return groups


@dataclass(frozen=True, eq=False)
class SettingCalibration:
    """The colour tables of one camera setting of a batch."""

    name: str
    images: tuple[int, ...]
    names: tuple[str, ...]
    substrate_rgb: tuple[float, float, float]
    profile: SetupProfile | None  # None: no layer numbers (material without optics data)
    source: str  # "self-calibrated", "thin-film model", "no optics data"
    note: str

    def classifier(self, materials: Sequence[str], max_sigma: float) -> TerraceClassifier:
        if self.profile is None:
            return _Unknown(materials[0])
        return ProfileClassifier(
            self.profile, materials, max_sigma=max_sigma, measured=self.source != "thin-film model"
        )


class _Unknown:
    def __init__(self, material: str) -> None:
        self.material = material

    def classify(self, contrast_rgb: np.ndarray) -> LayerCall:
        return unknown_call(self.material)


def physics_profile(
    material: str, *, oxide_nm: float, um_per_px: float, max_layers: int = PHYSICS_LAYERS
) -> SetupProfile:
    """A profile predicted by the thin-film model with the default camera (no measurement).

    Raises
    ------
    UnknownMaterialError
        When the optics database has no n,k data for ``material``.
    """
    from flakefinder.calibration.physics import CameraOpticsParams, predict_contrast
    from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
    from flakefinder.optics import get_material

    name = get_material(material).name
    layers = list(range(1, max_layers + 1))
    pred = predict_contrast(name, oxide_nm, CameraOpticsParams(), layers)
    entries = []
    for n, mu in zip(layers, pred, strict=True):
        if float(mu.min()) <= -1.0:
            continue
        var = 0.02**2 + (0.15 * mu) ** 2
        cov = tuple(tuple(float(var[i]) if i == j else 0.0 for j in range(3)) for i in range(3))
        entries.append(
            LayerColour(n_layers=n, contrast_rgb=(float(mu[0]), float(mu[1]), float(mu[2])),
                        covariance_rgb=cov, source="predicted")  # type: ignore[arg-type]
        )
    return SetupProfile(
        name="thin-film model", um_per_px=um_per_px, oxide_nm=oxide_nm,
        materials=(MaterialTable(name, tuple(entries)),),
        notes="predicted by the thin-film model with the default camera; not calibrated",
    )


def _regions(
    maps: Sequence[TerraceMap], members: Sequence[int], pick: Sequence[Sequence[Terrace]]
) -> list[object]:
    from flakefinder.calibration.api import LabelledRegion

    out: list[object] = []
    for k, i in enumerate(members):
        for t in pick[i]:
            mask, _, _ = maps[i].full_mask(t)
            out.append(LabelledRegion(image_index=k, mask=mask, n_layers=None))
    return out


def calibrate_settings(
    maps: Sequence[TerraceMap],
    images: Sequence[np.ndarray],
    *,
    material: str,
    oxide_nm: float,
    um_per_px: float,
    candidates: Sequence[Sequence[Terrace]],
    names: Sequence[str] | None = None,
) -> list[SettingCalibration]:
    """One :class:`SettingCalibration` per camera setting found among ``maps``.

    ``candidates[i]`` are the terraces of image ``i`` trusted enough to calibrate on.
    """
    from flakefinder.calibration.api import calibrate

    labels = list(names) if names is not None else [f"image {i}" for i in range(len(maps))]
    groups = group_settings([m.work.substrate_rgb for m in maps])
    out: list[SettingCalibration] = []
    try:
        physics = physics_profile(material, oxide_nm=oxide_nm, um_per_px=um_per_px)
    except UnknownMaterialError:
        physics = None
    for g, members in enumerate(groups, start=1):
        sub = np.median(np.array([maps[i].work.substrate_rgb for i in members]), axis=0)
        sub_t = (float(sub[0]), float(sub[1]), float(sub[2]))
        name = f"setting {g}"
        shown = ", ".join(labels[i] for i in members[:4]) + (", ..." if len(members) > 4 else "")
        if physics is None:
            out.append(SettingCalibration(name, tuple(members), tuple(labels[i] for i in members), sub_t, None, "no optics data",
                       f"{material} has no optical constants: layer numbers need labels "
                       f"(calibrate with --labels or --masks); images: {shown}"))
            continue
        use = sorted(members, key=lambda i: -len(candidates[i]))[:MAX_CAL_IMAGES]
        regions = _regions(maps, use, candidates)[:MAX_CAL_REGIONS]
        profile: SetupProfile | None = None
        why = ""
        if len(regions) >= MIN_CAL_REGIONS:
            try:
                report = calibrate([images[i] for i in use], material=material, oxide_nm=oxide_nm,
                                   um_per_px=um_per_px, regions=regions,  # type: ignore[arg-type]
                                   name=f"self-calibrated {name}")
                profile = report.profile
            except CalibrationError as exc:
                why = str(exc)
        else:
            why = f"{len(regions)} terraces to calibrate on (at least {MIN_CAL_REGIONS} needed)"
        if profile is not None:
            out.append(SettingCalibration(name, tuple(members), tuple(labels[i] for i in members), sub_t, profile, "self-calibrated",
                       f"calibrated on {len(regions)} terraces of {len(use)} images; images: {shown}"))
        else:
            out.append(SettingCalibration(name, tuple(members), tuple(labels[i] for i in members), sub_t, physics, "thin-film model",
                       f"could not self-calibrate ({why}); using the thin-film model; images: {shown}"))
    return out


def nearest_setting(settings: Sequence[SettingCalibration], substrate_rgb: np.ndarray) -> SettingCalibration:
    """The setting whose substrate hue is nearest ``substrate_rgb``'s."""
    h = substrate_hue(substrate_rgb)
    return min(settings, key=lambda s: float(np.linalg.norm(substrate_hue(np.array(s.substrate_rgb)) - h)))


def hue_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the substrate hues of two colours."""
    return float(np.linalg.norm(substrate_hue(a) - substrate_hue(b)))


__all__ = [
    "SettingCalibration",
    "calibrate_settings",
    "group_settings",
    "hue_distance",
    "nearest_setting",
    "physics_profile",
    "substrate_hue",
]
