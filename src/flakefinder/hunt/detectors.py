"""One detector per objective: calibration is per magnification.

An objective's setup profile (``Objective.setup_profile``) configures the detector when the
command gives none, and the objective's NA sets the detector's ``numerical_aperture`` option
(thin-film colours depend on it) unless the command sets that option itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flakefinder.detect.registry import create_detector, detector_spec, parse_option_pairs

if TYPE_CHECKING:
    from pathlib import Path

    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector
    from flakefinder.hardware.objectives import Objective


def detector_for_objective(
    name: str,
    objective: Objective,
    *,
    model: Path | None = None,
    setup: LoadedSetup | None = None,
    options: list[str] | None = None,
) -> Detector:
    """The detector ``name`` configured for ``objective`` (see the module docstring)."""
    spec = detector_spec(name)
    parsed: dict[str, object] = dict(parse_option_pairs(options))
    if setup is None and objective.setup_profile is not None and spec.accepts_setup:
        from flakefinder.detect.setup_io import load_setup

        setup = load_setup(objective.setup_profile)
    names = {o.name for o in spec.options_for(setup is not None)}
    if "numerical_aperture" in names and "numerical_aperture" not in parsed:
        parsed["numerical_aperture"] = min(objective.numerical_aperture, 0.95)
    return create_detector(name, model=model, setup=setup, options=parsed)  # type: ignore[arg-type]
