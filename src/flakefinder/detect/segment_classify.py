"""Segment, then classify by the setup profile: Mask R-CNN outlines, calibrated colours.

The segmenter (a Mask R-CNN, ideally class-agnostic: one "flake" class trained on realistic
synthetic images) says *where* flakes are; the setup profile
(:class:`~flakefinder.calibration.profile.SetupProfile`, calibrated on the lab's own microscope)
says *what* each one is. Per image the calibrated contrast is prepared once
(:func:`flakefinder.detect.calibrated.prepare`: substrate from the image, flat-field, contrast
``C = I / I_bg - 1``, per-pixel classes); per instance the median contrast of its eroded interior
goes to the nearest (material, layers) Gaussian by Mahalanobis distance, and the instance is
dropped when that distance exceeds ``max_sigma`` (bulk, residue, dust: colours no layer explains).

:class:`UnionDetector` merges two detectors' results (e.g. this one and the calibrated contrast
detector): a detection of the second is added unless it overlaps one of the first at IoU >= 0.5.

torch-free here; the segmenter is any object with ``segment_batch`` (``MaskRCNNDetector``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from flakefinder.calibration.profile import SetupProfile, check_compatible
from flakefinder.detect.calibrated import InstanceClass, prepare, work_factor
from flakefinder.detect.gaussians import LayerGaussian, layer_gaussians
from flakefinder.domain import Detection, Detector, ImagingContext, LayerClass, check_rgb_image
from flakefinder.errors import ProfileError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class Segmenter(Protocol):
    """What :class:`SegmentClassifyDetector` needs from a segmentation model."""

    version: str

    def segment_batch(
        self, images: Sequence[np.ndarray], *, batch_size: int = 4, um_per_px: float | None = None
    ) -> list[tuple[np.ndarray, list[Any]]]:
        """Per image: (RGB uint8, segments with ``mask``, ``bbox_px`` and ``score``); a model
        trained on tiles runs tiled at ``um_per_px``."""
        ...


def classify_masks(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    profile: SetupProfile,
    materials: Sequence[str],
    *,
    um_per_px: float | None = None,
    max_sigma: float = 5.0,
    flatfield: np.ndarray | None = None,
    work_um_per_px: float = 0.75,
    gaussians: Sequence[LayerGaussian] | None = None,
) -> list[InstanceClass]:
    """Material and exact layer number of each instance mask, by the profile's Gaussians.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, 3) uint8 RGB.
    masks : sequence of numpy.ndarray
        (H, W) bool masks, one per instance.
    profile : SetupProfile
        Colour tables; every one of ``materials`` must be in it.
    materials : sequence of str
        Materials to consider.
    um_per_px : float, optional
        Pixel size (default: the profile's).
    max_sigma : float
        Largest Mahalanobis distance of an instance's median contrast to its class.
    flatfield : numpy.ndarray, optional
        The profile's flat-field (mean 1).
    work_um_per_px : float
        Working pixel size of the contrast (as the calibrated detector).
    gaussians : sequence of LayerGaussian, optional
        Precomputed ``layer_gaussians(profile, materials)``.

    Returns
    -------
    list of InstanceClass
        One per mask; ``material is None`` when no class lies within ``max_sigma``.

    Raises
    ------
    ProfileError
        When the profile lacks one of ``materials``.
    ValueError
        When a mask's shape differs from the image's.
    """
    img = check_rgb_image(image)
    h, w = img.shape[:2]
    for m in masks:
        if np.asarray(m).shape != (h, w):
            raise ValueError(f"mask shape {np.asarray(m).shape} differs from the image's {(h, w)}")
    if not masks:
        return []
    gs = tuple(gaussians) if gaussians is not None else layer_gaussians(profile, materials)
    f = work_factor(um_per_px or profile.um_per_px, work_um_per_px)
    prep = prepare(img, gs, factor=f, max_sigma=max_sigma, flatfield=flatfield)
    hs, ws = prep.contrast.shape[:2]
    kernel = np.ones((3, 3), np.uint8)
    out: list[InstanceClass] = []
    for m in masks:
        mu8 = (np.asarray(m)[: hs * f, : ws * f] > 0).astype(np.uint8) * np.uint8(255)
        small = cv2.resize(mu8, (ws, hs), interpolation=cv2.INTER_AREA) >= 128
        inner = cv2.erode(small.view(np.uint8), kernel).astype(bool)
        sel = inner if int(inner.sum()) >= 4 else small
        if not sel.any():
            out.append(InstanceClass(None, None, 0.0, (0.0, 0.0, 0.0), math.inf))
            continue
        med = np.median(prep.contrast[sel], axis=0).astype(np.float32)
        crgb = (float(med[0]), float(med[1]), float(med[2]))
        d = np.array([float(np.sqrt(g.distance2(med.reshape(1, 1, 3))[0, 0])) for g in gs])
        best = int(np.argmin(d))
        if d[best] > max_sigma:
            out.append(InstanceClass(None, None, 0.0, crgb, float(d[best])))
            continue
        votes = np.bincount(prep.classes.labels[sel].ravel(), minlength=len(gs) + 2)
        share = float(votes[best + 1]) / float(sel.sum())
        g = gs[best]
        out.append(InstanceClass(g.material, g.n_layers, share, crgb, float(d[best])))
    return out


@dataclass
class SegmentClassifyDetector:
    """Mask R-CNN instance masks classified by a setup profile (``--detector maskrcnn --setup``).

    Confidence = segmenter score x (1 - distance / max_sigma / 2): a well-explained colour keeps
    the network's score, a borderline one halves it.
    """

    segmenter: Segmenter
    profile: SetupProfile
    flatfield: np.ndarray | None = None
    max_sigma: float = 5.0
    batch_size: int = 1
    name: str = "maskrcnn+setup"
    version: str = field(init=False)

    def __post_init__(self) -> None:
        """Version: the segmenter's and the profile id."""
        self.version = f"{self.segmenter.version}+{self.profile.profile_id}"

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        """Detections of one image (see :meth:`detect_batch`)."""
        return self.detect_batch([image], context)[0]

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext, *, batch_size: int = 4
    ) -> list[list[Detection]]:
        """Segment ``images`` and classify every instance by the profile.

        Raises
        ------
        ProfileError
            When the profile lacks one of ``context.materials``.
        """
        check_compatible(self.profile, materials=context.materials)
        gs = layer_gaussians(self.profile, context.materials)
        out: list[list[Detection]] = []
        for rgb, segs in self.segmenter.segment_batch(
            images, batch_size=batch_size, um_per_px=context.um_per_px
        ):
            classes = classify_masks(
                rgb,
                [s.mask for s in segs],
                self.profile,
                context.materials,
                um_per_px=context.um_per_px,
                max_sigma=self.max_sigma,
                flatfield=self.flatfield,
                gaussians=gs,
            )
            out.append(_detections(segs, classes, self.max_sigma))
        return out


