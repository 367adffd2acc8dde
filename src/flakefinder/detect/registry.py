"""The one place that builds detectors by name, for the CLI, the server, evaluation and scans.

Each detector is one :class:`DetectorSpec` entry in :data:`DETECTORS`: its name, a one-line
summary, its typed options (``--detector-option key=value`` on the command line), whether it
takes a model folder and/or a setup profile, and a ``build(model, setup, options)`` callable.
Adding a detector means adding one entry; every command's ``--detector`` help, validation and
construction follow from it. Heavy imports (torch) happen inside ``build`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flakefinder.errors import UnknownDetectorError

if TYPE_CHECKING:
    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector

OptionValue = float | int | bool | str
OptionType = Literal["float", "int", "bool", "str"]
Builder = Callable[[Path | None, "LoadedSetup | None", Mapping[str, OptionValue]], "Detector"]

DEFAULT_DETECTOR = "contrast"
"""The best detector by the benchmarks (README, "Detectors on synthetic data"): ``contrast``."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class DetectorOptionError(UnknownDetectorError):
    """A ``--detector-option`` that the detector does not have, or a value of the wrong type."""


@dataclass(frozen=True)
class OptionSpec:
    """One typed option of a detector (a keyword argument of its constructor).

    Parameters
    ----------
    name
        Keyword name, e.g. ``min_area_um2``.
    type
        ``float``, ``int``, ``bool`` or ``str``; command-line strings are parsed to it.
    default
        The detector's own default (shown in help; not passed when the option is not given).
    help
        One line for ``--help``.
    minimum
        Smallest allowed value for numbers (inclusive), or None.
    maximum
        Largest allowed value for numbers (inclusive), or None.
    """

    name: str
    type: OptionType
    default: OptionValue | None
    help: str
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, text: str | OptionValue, detector: str) -> OptionValue:
        """Parse ``text`` (a command-line string or an already typed value) to this type."""
        where = f"detector option {self.name!r} of {detector!r}"
        if self.type == "bool":
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise DetectorOptionError(f"{where} must be true or false, got {text!r}")
        if self.type == "str":
            return str(text)
        try:
            value: float | int
            if self.type == "int":
                if isinstance(text, float) and not text.is_integer():
                    raise ValueError
                value = int(text)
            else:
                value = float(text)
        except (TypeError, ValueError):
            raise DetectorOptionError(f"{where} must be {self._kind()}, got {text!r}") from None
        if not math.isfinite(value):
            raise DetectorOptionError(f"{where} must be a finite number, got {text!r}")
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise DetectorOptionError(f"{where} must lie in {self._range()}, got {text!r}")
        return value

    def _kind(self) -> str:
        return "an integer" if self.type == "int" else "a number"

    def _range(self) -> str:
        lo = "-inf" if self.minimum is None else f"{self.minimum:g}"
        hi = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"[{lo}, {hi}]"

    def describe(self) -> str:
        """``name (type, default X): help`` for listings."""
        return f"{self.name} ({self.type}, default {self.default}): {self.help}"


