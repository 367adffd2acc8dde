"""Calibrated contrast detector: hand-built and synth-rendered images with known flakes."""

from __future__ import annotations

import numpy as np
import pytest

from calibrated_helpers import CONTRAST, SUBSTRATE, UM
from calibrated_helpers import ctx as _ctx
from calibrated_helpers import iou as _iou
from calibrated_helpers import profile as _profile
from calibrated_helpers import scene as _scene
from detect_helpers import chip, instances, render
from flakefinder.detect.calibrated import CalibratedContrastDetector, classify_instance
from flakefinder.detect.registry import create_detector
from flakefinder.domain import Detector, ImagingContext, LayerClass
from flakefinder.errors import ProfileError
from flakefinder.evaluate.matching import match_masks
from flakefinder.evaluate.synth_cameras import model_profile


def test_is_a_detector_and_registry_builds_it():
    det = create_detector("contrast", setup=_profile())
    assert isinstance(det, CalibratedContrastDetector) and isinstance(det, Detector)
    assert det.profile_sha256 == _profile().sha256
    # without a setup the registry still builds the physics-model contrast detector
    assert not isinstance(create_detector("contrast"), CalibratedContrastDetector)


def test_registry_reads_a_profile_file(tmp_path):
    path = _profile().save(tmp_path / "setup.json")
    from flakefinder.detect.setup_io import load_setup

    det = create_detector("contrast", setup=load_setup(path))
    assert isinstance(det, CalibratedContrastDetector)
    assert det.profile.sha256 == _profile().sha256


def test_hand_built_scene_exact_layers_terraces_split_floor_residue_and_rim_dropped():
    img, masks = _scene()
    dets = CalibratedContrastDetector(_profile()).detect(img, _ctx())
    got = sorted((d.material, d.layer_count, d.layer_class) for d in dets)
    assert got == [
        ("graphene", 1, LayerClass.MONO),
        ("graphene", 2, LayerClass.FEW),
        ("graphene", 4, LayerClass.FEW),
    ]
    by_n = {d.layer_count: d for d in dets}
    assert _iou(by_n[1].mask, masks["mono"]) > 0.9
    assert _iou(by_n[2].mask, masks["bi"]) > 0.85  # the 2L flake has the 4L terrace as a hole
    assert _iou(by_n[4].mask, masks["four"]) > 0.85
    mono = by_n[1]
    assert mono.bbox_px == pytest.approx((30, 40, 130, 120), abs=2)
    assert mono.area_px == mono.mask.sum()
    assert mono.contrast_rgb == pytest.approx((-0.14, -0.14, -0.07), abs=0.01)  # I/I_bg - 1
    assert all(0.8 < d.confidence <= 1.0 for d in dets)
    assert len(mono.polygon_px) >= 4


def test_without_the_filter_the_residue_is_reported():
    img, masks = _scene()
    dets = CalibratedContrastDetector(_profile(), filter_settings=None).detect(img, _ctx())
    assert sorted(d.layer_count for d in dets) == [1, 1, 2, 4]
    residue = [d for d in dets if _iou(d.mask, masks["residue"]) > 0.8]
    assert len(residue) == 1 and residue[0].layer_count == 1


def test_size_floor_in_um2():
    img, _ = _scene()
    dets = CalibratedContrastDetector(_profile(), min_area_um2=3000.0).detect(img, _ctx())
    assert [d.layer_count for d in dets] == [2]  # only the 2L region (~5600 µm²) is that large


def test_classify_instance_on_a_mask():
    img, masks = _scene()
    res = classify_instance(img, masks["bi"], _profile(), ("graphene",), um_per_px=UM)
    assert (res.material, res.n_layers) == ("graphene", 2)
    assert res.confidence > 0.9 and res.sigma < 2.0
    assert res.contrast_rgb == pytest.approx(CONTRAST[2], abs=0.01)
    empty = classify_instance(img, np.zeros(img.shape[:2], bool), _profile(), ("graphene",))
    assert empty.material is None and empty.n_layers is None and empty.confidence == 0.0
    with pytest.raises(ValueError, match="mask shape"):
        classify_instance(img, masks["bi"][:10], _profile(), ("graphene",))


def test_profile_must_match_materials_and_oxide():
    img, _ = _scene()
    det = CalibratedContrastDetector(_profile())
    with pytest.raises(ProfileError, match="hBN"):
        det.detect(img, _ctx(materials=("hBN",)))
    with pytest.raises(ProfileError, match="70 nm"):
        det.detect(img, _ctx(oxide_nm=70.0))


def test_blank_substrate_gives_nothing():
    rng = np.random.default_rng(3)
    img = np.clip(np.rint(SUBSTRATE + rng.normal(0, 1.5, (200, 300, 3))), 0, 255).astype(np.uint8)
    assert CalibratedContrastDetector(_profile()).detect(img, _ctx()) == []


@pytest.mark.parametrize("gamma", [1.0, 2.2])
def test_synth_render_with_model_profile(gamma):
    """The shared synthetic chip (1L, 3L, 20L graphene, residue, particles) at two encodings."""
    c = chip()
    img = render(c, gamma=gamma, white_balance_rgb=(0.85, 0.7, 1.35))
    prof = model_profile(layers=(1, 2, 3, 4), gamma=gamma, um_per_px=0.2)
    ctx = ImagingContext(0.2, 90.0, ("graphene",))
    dets = CalibratedContrastDetector(prof).detect(img, ctx)
    gt = [g for g in instances(c) if g.n_layers <= 4]
    assert sorted(g.n_layers for g in gt) == [1, 3]
    m = match_masks([d.mask for d in dets], [g.mask for g in gt])
    assert m.true_positives == 2 and m.false_positives == 0
    for p, g, iou in m.matches:
        assert dets[p].layer_count == gt[g].n_layers and iou > 0.75
