"""The protocol of ``benchmarks/bench_real.py``: any registry detector on the real sets.

Scoring (:func:`~flakefinder.evaluate.real_score.score_terraces`): every detection the detector
reports counts (bulk is not reported). Detections are matched one-to-one to the outlined
terraces, greedily by confidence, at mask IoU >= 0.5. A terrace is *found* when matched; recall
is over the outlined terraces except those labelled thicker than the numbered ones (NbSe2
``>5L``): a detection matched to one of those is correct, but they are not counted as missed.
Precision (correct / detections) is meaningful only where every flake is outlined. Layer
accuracy is the share of matched terraces with a known layer number whose detection's
``layer_count`` equals it.

Modes (:func:`run_mode`):

``none``
    The detector with no labels and no profile, on all images of the set in one batch
    (``detect_batch`` when the detector has it, so a self-calibrating detector sees the batch).
``labels2``
    :func:`flakefinder.calibration.calibrate` on 2 labelled images (their numbered terraces;
    masks mode where the labels have no layer numbers), the detector built with that profile,
    scored on the other images; repeated over seeded splits (mean and sd).
``table``
    The lab's own colour table (2DMatGMM JSON) imported as a profile, where a set has one.

On a set without labels (2DMatGMM), the ``table`` mode's detections are the reference: the
other modes report their *agreement* with it (same numbers, not accuracy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flakefinder.domain import keep_confident
from flakefinder.errors import DatasetError, FlakefinderError
from flakefinder.evaluate.real import TruthImage, split_indices
from flakefinder.evaluate.real_score import ModeResult, TerraceScore, is_thick, score_terraces
from flakefinder.evaluate.real_types import LabelledImage, RealSet

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import numpy as np

    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.domain import Detection, Detector, ImagingContext

__all__ = [
    "MODES",
    "ModeResult",
    "TerraceScore",
    "run_mode",
    "score_terraces",
    "setup_of",
]

MODES = ("none", "labels2", "table")
NOMINAL_OXIDE_NM = 90.0
NOMINAL_UM_PER_PX = {"150x": 0.1, "20x": 0.35}  # by objective, where a set does not say


@dataclass(frozen=True)
class SetSetup:
    """What a run assumes about a set's setup; ``assumed`` names the nominal values used."""

    material: str
    oxide_nm: float
    um_per_px: float
    assumed: tuple[str, ...]


def setup_of(rs: RealSet) -> SetSetup:
    """The set's oxide and pixel size, nominal ones (90 nm; by objective) where unknown."""
    assumed = []
    oxide = rs.oxide_nm
    if oxide is None:
        oxide = NOMINAL_OXIDE_NM
        assumed.append(f"oxide {oxide:g} nm nominal")
    um = rs.um_per_px
    if um is None:
        um = NOMINAL_UM_PER_PX.get(rs.objective, 0.35)
        assumed.append(f"{um:g} um/px nominal ({rs.objective})")
    return SetSetup(rs.material, float(oxide), float(um), tuple(assumed))


COMMAND_SCORE = 0.5
"""The commands' default ``--score`` (``cli.options.DEFAULT_SCORE``): detections below it are
not what a user gets, so they are not scored either."""


def _strip(dets: Sequence[Detection]) -> tuple[Detection, ...]:
    return tuple(replace(d, mask=None) if d.mask is not None else d for d in dets)


@dataclass
class _Run:
    """Scores and stripped detections, filled image by image (full masks never pile up)."""

    score: TerraceScore
    detections: list[tuple[Detection, ...]]
    ms: list[float]

    def add(self, truth: TruthImage | None, dets: Sequence[Detection], iou: float) -> None:
        dets = keep_confident(dets, COMMAND_SCORE)  # what `detect` keeps by default (--score)
        if truth is None:
            self.score.add(TerraceScore(n_images=1, n_detections=len(dets)))
        else:
            self.score.add(score_terraces(truth, dets, iou_threshold=iou))
        self.detections.append(_strip(dets))


def _new_run() -> _Run:
    return _Run(TerraceScore(), [], [])


def _detect_each(
    det: Detector, images: Sequence[np.ndarray], idx: Sequence[int], ctx: ImagingContext,
    truth_of: Callable[[int], TruthImage | None] | None, iou: float,
) -> _Run:
    """Detect on each image in turn, timing it; scored and stripped unless ``truth_of`` is None."""
    run = _new_run()
    for i in idx:
        t0 = time.perf_counter()
        dets = det.detect(images[i], ctx)
        run.ms.append(1000.0 * (time.perf_counter() - t0))
        if truth_of is not None:
            run.add(truth_of(i), dets, iou)
    return run


def _context(setup: SetSetup, material: str | None = None) -> ImagingContext:
    from flakefinder.domain import ImagingContext

    return ImagingContext(
        um_per_px=setup.um_per_px,
        oxide_thickness_nm=setup.oxide_nm,
        materials=(material or setup.material,),
    )


