"""Rendering: determinism, contrast inside instance masks, defocus blur, ground truth."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from flakefinder.domain import LayerClass
from flakefinder.synth import (
    RenderSettings,
    SynthFlake,
    Terrace,
    VirtualChip,
    random_chip,
    render_linear,
    render_view,
    view_instances,
)
from flakefinder.synth.render import relative_rgb


def square(x0, y0, x1, y1):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def make_chip():
    """A 60x60 µm chip: a monolayer with a trilayer terrace and a bulk piece on top of it."""
    flakes = (
        SynthFlake(
            0, "graphene", (Terrace(square(10, 10, 30, 30), 1), Terrace(square(20, 20, 30, 30), 3))
        ),
        SynthFlake(1, "graphene", (Terrace(square(26, 26, 40, 40), 120),)),
        SynthFlake(2, "graphene", (Terrace(square(45, 45, 45.5, 45.5), 1),)),  # too small
    )
    return VirtualChip(60.0, 60.0, 90.0, ("graphene",), flakes, (), 0)


FLAT = RenderSettings(inhomogeneity=0.0)


def test_same_seed_same_bytes():
    chip = random_chip(1000, 1000, ["graphene", "hBN"], flakes_per_mm2=80, seed=1)
    f = next(f for f in chip.flakes if not f.is_bulk)
    cx, cy = np.mean(np.reshape(f.bbox_um, (2, 2)), axis=0)
    a = render_view(chip, cx, cy, 256, 256, 0.2, seed=5, focus_error_um=0.4)
    b = render_view(chip, cx, cy, 256, 256, 0.2, seed=5, focus_error_um=0.4)
    c = render_view(chip, cx, cy, 256, 256, 0.2, seed=6, focus_error_um=0.4)
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_instances_of_hand_made_chip():
    chip = make_chip()
    inst = view_instances(chip, 30, 30, 300, 300, 0.2)
    assert [(i.flake_id, i.n_layers, i.layer_class) for i in inst] == [
        (0, 1, LayerClass.MONO),
        (0, 3, LayerClass.FEW),
    ]
    mono, tri = inst
    # monolayer 20x20 µm minus the 10x10 µm trilayer terrace; trilayer minus the bulk corner 4x4 µm;
    # cv2 rasterisation takes every pixel within half a pixel of an edge: +1 px per side length
    assert mono.area_px == 101 * 101 - 51 * 51
    assert tri.area_px == 51 * 51 - 21 * 21
    assert mono.bbox_px == (50.0, 50.0, 151.0, 151.0)
    assert not (mono.mask & tri.mask).any()


def test_monolayer_contrast_matches_model_inside_mask():
    chip = make_chip()
    img = render_view(chip, 30, 30, 300, 300, 0.2, settings=FLAT, seed=1).astype(float)
    mono = view_instances(chip, 30, 30, 300, 300, 0.2)[0]
    inner = cv2.erode(mono.mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    substrate = img[5:40, 5:290].reshape(-1, 3).mean(axis=0)
    flake = img[inner].mean(axis=0)
    expected = np.asarray(relative_rgb(90.0, FLAT.numerical_aperture, "graphene", 1))
    np.testing.assert_allclose(flake / substrate, expected, atol=0.01)
    assert (flake < substrate).all()  # graphene on 90 nm SiO2 is darker in every channel


def test_noiseless_linear_signal_is_exact():
    chip = make_chip()
    s = RenderSettings(inhomogeneity=0.0, substrate_level=None, illumination=2.0)
    lin = render_linear(chip, 30, 30, 300, 300, 0.2, settings=s)
    from flakefinder.synth.render import substrate_rgb

    sub = np.asarray(substrate_rgb(90.0, s.numerical_aperture)) * 2.0
    np.testing.assert_allclose(lin[10, 10], sub, rtol=1e-5)
    np.testing.assert_allclose(
        lin[60, 60] / lin[10, 10], relative_rgb(90.0, 0.55, "graphene", 1), rtol=1e-4
    )


def laplacian_variance(img):
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return cv2.Laplacian(g, cv2.CV_64F).var()


def test_defocus_blur_grows_with_focus_error():
    chip = make_chip()
    s = RenderSettings(inhomogeneity=0.0, noise_sigma=0.0, full_well_e=0.0)
    sharp = [
        laplacian_variance(render_view(chip, 30, 30, 256, 256, 0.2, focus_error_um=dz, settings=s))
        for dz in (0.0, 1.0, 3.0, 8.0)
    ]
    assert sharp[0] > sharp[1] > sharp[2] > sharp[3]
    assert s.blur_sigma_px(-2.0, 0.2) == s.blur_sigma_px(2.0, 0.2) > s.blur_sigma_px(0.0, 0.2)


def test_gamma_and_white_balance():
    chip = make_chip()
    base = RenderSettings(inhomogeneity=0.0, noise_sigma=0.0, full_well_e=0.0)

    def view(settings: RenderSettings) -> np.ndarray:
        return render_view(chip, 30, 30, 64, 64, 0.2, settings=settings)

    lin = view(base).astype(float)
    gam = view(replace(base, gamma=2.2)).astype(float)
    assert (gam >= lin).all() and (gam[0, 0] > lin[0, 0]).all()
    np.testing.assert_allclose(gam[0, 0] / 255, (lin[0, 0] / 255) ** (1 / 2.2), atol=2 / 255)
    wb = view(replace(base, white_balance_rgb=(1.0, 1.0, 0.5)))
    assert wb[0, 0, 2] == pytest.approx(lin[0, 0, 2] / 2, abs=1)
    assert wb[0, 0, 0] == lin[0, 0, 0]


def test_vignetting_darkens_corners():
    chip = VirtualChip(100.0, 100.0, 90.0, ("graphene",), (), (), 0)
    img = render_view(
        chip, 50, 50, 128, 128, 0.2, settings=RenderSettings(inhomogeneity=0.3)
    ).astype(float)
    assert img[:8, :8].mean() < 0.8 * img[60:68, 60:68].mean()


def test_noise_level():
    chip = VirtualChip(100.0, 100.0, 90.0, ("graphene",), (), (), 0)
    s = RenderSettings(inhomogeneity=0.0, full_well_e=0.0, noise_sigma=0.02)
    img = render_view(chip, 50, 50, 128, 128, 0.2, settings=s, seed=3).astype(float)
    assert img.reshape(-1, 3).std(axis=0) == pytest.approx([0.02 * 255] * 3, rel=0.1)


def test_render_random_views_only_rasterises_nearby_flakes():
    chip = random_chip(10000, 2000, ["graphene"], flakes_per_mm2=20, seed=0)
    assert len(chip.flakes) > 300
    img = render_view(chip, 5000, 1000, 256, 256, 0.2, seed=0)
    assert img.shape == (256, 256, 3)
    far = render_view(chip, -5000, -5000, 64, 64, 0.2, seed=0)  # off the chip: bare substrate
    assert far.reshape(-1, 3).std(axis=0).max() < 5


def test_blur_by_regions_equals_whole_image_blur():
    from flakefinder.synth.render import blur, blur_regions

    f = np.ones((200, 240, 3), np.float32)
    f[20:40, 30:70] = (0.5, 0.6, 0.7)
    f[150:160, 200:230] = 1.4
    f[45:60, 60:90] = 0.8  # close to the first: merged with it
    boxes = [(30, 20, 70, 40), (200, 150, 230, 160), (60, 45, 90, 60)]
    for sigma in (1.0, 2.5):
        margin = int(np.ceil(3 * sigma)) + 1
        np.testing.assert_allclose(
            blur_regions(f.copy(), boxes, sigma, margin), blur(f, sigma), atol=2e-3
        )