def _detections(
    segs: Sequence[Any], classes: Sequence[InstanceClass], max_sigma: float
) -> list[Detection]:
    from flakefinder.detect.maskrcnn import mask_to_polygon

    dets: list[Detection] = []
    for seg, c in zip(segs, classes, strict=True):
        if c.material is None or c.n_layers is None:
            continue
        layer_class = LayerClass.from_layers(c.n_layers)
        polygon = mask_to_polygon(seg.mask)
        if layer_class is None or polygon is None:
            continue
        conf = float(seg.score) * (1.0 - 0.5 * min(c.sigma / max_sigma, 1.0))
        dets.append(
            Detection(
                material=c.material,
                layer_class=layer_class,
                confidence=conf,
                polygon_px=polygon,
                bbox_px=seg.bbox_px,
                area_px=float(np.count_nonzero(seg.mask)),
                layer_count=c.n_layers,
                contrast_rgb=c.contrast_rgb,
                mask=seg.mask,
            )
        )
    return dets


def mask_iou(a: Detection, b: Detection, shape: tuple[int, int]) -> float:
    """IoU of two detections' masks (polygons rasterised when a mask is missing)."""
    ma, mb = rasterised_mask(a, shape), rasterised_mask(b, shape)
    inter = int(np.count_nonzero(ma & mb))
    if inter == 0:
        return 0.0
    return inter / float(np.count_nonzero(ma | mb))