def _run_none(
    rs: RealSet, images: Sequence[np.ndarray], name: str, setup: SetSetup,
    truth_of: Callable[[int], TruthImage | None], kind: str, stand_in: str | None,
    iou: float, timing_images: int, model: Path | None = None,
) -> ModeResult:
    from flakefinder.detect.registry import create_detector
    from flakefinder.domain import BatchDetector
    from flakefinder.errors import UnknownMaterialError

    idx = list(range(len(images)))
    notes = list(setup.assumed)
    material: str | None = None
    while True:
        ctx = _context(setup, material)
        try:
            det = create_detector(name, model=model)
            if isinstance(det, BatchDetector):
                t0 = time.perf_counter()
                found = det.detect_batch(list(images), ctx)
                batch_s = time.perf_counter() - t0
                run = _new_run()
                for i in idx:
                    run.add(truth_of(i), found[i], iou)
                    found[i] = []  # drop the full masks as soon as they are scored
                run.ms = _detect_each(det, images, idx[:timing_images], ctx, None, iou).ms
                notes.append(
                    f"one batch of {len(idx)}: {batch_s:.1f} s incl. self-calibration; "
                    f"ms/img from {len(run.ms)} images after it"
                )
            else:
                run = _detect_each(det, images, idx, ctx, truth_of, iou)
            break
        except UnknownMaterialError as exc:
            if stand_in is None or material is not None:
                return ModeResult(rs.name, "none", "n/a", len(idx), notes=(*notes, f"error: {exc}"))
            material = stand_in
            notes.append(f"{setup.material} unknown to the detector: ran as {stand_in}")
        except FlakefinderError as exc:
            return ModeResult(rs.name, "none", "n/a", len(idx), notes=(*notes, f"error: {exc}"))
    return ModeResult(
        rs.name, "none", kind, len(idx), (run.score,), tuple(run.ms), (), tuple(notes),
        exhaustive=rs.exhaustive, layers_comparable=material is None,
        image_indices=tuple(idx), detections=tuple(run.detections),
        detector_notes=tuple(str(n) for n in getattr(det, "notes", ()) or ()),
    )


def _regions(truth: Sequence[TruthImage]) -> list[Any]:
    from flakefinder.calibration.api import LabelledRegion

    out = [
        LabelledRegion(j, m, n)
        for j, t in enumerate(truth)
        for k, (m, n) in enumerate(zip(t.masks, t.layers, strict=True))
        if not is_thick(t, k) and m.any()
    ]
    if any(r.n_layers is not None for r in out):
        out = [r for r in out if r.n_layers is not None]
    return out


def _run_labels2(
    rs: RealSet, images: Sequence[np.ndarray], name: str, setup: SetSetup,
    truth_of: Callable[[int], TruthImage | None], kind: str, has_truth: bool,
    splits: int, seed: int, iou: float, model: Path | None = None,
) -> ModeResult:
    from flakefinder.calibration.api import calibrate
    from flakefinder.detect.registry import create_detector, detector_spec

    n = len(images)
    notes = list(setup.assumed)
    if not has_truth:
        return ModeResult(rs.name, "labels2", "n/a", n, notes=("n/a (no labels)",))
    if n < 3:
        return ModeResult(
            rs.name, "labels2", "n/a", n, notes=(f"n/a ({n} image(s); needs 2 + 1)",)
        )
    if not detector_spec(name).accepts_setup:
        return ModeResult(rs.name, "labels2", "n/a", n, notes=(f"n/a ({name} takes no profile)",))
    ctx = _context(setup)
    scores: list[TerraceScore] = []
    ms_all: list[float] = []
    cal_s: list[float] = []
    failures: list[str] = []
    first: tuple[list[int], _Run] | None = None
    for k, (cal, test) in enumerate(split_indices(n, 2, splits, seed)):
        truths = [truth_of(i) for i in cal]
        regions = _regions([t for t in truths if t is not None])
        if not regions:
            failures.append(f"split {k}: no labelled terrace in the 2 calibration images")
            continue
        try:
            t0 = time.perf_counter()
            report = calibrate(
                [images[i] for i in cal], material=setup.material, oxide_nm=setup.oxide_nm,
                um_per_px=setup.um_per_px, regions=regions, name=f"{rs.name}-split{k}",
            )
            cal_s.append(time.perf_counter() - t0)
            det = create_detector(name, model=model, setup=report.profile)
            run = _detect_each(det, images, test, ctx, truth_of, iou)
        except FlakefinderError as exc:
            failures.append(f"split {k}: {exc}")
            continue
        scores.append(run.score)
        ms_all.extend(run.ms)
        if first is None:
            first = (test, run)
    if failures:
        notes.append(f"{len(failures)}/{splits} splits failed: {failures[0]}")
    return ModeResult(
        rs.name, "labels2", kind if scores else "n/a", n - 2, tuple(scores), tuple(ms_all),
        tuple(cal_s), tuple(notes), exhaustive=rs.exhaustive,
        image_indices=tuple(first[0]) if first else (),
        detections=tuple(first[1].detections) if first else (),
    )


