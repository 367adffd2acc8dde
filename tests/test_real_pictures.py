"""The calibrated detector on the real 2DMatGMM pictures shipped with flakefinder (no labels:
invariants and the one large trilayer flake of picture b, checked by eye)."""

from __future__ import annotations

import numpy as np
import pytest

from flakefinder.calibration.gmm import import_gmm
from flakefinder.cli.demo_real import real_data_folder
from flakefinder.detect.calibrated import CalibratedContrastDetector, classify_instance
from flakefinder.domain import ImagingContext
from flakefinder.imaging import load_image

CTX = ImagingContext(um_per_px=0.3844, oxide_thickness_nm=90.0, materials=("graphene",))


@pytest.fixture(scope="module")
def profile():
    return import_gmm(
        real_data_folder() / "gmm_graphene_90nm.json",
        material="graphene",
        oxide_nm=90.0,
        um_per_px=0.3844,
    )


def test_shipped_pictures_and_licence_are_there():
    folder = real_data_folder()
    assert len(sorted(folder.glob("*.jpg"))) == 3
    assert (folder / "LICENSE-2DMatGMM").is_file()
    assert "Uslu" in (folder / "README.md").read_text()


def test_real_picture_b(profile):
    img = load_image(real_data_folder() / "graphene_90nm_b.jpg")
    assert img.shape == (1200, 1920, 3)
    dets = CalibratedContrastDetector(profile).detect(img, CTX)
    assert dets and all(d.layer_count in (1, 2, 3, 4) for d in dets)
    assert all(0.0 <= d.confidence <= 1.0 and d.mask is not None for d in dets)
    total = np.sum([d.mask for d in dets], axis=0)
    assert total.max() == 1  # instances do not overlap
    big = [d for d in dets if d.area_px > 5000]
    assert [d.layer_count for d in big] == [3]
    again = classify_instance(img, big[0].mask, profile, ("graphene",))
    assert (again.material, again.n_layers) == ("graphene", 3) and again.confidence > 0.8
