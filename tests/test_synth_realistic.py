"""The realistic synth style: exact ground truth, camera model, ranges, COCO export and CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from flakefinder.synth.realistic import RealisticStyle, draw_camera, draw_optics, render_realistic
from flakefinder.synth.realistic_camera import CameraSettings, decode_level, encode_levels, expose
from flakefinder.synth.realistic_scene import Scene


def _colour(material: str, n: int) -> tuple[float, float, float]:
    v = 1.0 - 0.05 * n
    return (v, v, v)


def _square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def test_overlap_of_two_flakes_is_its_own_instance_with_summed_layers() -> None:
    scene = Scene(40, 60, _colour)
    scene.paint_flake(_square(5, 5, 25, 25), "graphene", 3, 0)
    scene.paint_flake(_square(15, 10, 45, 30), "graphene", 2, 1)
    got = {(i.flake_id, i.n_layers): i.area_px for i in scene.instances(min_area_px=1)}
    # vertices lie on pixel centres, so a 20 x 20 square covers 21 x 21 pixels; the overlap
    # (11 x 16 px) is 5 layers, flake 0 keeps its L-shape, flake 1 the rest
    assert got == {(0, 3): 21 * 21 - 11 * 16, (1, 5): 11 * 16, (1, 2): 31 * 21 - 11 * 16}
    overlap = scene.f[12, 20]
    assert np.allclose(overlap, _colour("graphene", 5))


def test_crack_splits_a_flake_and_bulk_and_particles_are_not_instances() -> None:
    scene = Scene(40, 60, _colour)
    scene.paint_flake(_square(0, 0, 40, 20), "graphene", 1, 0)
    line = np.zeros((40, 60), dtype=bool)
    line[:, 20] = True
    scene.cut(line, (0, 0, 60, 40))
    scene.paint_flake(_square(0, 25, 20, 35), "graphene", 60, 1)  # bulk
    particle = np.zeros((40, 60), dtype=bool)
    particle[2:4, 2:4] = True
    scene.paint_clutter(particle, (0, 0, 60, 40), np.array([0.3, 0.3, 0.3]))
    inst = scene.instances(min_area_px=1)
    assert [(i.n_layers, i.area_px) for i in inst] == [(1, 20 * 21 - 4), (1, 20 * 21)]
    for i in inst:
        n, _labels = cv2.connectedComponents(i.mask.astype(np.uint8), connectivity=8)
        assert n == 2  # background + exactly one component


def test_terraces_replace_instead_of_stacking() -> None:
    scene = Scene(30, 30, _colour)
    scene.paint_flake(_square(0, 0, 30, 30), "graphene", 2, 0)
    scene.paint_flake(_square(10, 10, 20, 20), "graphene", 4, 0, stack=False)
    got = sorted((i.n_layers, i.area_px) for i in scene.instances(min_area_px=1))
    assert got == [(2, 900 - 121), (4, 121)]


@pytest.mark.parametrize("balance", ["substrate", "white"])
def test_camera_auto_exposure_and_white_balance(balance: str) -> None:
    cam = CameraSettings(
        white_balance=balance,  # type: ignore[arg-type]
        substrate_level=0.7,
        vignetting=0.0,
        read_noise=0.0,
        full_well_e=1e12,
        blur_sigma_px_rgb=(0.0, 0.0, 0.0),
    )
    f = np.ones((16, 16, 3), dtype=np.float32)
    sub = np.array([0.11, 0.10, 0.14])  # violet raw substrate (90 nm SiO2)
    img = expose(f, sub, np.ones(3), cam, seed=0)
    px = img[8, 8].astype(int)
    assert abs(int(px.max()) - 0.7 * 255) <= 1
    if balance == "substrate":
        assert px.max() - px.min() <= 1  # grey
    else:
        assert px[2] > px[0] > px[1]  # keeps its violet colour


def test_encoding_round_trip() -> None:
    for cam in (CameraSettings(encoding="srgb"), CameraSettings(encoding="gamma", gamma=1.8)):
        lin = decode_level(0.6, cam)
        out = encode_levels(np.array([[[lin, lin, lin]]], dtype=np.float32), cam)
        assert abs(int(out[0, 0, 0]) - round(0.6 * 255)) <= 1


def test_drawn_settings_stay_in_the_issue_ranges() -> None:
    style = RealisticStyle()
    rng = np.random.default_rng(0)
    for _ in range(200):
        o = draw_optics(rng, style)
        c = draw_camera(rng, style)
        assert 70 <= o.oxide_thickness_nm <= 300
        assert 0.3 <= o.numerical_aperture <= 0.9
        assert 5 <= o.magnification <= 100
        assert 60 <= c.jpeg_quality <= 95
        assert 0.55 <= c.substrate_level <= 0.85


def test_render_is_deterministic_and_truth_is_exact() -> None:
    a = render_realistic(96, 64, ["graphene", "hBN"], seed=3)
    b = render_realistic(96, 64, ["graphene", "hBN"], seed=3)
    assert a.jpeg == b.jpeg
    assert a.image.shape == (64, 96, 3) and a.image.dtype == np.uint8
    assert a.jpeg[:2] == b"\xff\xd8"
    union = np.zeros((64, 96), dtype=int)
    for inst in a.instances:
        assert 1 <= inst.n_layers <= 40
        n, _labels = cv2.connectedComponents(inst.mask.astype(np.uint8), connectivity=8)
        assert n == 2
        union += inst.mask
    assert union.max() <= 1  # instances never overlap


def test_render_rejects_tiny_images() -> None:
    with pytest.raises(ValueError, match="at least 8x8"):
        render_realistic(4, 4, ["graphene"])


def _app():  # type: ignore[no-untyped-def]
    from flakefinder.cli.main import create_app

    return create_app()


def test_cli_synth_realistic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ds"
    args = ["synth", str(out), "--style", "realistic", "--images", "2", "--size", "64"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "annotations.json").read_text())
    assert len(data["images"]) == 2
    assert sorted(p.name for p in (out / "images").glob("*.jpg")) == ["000000.jpg", "000001.jpg"]
    assert data["images"][0]["render"]["camera"]["jpeg_quality"] >= 60


def test_cli_synth_bad_style(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(_app(), ["synth", str(tmp_path / "x"), "--style", "nope"])
    assert res.exit_code == 2
    assert "--style" in res.output
