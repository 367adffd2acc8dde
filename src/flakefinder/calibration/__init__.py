"""Setup profiles: per-microscope colour calibration (numpy only; no torch, SQL or HTTP).

A :class:`~flakefinder.calibration.profile.SetupProfile` describes one microscope setup (pixel
size, objective NA, camera encoding, white balance, substrate) and, per material, the colour
contrast of each layer number as a Gaussian. Calibration builds one from labelled, outlined or
unlabelled images; the calibrated contrast detector classifies pixels against it.
"""

from __future__ import annotations

from flakefinder.calibration.api import (
    CalibrationReport,
    ClusterReport,
    LabelledRegion,
    calibrate,
)
from flakefinder.calibration.profile import (
    CameraSettings,
    LayerColour,
    MaterialTable,
    OpticsFit,
    SetupProfile,
    check_compatible,
)

__all__ = [
    "CalibrationReport",
    "CameraSettings",
    "ClusterReport",
    "LabelledRegion",
    "LayerColour",
    "MaterialTable",
    "OpticsFit",
    "SetupProfile",
    "calibrate",
    "check_compatible",
]
