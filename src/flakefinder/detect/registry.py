"""Create detectors by name (for the CLI and the server): ``create_detector("contrast")``."""

from __future__ import annotations

from typing import Any

from flakefinder.domain import Detector

_NAMES = ("contrast", "rulebased", "maskrcnn", "union")


def available_detectors() -> tuple[str, ...]:
    """Names accepted by :func:`create_detector`."""
    return _NAMES


def create_detector(name: str, **options: Any) -> Detector:
    """Build the detector called ``name`` with keyword ``options`` for its constructor.

    ``maskrcnn`` takes ``model=<model folder>`` (default: the shipped model) and imports torch
    only when asked for. ``contrast`` with ``setup=<SetupProfile>`` (and optionally
    ``flatfield=<array>``), or with ``setup_file=<path>`` (picklable), is the calibrated contrast detector
    (:class:`~flakefinder.detect.calibrated.CalibratedContrastDetector`). Raises ValueError for an
    unknown name.
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key in ("contrast", "contrastcalibrated") and (
        options.get("setup") is not None or options.get("setup_file") is not None
    ):
        from flakefinder.detect.calibrated import CalibratedContrastDetector

        opts = dict(options)
        profile = opts.pop("setup", None)
        setup_file = opts.pop("setup_file", None)
        if profile is None:
            from flakefinder.detect.setup_io import load_setup

            loaded = load_setup(str(setup_file))
            profile = loaded.profile
            opts.setdefault("flatfield", loaded.flatfield)
        return CalibratedContrastDetector(profile, **opts)
    if key == "contrast":
        options = {
            k: v for k, v in options.items() if k not in ("setup", "setup_file", "flatfield")
        }
        from flakefinder.detect.contrast import ContrastDetector

        return ContrastDetector(**options)
    if key in ("rulebased", "rules"):
        from flakefinder.detect.rulebased import RuleBasedDetector

        return RuleBasedDetector(**options)
    # --- w10 (issue 10): segmenter + setup profile, and the union with the calibrated contrast
    # detector. Minimal change; the registry rewrite on w7 should absorb these two entries.
    if key in ("maskrcnn", "union") and (
        options.get("setup") is not None or options.get("setup_file") is not None
    ):
        from flakefinder.detect.segment_classify import combined_detector

        return combined_detector(key, **options)
    if key == "union":
        from flakefinder.errors import ProfileError

        raise ProfileError("--detector union needs a setup profile (--setup FILE)")
    # --- end w10
    if key == "maskrcnn":
        opts = dict(options)
        model = opts.pop("model", None)  # None: the shipped default model folder
        from flakefinder.detect.maskrcnn import MaskRCNNDetector

        return MaskRCNNDetector.from_folder(model, **opts)  # type: ignore[no-any-return]
    from flakefinder.errors import UnknownDetectorError

    raise UnknownDetectorError(f"unknown detector {name!r}; available: {', '.join(_NAMES)}")
