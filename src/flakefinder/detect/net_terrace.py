"""Network outlines, terrace classification: a class-agnostic Mask R-CNN with no setup profile.

The network (ideally class-agnostic, trained by ``flakefinder train --recipe cpu_selftrain``)
says *where* flakes are; the terrace detector (:class:`~flakefinder.detect.terrace.detector.
TerraceDetector`) says *what* each one is, exactly as for its own terraces: it analyses the
image (substrate field, contrast, camera setting), and its per-terrace classifier
(:class:`~flakefinder.detect.terrace.classify.ProfileClassifier` with a profile, the
self-calibration of the batch without one) names material and layer number from the median
contrast of each network instance's eroded interior. An instance that does not stand out of
the substrate, or whose colour is no thickness of the material, is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from flakefinder.domain import Detection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.detect.instances import Segment
    from flakefinder.detect.terrace.classify import TerraceClassifier
    from flakefinder.detect.terrace.detector import TerraceDetector
    from flakefinder.detect.terrace.segment import TerraceMap
    from flakefinder.detect.terrace.selfcal import SettingCalibration
    from flakefinder.domain import ImagingContext


class TileSegmenter(Protocol):
    """What outlines instances (``MaskRCNNDetector``, or a test's fake)."""

    name: str
    version: str

    def segment_batch(
        self, images: Sequence[np.ndarray], *, batch_size: int = 4, um_per_px: float | None = None
    ) -> list[tuple[np.ndarray, list[Segment]]]:
        """Per image: the RGB image and its instance masks, best first."""
        ...


def classify_segments(
    tm: TerraceMap, clf: TerraceClassifier, segments: Sequence[Segment], k_sigma: float
) -> list[Detection]:
    """The segments that are flakes, as detections named by ``clf`` (order kept).

    Confidence is the network's score; the layer call's confidence and alternative come with it.
    """
    from flakefinder.detect.maskrcnn import mask_to_polygon

    out: list[Detection] = []
    for seg in segments:
        c, significant = tm.mask_contrast(seg.mask, k_sigma)
        if not significant:
            continue
        call = clf.classify(c)
        if not call.fits_material:
            continue
        polygon = mask_to_polygon(seg.mask)
        if polygon is None:
            continue
        v = np.where(np.isfinite(c), c, 0.0)
        out.append(
            Detection(
                material=call.material,
                layer_class=call.layer_class,
                confidence=round(float(seg.score), 4),
                polygon_px=polygon,
                bbox_px=seg.bbox_px,
                area_px=float(np.count_nonzero(seg.mask)),
                layer_count=call.n_layers,
                contrast_rgb=(float(v[0]), float(v[1]), float(v[2])),
                mask=seg.mask,
                layer_confidence=round(call.confidence, 4),
                layer_alternative=call.alternative,
            )
        )
    return out


@dataclass
class _Delegates:
    """Self-calibration and its notes come from the terrace detector (``SelfCalibrating``)."""

    segmenter: TileSegmenter
    terrace: TerraceDetector

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        """The flakes of one image (a batch of one)."""
        return self.detect_batch([image], context)[0]

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext, **_: Any
    ) -> list[list[Detection]]:  # pragma: no cover - each detector has its own
        raise NotImplementedError

    @property
    def needs_calibration(self) -> bool:
        """True until the terrace detector has a profile or a calibration."""
        return self.terrace.needs_calibration

    def calibrate_on(
        self, images: Sequence[np.ndarray], context: ImagingContext, names: Sequence[str]
    ) -> list[str]:
        """Self-calibrate the terrace classification on a sample of the batch to come."""
        return self.terrace.calibrate_on(images, context, names)

    @property
    def calibrations(self) -> list[SettingCalibration]:
        """The camera settings the terrace detector calibrated (for ``settings.json``)."""
        return self.terrace.calibrations

    @property
    def notes(self) -> list[str]:
        """What the terrace detector did, one line each."""
        return self.terrace.notes

    @property
    def profile(self) -> SetupProfile | None:
        """The setup profile in use (None: self-calibrating)."""
        return self.terrace.profile

    def _analysed(
        self, images: Sequence[np.ndarray], context: ImagingContext, batch_size: int
    ) -> list[tuple[TerraceMap | None, TerraceClassifier | None, list[Segment]]]:
        pairs = self.terrace.analyse(images, context)
        segs = self.segmenter.segment_batch(images, batch_size=batch_size,
                                            um_per_px=context.um_per_px)  # fmt: skip
        return [(tm, clf, s) for (tm, clf), (_, s) in zip(pairs, segs, strict=True)]


@dataclass
class NetTerraceDetector(_Delegates):
    """Network instances classified per terrace (``--detector maskrcnn`` with a class-agnostic
    model and no setup profile); implements ``Detector``, ``BatchDetector``, ``SelfCalibrating``.
    """

    batch_size: int = 1
    name: str = "maskrcnn"
    version: str = field(init=False)

    def __post_init__(self) -> None:
        """Version: the segmenter's and the terrace detector's."""
        self.version = f"{self.segmenter.version}+terrace-{self.terrace.version}"

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext, **_: Any
    ) -> list[list[Detection]]:
        """Segment ``images`` and classify every instance (self-calibrating when needed)."""
        k = self.terrace.settings.k_sigma
        return [
            [] if tm is None or clf is None else classify_segments(tm, clf, segs, k)
            for tm, clf, segs in self._analysed(images, context, self.batch_size)
        ]
