"""The one place that builds detectors by name, for the CLI, the server, evaluation and scans.

Each detector is one :class:`DetectorSpec` entry in :data:`DETECTORS`
(:mod:`flakefinder.detect.builders`): its name, a one-line summary, its typed options
(``--detector-option key=value`` on the command line), whether it takes a model folder and/or a
setup profile, and a ``build(model, setup, options)`` callable. Adding a detector means adding one
entry there; every command's ``--detector`` help, validation and construction follow from it here.
Heavy imports (torch) happen inside ``build`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flakefinder.detect.builders import DETECTORS
from flakefinder.detect.specs import (
    Builder,
    DetectorOptionError,
    DetectorSpec,
    OptionSpec,
    OptionType,
    OptionValue,
)
from flakefinder.errors import UnknownDetectorError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector

__all__ = [
    "DEFAULT_DETECTOR",
    "SIMULATED_DETECTOR",
    "DETECTORS",
    "Builder",
    "DetectorOptionError",
    "DetectorSpec",
    "OptionSpec",
    "OptionType",
    "OptionValue",
    "available_detectors",
    "check_detector",
    "create_detector",
    "detector_help",
    "detector_spec",
    "options_help",
    "parse_option_pairs",
]

DEFAULT_DETECTOR = "terrace"

"""Terrace segmentation with per-terrace classification: works on real micrographs without
a profile (it self-calibrates) and with one (README, "Real micrographs")."""

SIMULATED_DETECTOR = "contrast"
"""The default on a simulated chip (``demo``, ``scan --simulated``): its images are rendered with
the thin-film model that this detector inverts (mask mAP@50 0.51 on held-out synthetic images,
README)."""



def available_detectors() -> tuple[str, ...]:
    """Names accepted by :func:`create_detector`, in the registry's order."""
    return tuple(s.name for s in DETECTORS)


def detector_spec(name: str) -> DetectorSpec:
    """The registry entry for ``name`` (aliases and case accepted).

    Raises
    ------
    UnknownDetectorError
        For an unknown name, listing the available ones.
    """
    key = name.strip().lower()
    for spec in DETECTORS:
        if key == spec.name or key in spec.aliases:
            return spec
    raise UnknownDetectorError(
        f"unknown detector {name!r}; available: {', '.join(available_detectors())}"
    )


def detector_help() -> str:
    """``--detector`` help text built from the registry."""
    names = ", ".join(
        f"{s.name}{' (default)' if s.name == DEFAULT_DETECTOR else ''}" for s in DETECTORS
    )
    return f"Detector: {names}. Options per detector: --detector-option help."


def options_help() -> str:
    """Every detector's options, one line each (for ``--detector-option help``)."""
    lines = []
    for spec in DETECTORS:
        extra = []
        if spec.model != "none":
            extra.append("--model DIR")
        if spec.accepts_setup:
            extra.append("--setup FILE")
        head = f"{spec.name}: {spec.summary}" + (f" [{', '.join(extra)}]" if extra else "")
        lines.append(head)
        lines.extend(f"  {o.describe()}" for o in spec.options)
        if spec.setup_options is not None:
            lines.append("  with --setup:")
            lines.extend(f"    {o.describe()}" for o in spec.setup_options)
    return "\n".join(lines)


def create_detector(
    name: str,
    *,
    model: Path | str | None = None,
    setup: LoadedSetup | SetupProfile | None = None,
    options: Mapping[str, str | OptionValue] | None = None,
    min_score: float | None = None,
    device: str | None = None,
) -> Detector:
    """Build the detector called ``name``.

    Parameters
    ----------
    name
        A registry name (see :func:`available_detectors`).
    model
        Model folder, for detectors that take one (None: the shipped default).
    setup
        Setup profile (with its flat-field, as :class:`~flakefinder.detect.setup_io.LoadedSetup`,
        or a bare :class:`~flakefinder.calibration.profile.SetupProfile`), for detectors that
        accept one.
    options
        Option values as strings (from ``--detector-option key=value``) or typed values.
    min_score
        The commands' ``--score``: sets the detector's confidence-floor option (when it has
        one and ``options`` does not set it). Callers still filter the output at this score.
    device
        The commands' ``--device``: sets the detector's device option (when it has one and
        ``options`` does not set it).

    Raises
    ------
    UnknownDetectorError
        Unknown name, an option it does not have (valid ones listed), a value of the wrong type,
        or a model folder / setup profile it cannot use.
    """
    spec, parsed = check_detector(
        name, model=model, setup=setup, options=options, min_score=min_score, device=device
    )
    return spec.build(None if model is None else Path(model), _loaded(setup), parsed)


def _loaded(setup: LoadedSetup | SetupProfile | None) -> LoadedSetup | None:
    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.detect.setup_io import LoadedSetup

    if isinstance(setup, SetupProfile):
        return LoadedSetup(setup, None, "given")
    return setup


def check_detector(
    name: str,
    *,
    model: Path | str | None = None,
    setup: LoadedSetup | SetupProfile | None = None,
    options: Mapping[str, str | OptionValue] | None = None,
    min_score: float | None = None,
    device: str | None = None,
) -> tuple[DetectorSpec, dict[str, OptionValue]]:
    """Validate :func:`create_detector`'s arguments without building; (entry, parsed options)."""
    spec = detector_spec(name)
    if model is not None and spec.model == "none":
        raise UnknownDetectorError(
            f"detector {spec.name!r} takes no model folder (--model); only "
            + ", ".join(s.name for s in DETECTORS if s.model != "none")
            + " do"
        )
    if setup is not None and not spec.accepts_setup:
        raise UnknownDetectorError(
            f"detector {spec.name!r} cannot use a setup profile (--setup); only "
            + ", ".join(s.name for s in DETECTORS if s.accepts_setup)
            + " can"
        )
    if setup is None and spec.requires_setup:
        from flakefinder.errors import ProfileError

        raise ProfileError(
            f"--detector {spec.name} needs a setup profile (--setup FILE or --setup auto)"
        )
    merged: dict[str, str | OptionValue] = {}
    if min_score is not None and spec.score_option is not None:
        merged[spec.score_option] = min_score
    if device is not None and spec.device_option is not None:
        merged[spec.device_option] = device
    merged.update(options or {})
    return spec, spec.parse_options(merged, with_setup=setup is not None)


def parse_option_pairs(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``["k=v", ...]`` (repeatable ``--detector-option``) to a dict; a pair without '=' raises."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DetectorOptionError(f"detector options are key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out
