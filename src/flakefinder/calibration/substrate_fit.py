"""Does a micrograph come from the setup a profile describes? Its bare substrate's colour says.

A profile calibrated on a violet substrate (one oxide, lamp and white balance) says nothing
about images of a teal one: their flakes' colours are another table. The check compares the
hue of the image's substrate (the level fitted by
:func:`~flakefinder.calibration.background.estimate_background`) with the profile's
``substrate_rgb`` as log chromaticity, ``log(c / mean(c))`` per channel, which ignores overall
brightness (exposure) but not colour. The 2DMatGMM micrographs of one setup spread by up to 0.14
between sessions; violet against teal differs by about 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.errors import CalibrationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.calibration.profile import SetupProfile

__all__ = ["SUBSTRATE_FIT_TOLERANCE", "SubstrateMisfit", "misfit_message", "substrate_misfit"]

SUBSTRATE_FIT_TOLERANCE = 0.25
"""Largest difference of log substrate chromaticity (any channel) that still fits a profile."""


@dataclass(frozen=True)
class SubstrateMisfit:
    """An image whose substrate colour does not fit the profile's."""

    name: str
    substrate_rgb: tuple[float, float, float]
    distance: float


def _log_chromaticity(rgb: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.maximum(np.asarray(rgb, dtype=np.float64), 1.0)
    return np.asarray(np.log(v / v.mean()), dtype=np.float64)


def substrate_misfit(profile: SetupProfile, image: np.ndarray, name: str) -> SubstrateMisfit | None:
    """The misfit of ``image`` (uint8 RGB) to ``profile``; None when it fits or cannot be told.

    It cannot be told when the profile records no substrate colour (an imported 2DMatGMM table)
    or the image shows no bare substrate.
    """
    from flakefinder.calibration.background import estimate_background

    if profile.substrate_rgb is None:
        return None
    try:
        level = estimate_background(image, what=name).substrate_rgb
    except CalibrationError:
        return None
    d = float(np.abs(_log_chromaticity(level) - _log_chromaticity(profile.substrate_rgb)).max())
    if d <= SUBSTRATE_FIT_TOLERANCE:
        return None
    return SubstrateMisfit(name, (float(level[0]), float(level[1]), float(level[2])), d)


def misfit_message(profile: SetupProfile, misfits: Sequence[SubstrateMisfit], n_images: int) -> str:
    """One warning naming the images that do not fit ``profile`` (empty ``misfits``: "")."""
    if not misfits:
        return ""

    def rgb(v: Sequence[float]) -> str:
        return "(" + ", ".join(f"{x:.0f}" for x in v) + ")"

    assert profile.substrate_rgb is not None
    shown = ", ".join(f"{m.name} {rgb(m.substrate_rgb)}" for m in misfits[:5])
    more = f" and {len(misfits) - 5} more" if len(misfits) > 5 else ""
    return (
        f"{len(misfits)} of {n_images} images do not look like the substrate of the setup profile"
        f" {profile.profile_id} {rgb(profile.substrate_rgb)}: {shown}{more}. Its colour table"
        " does not fit them; calibrate their setup (flakefinder calibrate, or --setup auto)."
    )
