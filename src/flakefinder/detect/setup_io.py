"""Getting a setup profile for detection: from a file (with its flat-field) or by self-calibration.

Used by the CLI commands (``detect``, ``batch-detect``, ``evaluate``) and the detector registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flakefinder.calibration.profile import SetupProfile
from flakefinder.errors import CalibrationError

SELF_CALIBRATION_IMAGES = 10  # at most this many images of a batch are used to calibrate


@dataclass(frozen=True, eq=False)
class LoadedSetup:
    """A profile ready for detection.

    Attributes
    ----------
    profile : SetupProfile
        The colour tables.
    flatfield : numpy.ndarray or None
        The profile's flat-field (normalised to mean 1), when it names one.
    source : str
        ``"file:<path>"`` or ``"self-calibrated"``.
    """

    profile: SetupProfile
    flatfield: np.ndarray | None
    source: str

    def describe(self) -> dict[str, str]:
        """What a results file records about the profile used."""
        return {
            "name": self.profile.name,
            "profile_id": self.profile.profile_id,
            "sha256": self.profile.sha256,
            "source": self.source,
        }


def load_setup(path: str | Path) -> LoadedSetup:
    """Load a setup profile file and its flat-field image (resolved next to the file).

    Raises
    ------
    ProfileError
        For a missing, corrupt or unsupported profile.
    ImageError
        When the flat-field it names cannot be read.
    """
    from flakefinder.detect.substrate import load_flatfield

    profile = SetupProfile.load(path)
    ff_path = profile.flatfield_file(path)
    flat = None if ff_path is None else load_flatfield(ff_path)
    return LoadedSetup(profile, flat, f"file:{path}")


def self_calibrate(
    images: Sequence[np.ndarray],
    *,
    materials: Sequence[str],
    oxide_nm: float,
    um_per_px: float,
) -> LoadedSetup:
    """Calibrate a profile from the images alone (no labels), one table per material.

    Uses the no-label mode of :func:`flakefinder.calibration.calibrate` on at most
    ``SELF_CALIBRATION_IMAGES`` images.

    Raises
    ------
    CalibrationError
        When the images cannot determine a colour table (or calibration is not available).
    """
    try:
        from flakefinder.calibration import calibrate  # type: ignore[attr-defined]
    except ImportError:
        raise CalibrationError(
            "self-calibration is not available in this installation "
            "(flakefinder.calibration.calibrate is missing); pass --setup FILE"
        ) from None
    if not images:
        raise CalibrationError("self-calibration needs at least one readable image")
    subset = list(images[:SELF_CALIBRATION_IMAGES])
    profile: SetupProfile | None = None
    for m in materials:
        report = calibrate(
            subset,
            material=m,
            oxide_nm=oxide_nm,
            um_per_px=um_per_px,
            regions=None,
            name="self-calibrated",
            base=profile,
        )
        p = getattr(report, "profile", report)
        if not isinstance(p, SetupProfile):
            raise CalibrationError(f"calibration returned {type(p).__name__}, not a SetupProfile")
        profile = p
    if profile is None:
        raise CalibrationError("self-calibration needs at least one material")
    return LoadedSetup(profile, None, "self-calibrated")
