"""The ``--setup FILE|auto`` option shared by ``detect``, ``batch-detect`` and ``evaluate``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import numpy as np

    from flakefinder.detect.setup_io import LoadedSetup

AUTO = "auto"
#: Detectors that use a setup profile (w10: maskrcnn = segment + classify by the profile, union).


def resolve_setup(
    setup: str,
    detector: str,
    files: Sequence[Path],
    materials: Sequence[str],
    oxide_nm: float | None,
    um_per_px: float | None,
) -> LoadedSetup:
    """Load the profile named by ``--setup``, or self-calibrate one on ``files`` for ``auto``.

    Raises
    ------
    FlakefinderError
        (ProfileError, CalibrationError, ...) with one clear message; the CLI exits with 2.
    """
    from flakefinder.detect.setup_io import SELF_CALIBRATION_IMAGES, load_setup, self_calibrate
    from flakefinder.errors import FlakefinderError, ImageError
    from flakefinder.imaging import load_image

    from flakefinder.detect.registry import DEFAULT_DETECTOR, DETECTORS, detector_spec

    if not detector_spec(detector).accepts_setup:
        users = ", ".join(s.name for s in DETECTORS if s.accepts_setup)
        raise FlakefinderError(
            f"--setup is used by the {users} detectors; got --detector "
            f"{detector!r} (use --detector {DEFAULT_DETECTOR})"
        )
    if setup.strip().lower() != AUTO:
        return load_setup(Path(setup))
    if oxide_nm is None or um_per_px is None:
        raise typer.BadParameter(
            "self-calibration needs the chip's --oxide-nm and the --um-per-px of the images",
            param_hint="--setup auto",
        )
    images: list[np.ndarray] = []
    for p in files:
        if len(images) >= SELF_CALIBRATION_IMAGES:
            break
        try:
            images.append(load_image(p))
        except ImageError:
            continue  # reported when the batch is processed
    loaded = self_calibrate(images, materials=materials, oxide_nm=oxide_nm, um_per_px=um_per_px)
    typer.echo(
        f"no setup profile given: calibrated {loaded.profile.profile_id} on {len(images)} of "
        "these images without labels (no-label mode); check it with a labelled profile if you can"
    )
    return loaded
