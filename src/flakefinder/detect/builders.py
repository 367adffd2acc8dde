"""The detectors of the registry: one :class:`DetectorSpec` entry each, and their builders.

Adding a detector means adding one entry to :data:`DETECTORS` (with its typed options and a
``build(model, setup, options)`` callable); :mod:`flakefinder.detect.registry` turns the table into
``--detector`` help, validation and construction. Heavy imports (torch) happen inside the builders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flakefinder.detect.specs import DetectorSpec, OptionSpec, OptionValue
from flakefinder.errors import UnknownDetectorError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from flakefinder.detect.maskrcnn import MaskRCNNDetector
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.detect.terrace.detector import TerraceDetector
    from flakefinder.domain import Detector

_OPTICS = (
    OptionSpec("gamma", "float", 1.0, "camera encoding: stored = linear ** (1/gamma)", 0.2, 5.0),
    OptionSpec("numerical_aperture", "float", 0.55, "objective NA (thin-film colours)", 0.0, 0.95),
)

_SEGMENT_CLASSIFY = (
    OptionSpec("device", "str", "auto", "cpu, cuda, cuda:N or auto"),
    OptionSpec("score_threshold", "float", 0.5, "model's confidence floor", 0.0, 1.0),
    OptionSpec("max_sigma", "float", 5.0, "largest Mahalanobis distance to a layer", 0.0),
)
"""Options of Mask R-CNN outlines classified by a setup profile (``maskrcnn`` + setup)."""

_UNION = (
    *_SEGMENT_CLASSIFY[:2],
    OptionSpec("max_sigma", "float", 4.0, "largest Mahalanobis distance to a layer", 0.0),
)
"""Options of ``union``: the network's device and score floor, the terrace classifier's sigma."""


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


def _build_terrace(
    model: Path | None, setup: LoadedSetup | None, options: Mapping[str, OptionValue]
) -> Detector:
    _no_model("terrace", model)
    from flakefinder.detect.terrace.detector import TerraceDetector

    return TerraceDetector(None if setup is None else setup.profile, **options)  # type: ignore[arg-type]


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
        # outlines from the network, material and layers from the terrace classifier
        from flakefinder.detect.net_terrace import NetTerraceDetector

        seg_opts = {k: v for k, v in options.items()
                    if k in ("device", "score_threshold", "mask_threshold")}  # fmt: skip
        return NetTerraceDetector(_segmenter(folder, seg_opts), _terrace(None, options))
    return MaskRCNNDetector.from_folder(model, **options)  # type: ignore[arg-type]


def _segmenter(folder: Path, options: Mapping[str, OptionValue]) -> MaskRCNNDetector:
    """The network of ``folder`` as an outline source (any model; classes ignored)."""
    from flakefinder.detect.maskrcnn import MaskRCNNDetector

    return MaskRCNNDetector.from_folder(
        folder, refine_layers=False, segment_only=True, **options  # type: ignore[arg-type]
    )


def _terrace(setup: LoadedSetup | None, options: Mapping[str, OptionValue]) -> TerraceDetector:
    from flakefinder.detect.terrace.detector import TerraceDetector

    sigma = {"max_sigma": options["max_sigma"]} if "max_sigma" in options else {}
    return TerraceDetector(None if setup is None else setup.profile, **sigma)  # type: ignore[arg-type]


def _build_union(
    model: Path | None, setup: LoadedSetup | None, options: Mapping[str, OptionValue]
) -> Detector:
    """The terrace detector (with the profile, or self-calibrating) with the network's instances
    where they help (:mod:`flakefinder.detect.union`)."""
    from flakefinder.detect.union import TerraceUnionDetector

    folder = model if model is not None else _default_model()
    seg_opts = {k: v for k, v in options.items() if k in ("device", "score_threshold")}
    return TerraceUnionDetector(_segmenter(folder, seg_opts), _terrace(setup, options))


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
        "terrace",
        "terraces segmented from the image itself, classified per terrace by the setup profile,"
        " or self-calibrated on the images given (no labels needed)",
        (
            OptionSpec("min_area_um2", "float", 0.25, "smallest terrace kept (µm²)", 0.0),
            OptionSpec("max_sigma", "float", 4.0, "largest Mahalanobis distance to a layer", 0.0),
            OptionSpec("long_side_px", "int", 1024, "working resolution (longer side, px)", 64, 8192),
            OptionSpec("k_sigma", "float", 4.0, "foreground: contrast > k x substrate noise", 0.0),
        ),
        _build_terrace,
        accepts_setup=True,
        aliases=("terraces", "segment"),
    ),
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
        "Mask R-CNN model folder (--model; default: the shipped model); a class-agnostic model"
        " is classified per terrace (self-calibrating, or by --setup)",
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
        setup_options=_SEGMENT_CLASSIFY,
    ),
    DetectorSpec(
        "union",
        "the terrace detector's flakes plus the Mask R-CNN's where the terraces miss or split"
        " them (with --setup, or self-calibrating)",
        _UNION,
        _build_union,
        model="optional",
        accepts_setup=True,
        score_option="score_threshold",
        device_option="device",
    ),
)