@dataclass(frozen=True)
class DetectorSpec:
    """One detector of the registry: how to name, configure and build it.

    Parameters
    ----------
    name
        The ``--detector`` name.
    summary
        One line for help texts.
    options
        The typed options accepted by ``--detector-option``.
    build
        ``build(model, setup, options) -> Detector`` with already parsed options.
    model
        ``"none"``: takes no model folder; ``"optional"``: a model folder, else the shipped one.
    accepts_setup
        Whether a setup profile (``--setup FILE``) can configure it.
    aliases
        Other accepted spellings.
    score_option
        The option that the commands' ``--score`` sets (a confidence floor inside the detector),
        or None when the detector has none.
    device_option
        The option that the commands' ``--device`` sets, or None (runs on the CPU only).
    setup_options
        The options that apply instead of ``options`` when a setup profile is given, or None
        when they are the same.
    requires_setup
        Whether it only works with a setup profile.
    """

    name: str
    summary: str
    options: tuple[OptionSpec, ...]
    build: Builder
    model: Literal["none", "optional"] = "none"
    accepts_setup: bool = False
    aliases: tuple[str, ...] = ()
    score_option: str | None = None
    device_option: str | None = None
    setup_options: tuple[OptionSpec, ...] | None = None
    requires_setup: bool = False

    def options_for(self, with_setup: bool) -> tuple[OptionSpec, ...]:
        """The options that apply with or without a setup profile."""
        if with_setup and self.setup_options is not None:
            return self.setup_options
        return self.options

    def option(self, name: str, *, with_setup: bool = False) -> OptionSpec:
        """The option called ``name``; raises :class:`DetectorOptionError` listing valid ones."""
        specs = self.options_for(with_setup)
        for opt in specs:
            if opt.name == name:
                return opt
        valid = ", ".join(o.name for o in specs) or "none"
        where = " with a setup profile" if with_setup and self.setup_options is not None else ""
        raise DetectorOptionError(
            f"detector {self.name!r}{where} has no option {name!r}; its options: {valid}"
        )

    def parse_options(
        self, options: Mapping[str, str | OptionValue] | None, *, with_setup: bool = False
    ) -> dict[str, OptionValue]:
        """Typed option values from strings (or values); unknown names and bad values raise."""
        return {
            k: self.option(k, with_setup=with_setup).parse(v, self.name)
            for k, v in (options or {}).items()
        }


# -- builders -------------------------------------------------------------------------------------

_OPTICS = (
    OptionSpec("gamma", "float", 1.0, "camera encoding: stored = linear ** (1/gamma)", 0.2, 5.0),
    OptionSpec("numerical_aperture", "float", 0.55, "objective NA (thin-film colours)", 0.0, 0.95),
)


def _no_model(spec_name: str, model: Path | None) -> None:
    if model is not None:
        raise UnknownDetectorError(f"detector {spec_name!r} takes no model folder (--model)")


def _build_contrast(
    model: Path | None, setup: LoadedSetup | None, options: Mapping[str, OptionValue]
) -> Detector:
    _no_model("contrast", model)
    if setup is not None:
        from flakefinder.detect.calibrated import CalibratedContrastDetector

        return CalibratedContrastDetector(
            setup.profile, flatfield=setup.flatfield, **options  # type: ignore[arg-type]
        )
    from flakefinder.detect.contrast import ContrastDetector

    return ContrastDetector(**options)  # type: ignore[arg-type]


def _build_rulebased(
    model: Path | None, setup: LoadedSetup | None, options: Mapping[str, OptionValue]
) -> Detector:
    _no_model("rulebased", model)
    from flakefinder.detect.rulebased import RuleBasedDetector

    return RuleBasedDetector(**options)  # type: ignore[arg-type]


def _build_maskrcnn(
    model: Path | None, setup: LoadedSetup | None, options: Mapping[str, OptionValue]
) -> Detector:
    if setup is not None:
        return _segment_and_classify("maskrcnn", model, setup, options)
    from flakefinder.detect.maskrcnn import MaskRCNNDetector
    from flakefinder.detect.model_folder import read_model_config

    folder = model if model is not None else _default_model()
    if read_model_config(folder).class_agnostic:
        from flakefinder.errors import ProfileError

        raise ProfileError(
            f"the model {folder} is class-agnostic (it outlines flakes; material and layer number "
            "come from a setup profile): pass --setup FILE (or --setup auto)"
        )
    return MaskRCNNDetector.from_folder(model, **options)  # type: ignore[arg-type]


def _build_union(
    model: Path | None, setup: LoadedSetup | None, options: Mapping[str, OptionValue]
) -> Detector:
    if setup is None:
        from flakefinder.errors import ProfileError

        raise ProfileError("--detector union needs a setup profile (--setup FILE or --setup auto)")
    return _segment_and_classify("union", model, setup, options)


def _default_model() -> Path:
    from flakefinder.detect.maskrcnn import default_model_folder
    from flakefinder.errors import ModelError

    folder = default_model_folder()
    if not folder.is_dir():
        raise ModelError(
            f"no default Mask R-CNN model is installed (looked in {folder}); pass --model DIR "
            "with a trained model folder, or use --detector contrast"
        )
    return folder


