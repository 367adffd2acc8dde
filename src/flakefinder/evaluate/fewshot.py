"""Evaluation on real micrographs: a fixed profile, or the few-shot calibration protocol.

Few-shot (``flakefinder evaluate IMAGES --masks DIR --calibrate-on N``): for each of several
random splits, calibrate a profile on N images from their outlines alone (masks mode of
:func:`flakefinder.calibration.calibrate`: no layer numbers), detect on the other images with the
calibrated contrast detector, and score them (:mod:`flakefinder.evaluate.real`); report the mean
and standard deviation over the splits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flakefinder.calibration.profile import SetupProfile
from flakefinder.domain import ImagingContext
from flakefinder.errors import CalibrationError, DatasetError
from flakefinder.evaluate.real import RealScore, TruthImage, split_indices

Progress = Callable[[str], None]


def score_profile(
    profile: SetupProfile,
    truth: Sequence[TruthImage],
    images: Sequence[np.ndarray],
    context: ImagingContext,
    *,
    flatfield: np.ndarray | None = None,
    max_layers: int = 4,
    iou_threshold: float = 0.5,
    detector_options: dict[str, Any] | None = None,
) -> RealScore:
    """Detect with the calibrated contrast detector on ``images`` and score against ``truth``."""
    from flakefinder.detect.calibrated import CalibratedContrastDetector

    det = CalibratedContrastDetector(profile, flatfield=flatfield, **(detector_options or {}))
    score = RealScore()
    for t, im in zip(truth, images, strict=True):
        score.add(t, det.detect(im, context), iou_threshold=iou_threshold, max_layers=max_layers)
    return score


def calibrate_on_masks(
    images: Sequence[np.ndarray],
    truth: Sequence[TruthImage],
    *,
    material: str,
    oxide_nm: float,
    um_per_px: float,
) -> SetupProfile:
    """A profile for ``material`` from outlined flakes (masks mode; layers where labels give them).

    Raises
    ------
    CalibrationError
        When calibration is unavailable or the outlines cannot determine a table.
    """
    try:
        from flakefinder.calibration import (  # type: ignore[attr-defined]
            LabelledRegion,
            calibrate,
        )
    except ImportError:
        raise CalibrationError(
            "few-shot evaluation needs flakefinder.calibration.calibrate, which is missing"
        ) from None
    regions = [
        LabelledRegion(image_index=i, mask=m, n_layers=n)
        for i, t in enumerate(truth)
        for m, n in zip(t.masks, t.layers, strict=True)
    ]
    if not regions:
        raise CalibrationError("the calibration images hold no outlined flakes")
    report = calibrate(
        list(images),
        material=material,
        oxide_nm=oxide_nm,
        um_per_px=um_per_px,
        regions=regions,
        name="few-shot",
    )
    profile = getattr(report, "profile", report)
    if not isinstance(profile, SetupProfile):
        raise CalibrationError(f"calibration returned {type(profile).__name__}, not a profile")
    return profile


def few_shot(
    truth: Sequence[TruthImage],
    images: Sequence[np.ndarray],
    context: ImagingContext,
    *,
    n_calibration: int,
    n_splits: int = 3,
    seed: int = 0,
    max_layers: int = 4,
    iou_threshold: float = 0.5,
    progress: Progress | None = None,
) -> list[RealScore]:
    """The few-shot protocol over ``n_splits`` random splits (one material only).

    Raises
    ------
    DatasetError
        Too few images, or more than one material (outlines do not say which is which).
    """
    if len(context.materials) != 1:
        raise DatasetError("the few-shot protocol calibrates one material: pass one --materials")
    if n_splits < 1:
        raise DatasetError(f"--splits must be at least 1, got {n_splits}")
    scores: list[RealScore] = []
    for k, (cal, test) in enumerate(
        split_indices(len(truth), n_calibration, n_splits, seed), start=1
    ):
        profile = calibrate_on_masks(
            [images[i] for i in cal],
            [truth[i] for i in cal],
            material=context.materials[0],
            oxide_nm=context.oxide_thickness_nm,
            um_per_px=context.um_per_px,
        )
        s = score_profile(
            profile,
            [truth[i] for i in test],
            [images[i] for i in test],
            context,
            max_layers=max_layers,
            iou_threshold=iou_threshold,
        )
        if progress is not None:
            names = ", ".join(truth[i].path.name for i in cal)
            progress(
                f"split {k}: calibrated on {names}; recall {s.recall:.3f}, "
                f"precision {s.precision:.3f} on {len(test)} images"
            )
        scores.append(s)
    return scores
