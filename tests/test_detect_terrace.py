"""Terrace segmentation and per-terrace classification (issue 18), on synthetic fields with
known terraces and on bad input; the real-picture checks are in test_terrace_real.py."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.detect.registry import DEFAULT_DETECTOR, create_detector
from flakefinder.detect.terrace import segment_terraces
from flakefinder.detect.terrace.classify import ProfileClassifier
from flakefinder.detect.terrace.detector import TerraceDetector
from flakefinder.detect.terrace.selfcal import group_settings
from flakefinder.domain import ImagingContext, LayerClass, keep_confident
from terrace_helpers import iou, scene

CTX = ImagingContext(um_per_px=0.4, oxide_thickness_nm=90.0, materials=("graphene",))


def _profile() -> SetupProfile:
    cov = ((1e-4, 0.0, 0.0), (0.0, 1e-4, 0.0), (0.0, 0.0, 1e-4))
    layers = [
        LayerColour(n_layers=n, contrast_rgb=c, covariance_rgb=cov, source="measured")
        for n, c in ((1, (-0.10, -0.12, -0.05)), (2, (-0.20, -0.24, -0.11)),
                     (4, (-0.36, -0.42, -0.22)))
    ]
    return SetupProfile(name="test", um_per_px=0.4, oxide_nm=90.0,
                        materials=(MaterialTable("graphene", tuple(layers)),))


def _matched(flakes_masks: list[np.ndarray], truth: list[np.ndarray]) -> list[float]:
    return [max((iou(m, t) for m in flakes_masks), default=0.0) for t in truth]


def test_segmentation_finds_each_terrace_and_rejects_bulk() -> None:
    sc = scene()
    tm = segment_terraces(sc.image)
    dets = keep_confident(TerraceDetector(_profile()).detect(sc.image, CTX), 0.5)
    masks = [d.mask for d in dets if d.mask is not None]
    truth = [m for m, _ in sc.terraces]
    best = _matched(masks, truth)
    assert all(b > 0.8 for b in best), best  # 1 L and 2 L of one flake are two instances
    assert len(dets) == 3  # no residue, dust or bulk among the confident ones
    assert all(t.reason in ("bulk", None) or t.label for t in tm.terraces)
    # the bulk crystal is no flake, and nothing reported lies on it
    assert all((m & sc.bulk).sum() < 0.05 * m.sum() for m in masks)
    # measured contrast of each terrace, C = I/I_substrate - 1
    for (m, c) in sc.terraces:
        t = max(tm.flakes, key=lambda t: iou(tm.full_mask(t)[0], m))
        assert np.allclose(tm.contrast_rgb(t), c, atol=0.02)


def test_exposure_changes_nothing() -> None:
    det = TerraceDetector(_profile())
    bright = keep_confident(det.detect(scene(exposure=1.0).image, CTX), 0.5)
    dark = keep_confident(det.detect(scene(exposure=0.45).image, CTX), 0.5)
    assert sorted(d.layer_count for d in bright) == sorted(d.layer_count for d in dark) == [1, 2, 3]
    cb = sorted(d.contrast_rgb for d in bright)
    cd = sorted(d.contrast_rgb for d in dark)
    assert np.allclose(cb, cd, atol=0.02)


def test_a_channel_clipped_on_the_substrate_is_left_out() -> None:
    sc = scene(substrate=np.array([255.0, 180.0, 120.0]) * 1.05, vignetting=0.0)
    tm = segment_terraces(sc.image)
    assert tm.work.valid.tolist() == [False, True, True]
    big = [t for t in tm.flakes if t.features.area_px > 5000]
    assert len(big) == 3
    assert all(np.isnan(tm.contrast_rgb(t)[0]) for t in big)
    dets = keep_confident(TerraceDetector(_profile()).detect(sc.image, CTX), 0.5)
    assert sorted(d.layer_count for d in dets) == [1, 2, 3]  # G and B suffice


def test_profile_gives_exact_layers_and_reads_between_entries() -> None:
    det = TerraceDetector(_profile())
    dets = keep_confident(det.detect(scene().image, CTX), 0.5)
    assert sorted(d.layer_count for d in dets) == [1, 2, 3]
    three = next(d for d in dets if d.layer_count == 3)  # 3 L lies between the 2 L and 4 L entries
    assert three.layer_alternative in (2, 4) and three.layer_confidence is not None
    assert three.layer_confidence < 0.5
    one = next(d for d in dets if d.layer_count == 1)
    assert one.layer_class is LayerClass.MONO and one.layer_confidence > 0.9
    assert one.contrast_rgb is not None and one.contrast_rgb[1] < 0  # I/I_sub - 1: darker < 0


def test_classifier_refuses_colours_of_no_thickness() -> None:
    clf = ProfileClassifier(_profile(), ["graphene"])
    assert clf.classify(np.array([-0.2, -0.24, -0.11])).n_layers == 2
    assert not clf.classify(np.array([0.05, 0.02, 0.25])).fits_material  # bright blue: residue
    six = clf.classify(np.array([-0.52, -0.60, -0.33]))  # two steps beyond the 4 L entry
    assert six.n_layers == 6 and six.alternative in (5, 7) and six.confidence < 0.3
    thick = clf.classify(np.array([-0.85, -0.95, -0.55]))  # far beyond: unknown thickness
    assert thick.fits_material and thick.n_layers is None and thick.layer_class is LayerClass.THICK


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("all substrate", np.clip(np.random.default_rng(1).normal(150, 2, (240, 320, 3)), 0, 255)),
        ("black", np.zeros((240, 320, 3))),
        ("white", np.full((240, 320, 3), 255.0)),
        ("all bulk", np.full((240, 320, 3), (250.0, 252.0, 255.0))),
    ],
)
def test_bad_images_give_no_flakes_and_a_note(name: str, image: np.ndarray) -> None:
    det = TerraceDetector(_profile())
    assert det.detect(image.astype(np.uint8), CTX) == []
    if name != "all substrate":
        assert det.notes and "no flakes searched" in det.notes[-1]


def test_self_calibration_without_profile_and_the_default() -> None:
    assert DEFAULT_DETECTOR == "terrace"
    det = create_detector(DEFAULT_DETECTOR)
    assert isinstance(det, TerraceDetector) and det.needs_calibration
    images = [scene(seed=s).image for s in range(3)]
    notes = det.calibrate_on(images, CTX, ["a", "b", "c"])
    assert not det.needs_calibration and notes and notes[0].startswith("setting 1")
    dets = keep_confident(det.detect(images[0], CTX), 0.5)
    assert len(dets) == 3
    assert all(d.layer_class in (LayerClass.MONO, LayerClass.FEW) for d in dets)


def test_settings_are_grouped_by_substrate_hue() -> None:
    violet, grey = np.array([150.0, 120.0, 190.0]), np.array([196.0, 197.0, 200.0])
    dark_violet = violet * 0.35  # the same setting at a shorter exposure
    assert group_settings([violet, grey, dark_violet, grey * 1.2]) == [[0, 2], [1, 3]]


def _wide_profile(entries: dict[int, tuple[float, float, float]]) -> SetupProfile:
    """A table with wide spreads (sd 0.05): a missing layer lies within 4 sd of its neighbours."""
    cov = ((2.5e-3, 0.0, 0.0), (0.0, 2.5e-3, 0.0), (0.0, 0.0, 2.5e-3))
    layers = [
        LayerColour(n_layers=n, contrast_rgb=c, covariance_rgb=cov, source="measured")
        for n, c in sorted(entries.items())
    ]
    return SetupProfile(name="wide", um_per_px=0.1, oxide_nm=90.0,
                        materials=(MaterialTable("NbSe2", tuple(layers)),))


def test_a_layer_the_table_skips_is_read_off_the_ladder() -> None:
    step = np.array([-0.08, -0.10, -0.06])  # contrast per layer, linear in n
    clf = ProfileClassifier(_wide_profile({3: tuple(3 * step), 5: tuple(5 * step)}), ["NbSe2"])
    four = clf.classify(4 * step)  # within 4 sd of both 3 L and 5 L, on the ladder between
    assert four.n_layers == 4 and four.alternative in (3, 5) and four.confidence < 0.5
    assert clf.classify(3 * step).n_layers == 3 and clf.classify(5 * step).n_layers == 5
    # thinner than the thinnest entry: read on the ladder from the substrate (0 L, no contrast)
    thin = ProfileClassifier(_wide_profile({4: tuple(4 * step), 5: tuple(5 * step)}), ["NbSe2"])
    assert thin.classify(3 * step).n_layers == 3
    assert thin.classify(2 * step).n_layers == 2
    # one measured layer is a ladder too
    one = ProfileClassifier(_wide_profile({4: tuple(4 * step)}), ["NbSe2"])
    assert one.classify(2 * step).n_layers == 2


def test_past_the_thickest_entry_the_nearest_measured_layer_wins() -> None:
    step = np.array([-0.08, -0.10, -0.06])
    clf = ProfileClassifier(_wide_profile({3: tuple(3 * step), 4: tuple(4 * step)}), ["NbSe2"])
    # a 4 L terrace a little stronger than the table's 4 L (within its spread): still 4 L,
    # not 5 L from the ladder's spacing (contrast saturates with thickness)
    assert clf.classify(4.6 * step).n_layers == 4


def test_the_ladder_of_another_material_does_not_override_a_measured_layer() -> None:
    g = np.array([-0.10, -0.12, -0.05])
    cov = ((2.5e-3, 0.0, 0.0), (0.0, 2.5e-3, 0.0), (0.0, 0.0, 2.5e-3))

    def table(material: str, entries: dict[int, np.ndarray]) -> MaterialTable:
        return MaterialTable(material, tuple(
            LayerColour(n_layers=n, contrast_rgb=tuple(c), covariance_rgb=cov, source="measured")
            for n, c in sorted(entries.items())
        ))

    profile = SetupProfile(name="two", um_per_px=0.1, oxide_nm=90.0, materials=(
        table("NbSe2", {3: 1.5 * g, 5: 2.5 * g}), table("graphene", {1: g, 2: 2 * g}),
    ))
    # graphene 2 L exactly; it also lies on NbSe2's ladder at 4 L, a layer NbSe2's table skips
    call = ProfileClassifier(profile, ["NbSe2", "graphene"]).classify(2 * g)
    assert (call.material, call.n_layers) == ("graphene", 2)
