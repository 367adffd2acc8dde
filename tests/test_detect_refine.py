"""Background estimation and layer-count refinement of another detector's masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from detect_helpers import chip, context, instances, render
from flakefinder.detect.colours import linearize
from flakefinder.detect.refine import estimate_background, refine_layer_count
from flakefinder.domain import Detection, LayerClass
from flakefinder.errors import ImageError
from flakefinder.synth.render import RenderSettings, render_linear


def test_background_follows_illumination_inhomogeneity():
    c = chip()
    settings = RenderSettings(inhomogeneity=0.2, gradient_xy=(0.1, -0.05))
    img = render(c, inhomogeneity=0.2, gradient_xy=(0.1, -0.05))
    bare = render_linear(
        chip(flakes=False, debris=False), 35.0, 35.0, 350, 350, 0.2, settings=settings
    )
    field = estimate_background(img)
    assert field.shape == img.shape and field.dtype == np.float32
    err = np.abs(field / bare - 1.0)
    assert float(np.median(err)) < 0.005 and float(err.max()) < 0.03


def test_background_with_gamma():
    img = render(chip(flakes=False, debris=False), gamma=2.2)
    field = estimate_background(img, gamma=2.2)
    rel = linearize(img, 2.2) / field
    assert abs(float(np.median(rel)) - 1.0) < 0.01


def _as_detection(g, layer_class=LayerClass.THICK, with_mask=True):
    ys, xs = np.nonzero(g.mask)
    return Detection(
        material=g.material,
        layer_class=layer_class,
        confidence=0.9,
        polygon_px=g.polygon_px,
        bbox_px=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
        area_px=float(xs.size),
        mask=g.mask if with_mask else None,
    )


@pytest.mark.parametrize("with_mask", [True, False])
def test_refine_sets_exact_layer_counts(with_mask):
    c = chip()
    img = render(c, illumination=0.7)
    for g in instances(c):
        out = refine_layer_count(img, _as_detection(g, with_mask=with_mask), context())
        assert out.layer_count == g.n_layers
        assert out.layer_class == LayerClass.from_layers(g.n_layers)
        assert out.contrast_rgb is not None and out.confidence == 0.9


def test_refine_with_given_substrate_colour():
    c = chip(debris=False)
    img = render(c, inhomogeneity=0.0)
    bare = render(chip(flakes=False, debris=False), inhomogeneity=0.0)
    sub = np.median(bare.reshape(-1, 3), axis=0)
    g = instances(c)[1]
    out = refine_layer_count(img, _as_detection(g), context(), background_rgb=sub)
    assert out.layer_count == 3 and out.layer_class == LayerClass.FEW


def test_refine_rejects_empty_mask():
    c = chip()
    det = dataclasses.replace(_as_detection(instances(c)[0]), mask=np.zeros((350, 350), bool))
    with pytest.raises(ImageError):
        refine_layer_count(render(c), det, context())