def rasterised_mask(d: Detection, shape: tuple[int, int]) -> np.ndarray:
    """A detection's bool mask of ``shape``: its own, or its polygon filled."""
    if d.mask is not None and d.mask.shape == shape:
        return np.asarray(d.mask, dtype=bool)
    m = np.zeros(shape, dtype=np.uint8)
    pts = np.round(np.asarray(d.polygon_px, dtype=np.float64)).astype(np.int32)
    if len(pts) >= 3:
        cv2.fillPoly(m, [pts.reshape(-1, 1, 2)], 1)
    return m.astype(bool)


@dataclass
class UnionDetector:
    """Detections of ``first``, plus those of ``second`` that overlap none of them (IoU < 0.5)."""

    first: Detector
    second: Detector
    iou_threshold: float = 0.5
    name: str = "union"
    version: str = field(init=False)

    def __post_init__(self) -> None:
        """Version: both detectors' names and versions."""
        self.version = (
            f"{self.first.name}:{self.first.version}|{self.second.name}:{self.second.version}"
        )

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        """The union of both detectors' flakes on ``image``."""
        shape = (int(image.shape[0]), int(image.shape[1]))
        a = self.first.detect(image, context)
        b = self.second.detect(image, context)
        merged = list(a)
        for d in b:
            if all(_box_disjoint(d, k) or mask_iou(d, k, shape) < self.iou_threshold for k in a):
                merged.append(d)
        return merged


def _box_disjoint(a: Detection, b: Detection) -> bool:
    ax0, ay0, ax1, ay1 = a.bbox_px
    bx0, by0, bx1, by1 = b.bbox_px
    return ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def check_model_materials(
    known: Sequence[str], profile: SetupProfile, wanted: Sequence[str]
) -> None:
    """Refuse a profile or material list the model was not trained for.

    Raises
    ------
    ProfileError
        When ``wanted`` materials are missing from the profile, or (if the model records its
        training materials) none of the profile's wanted materials is one the model knows.
    """
    check_compatible(profile, materials=wanted)
    if known:
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise ProfileError(
                f"the model was trained on {', '.join(known)}, not on {', '.join(unknown)}; "
                "use a model trained on these materials (or class-agnostic) or drop them "
                "from --materials"
            )


def combined_detector(
    key: str,
    *,
    setup: SetupProfile,
    flatfield: np.ndarray | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    score_threshold: float = 0.5,
    max_sigma: float = 5.0,
    materials: Sequence[str] = (),
) -> Detector:
    """``maskrcnn`` with a setup profile (built by the detector registry); ``union`` here is the
    older combination with the calibrated contrast detector (``bench_segment_classify.py``).

    ``model`` is the model folder (None: the shipped one); ``materials`` are checked against the
    materials a class-aware model knows.
    """
    from flakefinder.detect.maskrcnn import MaskRCNNDetector

    profile = setup
    seg = MaskRCNNDetector.from_folder(
        model,
        device=device,
        score_threshold=score_threshold,
        refine_layers=False,
        segment_only=True,
    )
    if materials:
        known = () if seg.config.class_agnostic else seg.config.known_materials
        check_model_materials(known, profile, materials)
    combined = SegmentClassifyDetector(seg, profile, flatfield=flatfield, max_sigma=max_sigma)
    if key != "union":
        return combined
    from flakefinder.detect.calibrated import CalibratedContrastDetector

    return UnionDetector(combined, CalibratedContrastDetector(profile, flatfield=flatfield))