def _segment_and_classify(
    key: str, model: Path | None, setup: LoadedSetup, options: Mapping[str, OptionValue]
) -> Detector:
    """Mask R-CNN outlines classified by the profile (``maskrcnn``), or that plus the calibrated
    contrast detector's flakes (``union``)."""
    from flakefinder.detect.segment_classify import combined_detector

    # ``options`` were parsed against the spec's setup_options: device, score_threshold, max_sigma
    return combined_detector(
        key,
        setup=setup.profile,
        flatfield=setup.flatfield,
        model=model if model is not None else _default_model(),
        materials=setup.profile.material_names,
        **options,  # type: ignore[arg-type]
    )


DETECTORS: tuple[DetectorSpec, ...] = (
    DetectorSpec(
        "contrast",
        "training-free: background fit + thin-film colour matching (best by the benchmarks)",
        (
            OptionSpec("min_area_um2", "float", 1.0, "smallest flake kept (µm²)", 0.0),
            OptionSpec("k_sigma", "float", 5.0, "foreground: contrast > k x substrate noise", 0.0),
            OptionSpec("min_contrast", "float", 0.015, "foreground: smallest contrast", 0.0),
            OptionSpec("max_residual", "float", 0.04, "largest colour misfit kept", 0.0),
            OptionSpec("report_saturated", "bool", False, "report clipped regions as thick"),
            *_OPTICS,
        ),
        _build_contrast,
        accepts_setup=True,
        setup_options=(
            OptionSpec("min_area_um2", "float", 20.0, "smallest flake kept (µm²)", 0.0),
            OptionSpec("max_sigma", "float", 5.0, "largest Mahalanobis distance to a layer", 0.0),
            OptionSpec("max_layers", "int", None, "ignore profile layers above this count", 1),
            OptionSpec("work_um_per_px", "float", 0.75, "working resolution (µm/px)", 0.01),
        ),
    ),
    DetectorSpec(
        "rulebased",
        "the paper's baseline: fixed colour windows, edges and entropy",
        (
            OptionSpec("min_area_um2", "float", 1.0, "smallest flake kept (µm²)", 0.0),
            OptionSpec("colour_tolerance_dn", "float", 9.0, "colour window (8-bit units)", 0.0),
            OptionSpec(
                "substrate_level", "float", 0.55, "nominal substrate level (0..1)", 0.0, 1.0
            ),
            *_OPTICS,
        ),
        _build_rulebased,
        aliases=("rules", "rule-based", "rule_based"),
    ),
    DetectorSpec(
        "maskrcnn",
        "Mask R-CNN model folder (--model; default: the shipped model)",
        (
            OptionSpec("device", "str", "auto", "cpu, cuda, cuda:N or auto"),
            OptionSpec("score_threshold", "float", 0.5, "model's confidence floor", 0.0, 1.0),
            OptionSpec("mask_threshold", "float", 0.5, "mask probability cut", 0.0, 1.0),
            OptionSpec("refine_layers", "bool", True, "exact layer counts from contrast"),
            *_OPTICS,
        ),
        _build_maskrcnn,
        model="optional",
        accepts_setup=True,
        aliases=("mask-rcnn", "mask_rcnn"),
        score_option="score_threshold",
        device_option="device",
        setup_options=(
            OptionSpec("device", "str", "auto", "cpu, cuda, cuda:N or auto"),
            OptionSpec("score_threshold", "float", 0.5, "model's confidence floor", 0.0, 1.0),
            OptionSpec("max_sigma", "float", 5.0, "largest Mahalanobis distance to a layer", 0.0),
        ),
    ),
    DetectorSpec(
        "union",
        "Mask R-CNN outlines classified by the setup profile, plus the calibrated contrast"
        " detector's flakes that the network missed (needs --setup)",
        (),
        _build_union,
        model="optional",
        accepts_setup=True,
        requires_setup=True,
        score_option="score_threshold",
        device_option="device",
        setup_options=(
            OptionSpec("device", "str", "auto", "cpu, cuda, cuda:N or auto"),
            OptionSpec("score_threshold", "float", 0.5, "model's confidence floor", 0.0, 1.0),
            OptionSpec("max_sigma", "float", 5.0, "largest Mahalanobis distance to a layer", 0.0),
        ),
    ),
)


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