def _run_table(
    rs: RealSet, images: Sequence[np.ndarray], name: str, setup: SetSetup,
    truth_of: Callable[[int], TruthImage | None], iou: float, model: Path | None = None,
) -> ModeResult:
    from flakefinder.calibration.gmm import import_gmm
    from flakefinder.detect.registry import create_detector

    n = len(images)
    if rs.lab_table is None:
        return ModeResult(rs.name, "table", "n/a", n, notes=("n/a (no lab table)",))
    notes = list(setup.assumed)
    try:
        t0 = time.perf_counter()
        profile: SetupProfile = import_gmm(
            rs.lab_table, material=setup.material, oxide_nm=setup.oxide_nm,
            um_per_px=setup.um_per_px, name=f"{rs.name}-lab-table",
        )
        cal_s = time.perf_counter() - t0
        det = create_detector(name, model=model, setup=profile)
        idx = list(range(n))
        run = _detect_each(det, images, idx, _context(setup), truth_of, iou)
    except FlakefinderError as exc:
        return ModeResult(rs.name, "table", "n/a", n, notes=(*notes, f"error: {exc}"))
    kind = "accuracy" if rs.truth is not None else "reference"
    notes.append(f"lab table {rs.lab_table.name}")
    tabled = {(t.material, e.n_layers) for t in profile.materials for e in t.layers}
    return ModeResult(
        rs.name, "table", kind, n, (run.score,), tuple(run.ms), (cal_s,), tuple(notes),
        exhaustive=rs.exhaustive, image_indices=tuple(idx),
        detections=tuple(tuple(_table_layers(d, tabled) for d in dets) for dets in run.detections),
    )


def _table_layers(det: Detection, tabled: set[tuple[str, int]]) -> Detection:
    """``det`` with its layer number only where the lab's table holds that layer: a number the
    classifier read beyond the table's ends is its own estimate, not the lab's (agreement rows
    compare layer numbers with the table's only)."""
    if det.layer_count is None or (det.material, det.layer_count) in tabled:
        return det
    return replace(det, layer_count=None, layer_alternative=None)


def _no_truth(i: int) -> TruthImage | None:
    return None


def reference_truth(
    rs: RealSet, reference: ModeResult, images: Sequence[np.ndarray]
) -> Callable[[int], TruthImage | None]:
    """Truth from the ``table`` mode's detections (their outlines and layer numbers)."""
    from flakefinder.evaluate.cocodata import detection_mask

    by_image = dict(zip(reference.image_indices, reference.detections, strict=True))

    def truth_of(i: int) -> TruthImage | None:
        if i not in by_image:
            return None
        h, w = images[i].shape[:2]
        dets = by_image[i]
        masks = tuple(detection_mask(d, h, w) for d in dets)
        return LabelledImage(rs.images[i], masks, tuple(d.layer_count for d in dets))

    return truth_of


def run_mode(
    rs: RealSet,
    images: Sequence[np.ndarray],
    mode: str,
    detector: str,
    *,
    reference: ModeResult | None = None,
    splits: int = 3,
    seed: int = 0,
    stand_in: str | None = None,
    iou_threshold: float = 0.5,
    timing_images: int = 8,
    model: Path | None = None,
) -> ModeResult:
    """Run one mode of the protocol on a loaded set (``images``: its pictures, RGB uint8).

    ``reference``: the ``table`` mode's result, on a set without labels (agreement rows).
    ``stand_in``: a material the detector knows, used in mode ``none`` when it does not know
    the set's material (layer numbers are then not compared). ``model``: the detector's model
    folder (None: its default).
    """
    if mode not in MODES:
        raise DatasetError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if len(images) != len(rs.images):
        raise DatasetError(f"{rs.name}: {len(images)} images given for {len(rs.images)} files")
    setup = setup_of(rs)
    truth_of: Callable[[int], TruthImage | None]
    if rs.truth is not None:
        truth_of, kind, has_truth = rs.truth.__getitem__, "accuracy", True
    elif reference is not None and reference.kind == "reference":
        truth_of, kind, has_truth = reference_truth(rs, reference, images), "agreement", True
    else:
        truth_of, kind, has_truth = _no_truth, "counts", False
    if mode == "none":
        return _run_none(
            rs, images, detector, setup, truth_of, kind, stand_in, iou_threshold, timing_images,
            model,
        )
    if mode == "labels2":
        return _run_labels2(
            rs, images, detector, setup, truth_of, kind, has_truth, splits, seed, iou_threshold,
            model,
        )
    return _run_table(rs, images, detector, setup, truth_of, iou_threshold, model)

