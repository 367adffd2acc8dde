"""RuleBasedDetector: works at the illumination it was tuned for, loses flakes when dimmed."""

from __future__ import annotations

import numpy as np

from detect_helpers import chip, context, instances, render
from flakefinder.detect.rulebased import RuleBasedDetector, local_entropy
from flakefinder.domain import Detector
from flakefinder.evaluate.matching import match_masks


def _found(dets, gt):
    m = match_masks([d.mask for d in dets], [g.mask for g in gt])
    return sorted(gt[g].n_layers for _, g, _ in m.matches)


def test_is_a_detector():
    det = RuleBasedDetector()
    assert isinstance(det, Detector) and det.name == "rulebased" and det.version


def test_finds_the_flakes_at_nominal_illumination():
    c = chip()
    dets = RuleBasedDetector().detect(render(c, inhomogeneity=0.0), context())
    assert _found(dets, instances(c)) == [1, 3, 20]
    classes = sorted(
        (d.layer_count, d.layer_class.value) for d in dets if d.layer_count in (1, 3, 20)
    )
    assert ("few" in {v for _, v in classes}) and ("mono" in {v for _, v in classes})


def test_loses_the_flakes_when_the_lamp_is_dimmed():
    c = chip()
    dets = RuleBasedDetector().detect(render(c, inhomogeneity=0.0, illumination=0.6), context())
    assert _found(dets, instances(c)) == []


def test_calibrated_substrate_colour_restores_detection():
    """Retuning (the expert's step) on the dimmed image brings the flakes back."""
    c = chip()
    img = render(c, inhomogeneity=0.0, illumination=0.6)
    bare = render(chip(flakes=False, debris=False), inhomogeneity=0.0, illumination=0.6)
    sub = tuple(float(v) for v in np.median(bare.reshape(-1, 3), axis=0))
    dets = RuleBasedDetector(substrate_rgb8=sub).detect(img, context())
    assert _found(dets, instances(c)) == [1, 3, 20]


def test_local_entropy():
    flat = np.full((32, 32), 100, np.uint8)
    assert float(local_entropy(flat).max()) == 0.0
    noisy = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
    assert float(np.median(local_entropy(noisy))) > 3.0
