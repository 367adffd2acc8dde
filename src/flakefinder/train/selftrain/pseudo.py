"""Labelled pictures for self-training: real ones labelled by the terrace detector, synthetic
ones with exact labels.

Real pictures: the terrace detector (no profile) self-calibrates on a sample of the set's
*training* pictures (held-out ones are never looked at), then labels each picture; every
terrace detection is class-agnostic ("flake"), and only those with ``confidence >=
min_confidence`` are labels. The less sure ones are kept apart (``unsure``): they become
``iscrowd`` annotations, which the loss ignores, so the network is not taught that they are
substrate. Synthetic pictures: ``synth --style realistic`` rendered at the tiles' pixel size,
every instance an exact label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.detect.tiling import crop_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flakefinder.domain import Detection, ImagingContext
    from flakefinder.train.selftrain.sources import SourceSet
    from flakefinder.train.selftrain_spec import SelfTrainSpec

Crop = tuple[int, int, np.ndarray]
FALLBACK_MATERIAL = "graphene"


@dataclass(frozen=True, eq=False)
class Labelled:
    """One training picture at its own resolution, with its labels as bool crops (x0, y0, m)."""

    key: str
    image: np.ndarray
    um_per_px: float
    labels: list[Crop]
    unsure: list[Crop] = field(default_factory=list)
    source: str = "terrace"
    source_set: str = ""
    source_file: str = ""


def _crops(dets: list[Detection]) -> list[Crop]:
    out: list[Crop] = []
    for d in dets:
        if d.mask is None:
            continue
        c = crop_of(np.asarray(d.mask, dtype=bool))
        if c is not None:
            out.append(c)
    return out


def _context(s: SourceSet, um_per_px: float, material: str) -> ImagingContext:
    from flakefinder.domain import ImagingContext

    return ImagingContext(um_per_px=um_per_px, oxide_thickness_nm=s.oxide_nm,
                          materials=(material,))  # fmt: skip


def pseudo_labelled(
    s: SourceSet, names: list[str], spec: SelfTrainSpec, say: Callable[[str], None]
) -> Iterator[Labelled]:
    """The training pictures ``names`` of set ``s``, labelled by the terrace detector.

    Unreadable pictures are named and skipped.
    """
    from flakefinder.detect.terrace.detector import TerraceDetector
    from flakefinder.domain import check_rgb_image
    from flakefinder.errors import ImageError, UnknownMaterialError
    from flakefinder.imaging import load_image

    wanted = set(names)
    images = [im for im in s.images if im.name in wanted]
    if not images:
        return
    step = max(1, len(images) // spec.calibration_images)
    sample = images[::step][: spec.calibration_images]
    pics, labels = [], []
    for im in sample:
        try:
            pics.append(check_rgb_image(load_image(im.path), what=str(im.path)))
            labels.append(im.name)
        except ImageError:
            continue  # said when its turn comes
    material = s.material
    det = TerraceDetector()
    try:
        notes = det.calibrate_on(pics, _context(s, s.um_per_px, material), labels)
    except UnknownMaterialError:
        material = FALLBACK_MATERIAL
        notes = det.calibrate_on(pics, _context(s, s.um_per_px, material), labels)
        say(f"  {s.name}: {s.material} unknown to the optics: self-calibrated as {material} "
            "(outlines only are used)")  # fmt: skip
    del pics
    for note in notes:
        say(f"  {s.name}: {note}")
    for im in images:
        try:
            rgb = check_rgb_image(load_image(im.path), what=str(im.path))
        except ImageError as exc:
            say(f"  skipped: {exc}")
            continue
        dets = det.detect_batch([rgb], _context(s, im.um_per_px, material))[0]
        sure = [d for d in dets if d.confidence >= spec.min_confidence]
        rest = [d for d in dets if d.confidence < spec.min_confidence]
        yield Labelled(f"real-{s.name}-{im.path.stem}", rgb, im.um_per_px, _crops(sure),
                       _crops(rest), "terrace", s.name, im.name)  # fmt: skip


def synthetic(spec: SelfTrainSpec, tile_px: int, tile_um_per_px: float) -> Iterator[Labelled]:
    """``spec.synth_images`` realistic synthetic tiles at ``tile_um_per_px`` (exact labels)."""
    from flakefinder.synth.realistic import SENSOR_PITCH_UM, RealisticStyle, render_realistic

    mag = SENSOR_PITCH_UM / tile_um_per_px
    style = RealisticStyle(magnification_range=(mag, mag))
    seeds = np.random.SeedSequence(spec.synth_seed).spawn(max(spec.synth_images, 1))
    for i in range(spec.synth_images):
        seed = int(seeds[i].generate_state(1)[0])
        sample = render_realistic(tile_px, tile_px, spec.synth_materials, seed=seed, style=style,
                                  min_area_px=spec.min_instance_px)  # fmt: skip
        crops = [c for c in (crop_of(inst.mask) for inst in sample.instances) if c is not None]
        yield Labelled(f"synth-{i:06d}", sample.image, sample.optics.um_per_px, crops, [],
                       "synth", "synth", f"seed {seed}")  # fmt: skip
