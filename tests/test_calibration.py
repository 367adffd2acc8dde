"""Calibration: physics fit on real 2DMatGMM tables, calibrate() on rendered images, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from flakefinder.calibration import LabelledRegion, SetupProfile, calibrate
from flakefinder.calibration.gmm import export_gmm, import_gmm, table_from_gmm
from flakefinder.calibration.labels import parse_layer_label, read_instance_masks, read_labels
from flakefinder.calibration.physics import CameraOpticsParams, fit_physics, predict_contrast
from flakefinder.errors import CalibrationError, ProfileError
from flakefinder.synth import (
    RenderSettings,
    SynthFlake,
    Terrace,
    VirtualChip,
    render_view,
    view_instances,
)

DATA = Path(__file__).parent / "data" / "2dmatgmm"


def _table(name: str) -> dict[int, np.ndarray]:
    d = json.loads((DATA / name).read_text())
    return {int(k): np.array([v["contrast"][c] for c in "rgb"]) for k, v in d.items()}


# -- physics ----------------------------------------------------------------------------------
def test_forward_model_matches_contrast_model_at_default_camera() -> None:
    from flakefinder.optics import ContrastModel

    pred = predict_contrast("graphene", 90.0, CameraOpticsParams(numerical_aperture=0.45), [1, 3])
    ref = -ContrastModel(90.0, 0.45).contrast_table("graphene", [1, 3])
    np.testing.assert_allclose(pred, ref, atol=1e-4)  # (oxide, NA) grid interpolation


def test_fit_graphene_on_two_layers_predicts_three_and_four() -> None:
    t = _table("graphene_90nm.json")
    fit = fit_physics("graphene", 90.0, {1: t[1], 2: t[2]})
    assert fit.max_abs_residual < 0.012
    pred = fit.predict([3, 4])
    err = np.abs(pred - np.array([t[3], t[4]]))
    assert err.max() < 0.035  # measured: 0.030 (blue, 4 layers); green within 0.004
    assert err[:, 1].max() < 0.01
    assert 0.85 <= fit.params.oxide_scale <= 1.15


def test_fit_recovers_synthetic_camera() -> None:
    truth = CameraOpticsParams(numerical_aperture=0.3, gamma=1.8, red_shift_nm=10.0)
    table = predict_contrast("graphene", 90.0, truth, [1, 2, 3, 4, 5])
    fit = fit_physics("graphene", 90.0, {n: table[n - 1] for n in (1, 2, 3)})
    np.testing.assert_allclose(fit.predict([4, 5]), table[3:], atol=0.01)


# -- 2DMatGMM files ---------------------------------------------------------------------------
def test_gmm_import_reorders_bgr_covariance_and_round_trips(tmp_path: Path) -> None:
    raw = json.loads((DATA / "graphene_90nm.json").read_text())
    profile = import_gmm(
        DATA / "graphene_90nm.json", material="graphene", oxide_nm=90, um_per_px=0.3844
    )
    e = profile.table("graphene").layer(1)
    bgr = np.array(raw["1"]["covariance_matrix"])
    assert e.covariance[0, 0] == pytest.approx(bgr[2, 2])  # R variance
    assert e.covariance[2, 0] == pytest.approx(bgr[0, 2])  # B-R covariance
    assert e.contrast_rgb == (
        raw["1"]["contrast"]["r"],
        raw["1"]["contrast"]["g"],
        raw["1"]["contrast"]["b"],
    )
    out = export_gmm(profile, "graphene")
    for k, v in raw.items():
        np.testing.assert_allclose(out[k]["covariance_matrix"], v["covariance_matrix"], atol=1e-15)
        assert out[k]["contrast"] == v["contrast"]
    path = profile.save(tmp_path / "p.json")
    assert SetupProfile.load(path) == profile


def test_gmm_hbn_thickness_classes_are_refused() -> None:
    with pytest.raises(CalibrationError, match="thickness classes"):
        import_gmm(DATA / "hbn_90nm.json", material="hBN", oxide_nm=90, um_per_px=0.3844)


def test_gmm_bad_key() -> None:
    with pytest.raises(CalibrationError, match="not a layer number"):
        table_from_gmm({"x": {}}, "graphene")


# -- rendered images --------------------------------------------------------------------------
def _square(cx: float, cy: float, r: float) -> tuple[tuple[float, float], ...]:
    return ((cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r))


LAYERS = (1, 2, 3, 1, 2, 3, 60, 1)
CHIP = VirtualChip(
    180,
    100,
    90.0,
    ("graphene",),
    tuple(
        SynthFlake(i, "graphene", (Terrace(_square(20 + (i % 4) * 40, 20 + (i // 4) * 40, 12), n),))
        for i, n in enumerate(LAYERS)
    ),
    (),
    0,
)
VIEWS = ((60.0, 40.0), (100.0, 50.0))
WARM = RenderSettings(gamma=2.2, white_balance_rgb=(1.3, 1.0, 0.7))


def _render(settings: RenderSettings) -> tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]]:
    images, truth = [], []
    for k, (x, y) in enumerate(VIEWS):
        images.append(render_view(CHIP, x, y, 240, 180, 0.4, settings=settings, seed=k))
        truth += [(k, g.mask, g.n_layers) for g in view_instances(CHIP, x, y, 240, 180, 0.4)]
    return images, truth


@pytest.fixture(scope="module")
def warm() -> tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]]:
    return _render(WARM)


def test_labels_mode_measures_and_predicts(
    warm: tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]],
) -> None:
    images, truth = warm
    regions = [LabelledRegion(k, m, n) for k, m, n in truth]
    rep = calibrate(images, material="graphene", oxide_nm=90, um_per_px=0.4, regions=regions)
    t = rep.profile.table("graphene")
    assert [e.n_layers for e in t.layers if e.source == "measured"] == [1, 2, 3]
    assert t.layer(4).source == "predicted"
    assert rep.mode == "labels" and rep.region_layers == tuple(n for _, _, n in truth)
    assert rep.rms_residual < 0.012
    assert rep.profile.camera.gamma == pytest.approx(2.2, abs=0.25)
    # stored contrast of 1 layer under gamma 2.2: (rel ** (1 / 2.2)) - 1 of the linear model
    from flakefinder.optics import ContrastModel

    rel = ContrastModel(90.0, 0.55).relative_rgb("graphene", 1)
    np.testing.assert_allclose(t.layer(1).mean, rel ** (1 / 2.2) - 1, atol=0.008)
    assert any("1 L" in line for line in rep.lines())


def test_masks_mode_assigns_layer_numbers(
    warm: tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]],
) -> None:
    images, truth = warm
    regions = [LabelledRegion(k, m, None) for k, m, _ in truth]
    rep = calibrate(images, material="graphene", oxide_nm=90, um_per_px=0.4, regions=regions)
    assert rep.mode == "masks"
    assert rep.region_layers == tuple(n for _, _, n in truth)
    assert rep.confidence > 0.8


def test_no_label_mode_finds_the_layers() -> None:
    images, truth = _render(RenderSettings(gamma=1.0))
    rep = calibrate(images, material="graphene", oxide_nm=90, um_per_px=0.4)
    assert rep.mode == "none"
    measured = [e.n_layers for e in rep.profile.table("graphene").layers if e.source == "measured"]
    assert measured == [1, 2, 3]
    from flakefinder.optics import ContrastModel

    ref = -ContrastModel(90.0, 0.55).contrast_table("graphene", [1, 2, 3])
    np.testing.assert_allclose(rep.profile.table("graphene").means()[:3], ref, atol=0.01)


def test_no_label_mode_refuses_blank_images() -> None:
    blank = np.full((120, 160, 3), (120, 110, 160), dtype=np.uint8)
    with pytest.raises(CalibrationError, match="cannot be determined|no thin flakes"):
        calibrate([blank], material="graphene", oxide_nm=90, um_per_px=0.4)


# -- bad input --------------------------------------------------------------------------------
def test_bad_regions(warm: tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]]) -> None:
    images, truth = warm
    small = np.zeros((10, 10), dtype=bool)
    with pytest.raises(CalibrationError, match="differs from image"):
        calibrate(
            images,
            material="graphene",
            oxide_nm=90,
            um_per_px=0.4,
            regions=[LabelledRegion(0, small, 1)],
        )
    empty = np.zeros(images[0].shape[:2], dtype=bool)
    with pytest.raises(CalibrationError, match="empty"):
        calibrate(
            images,
            material="graphene",
            oxide_nm=90,
            um_per_px=0.4,
            regions=[LabelledRegion(0, empty, 1)],
        )
    with pytest.raises(CalibrationError, match="unknown material"):
        calibrate(images, material="unobtainium", oxide_nm=90, um_per_px=0.4, regions=[])


def test_mixed_setups_calibrate_with_a_warning(
    warm: tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]],
) -> None:
    """Issue 18: a folder of several camera settings is normal; nothing is refused for it."""
    images, truth = warm
    other = render_view(
        CHIP, *VIEWS[0], 240, 180, 0.4, settings=RenderSettings(white_balance_rgb=(0.7, 1.0, 1.4))
    )
    regions = [LabelledRegion(k, m, n) for k, m, n in truth if k == 0]
    report = calibrate(
        [images[0], other], material="graphene", oxide_nm=90, um_per_px=0.4, regions=regions
    )
    assert any("several camera settings" in w for w in report.warnings)
    assert report.profile.table("graphene").layer_counts


def test_material_without_optics_calibrates_from_labels_only(
    warm: tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]],
) -> None:
    """Issue 18 item 3: labels measure a table without the thin-film model; masks cannot."""
    images, truth = warm
    regions = [LabelledRegion(k, m, n) for k, m, n in truth]
    report = calibrate(images, material="NbSe2", oxide_nm=90, um_per_px=0.4, regions=regions)
    table = report.profile.table("NbSe2")
    assert set(table.layer_counts) == {n for _, _, n in truth}
    assert all(e.source == "measured" for e in table.layers)
    assert report.profile.optics_fit is None
    masks_only = [LabelledRegion(k, m, None) for k, m, _ in truth]
    with pytest.raises(CalibrationError, match="from labels with layer numbers"):
        calibrate(images, material="NbSe2", oxide_nm=90, um_per_px=0.4, regions=masks_only)


def test_profile_version_and_corruption(tmp_path: Path) -> None:
    profile = import_gmm(
        DATA / "graphene_90nm.json", material="graphene", oxide_nm=90, um_per_px=0.3844
    )
    data = profile.to_json()
    data["schema_version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="version"):
        SetupProfile.load(tmp_path / "v.json")
    good = profile.save(tmp_path / "g.json")
    (tmp_path / "c.json").write_text(good.read_text()[:-40])
    with pytest.raises(ProfileError):
        SetupProfile.load(tmp_path / "c.json")


# -- label files ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("1", (None, 1)),
        ("2L", (None, 2)),
        ("graphene_3", ("graphene", 3)),
        ("WSe2_2L", ("WSe2", 2)),
        ("graphene_mono", ("graphene", 1)),
        ("hBN_thick", ("hBN", None)),
        ("3 layers", (None, 3)),
    ],
)
def test_parse_layer_label(label: str, expected: tuple[str | None, int | None]) -> None:
    assert parse_layer_label(label) == expected


def _labelme(path: Path, label: str, shape: tuple[int, int]) -> None:
    path.write_text(
        json.dumps(
            {
                "shapes": [
                    {
                        "label": label,
                        "points": [[10, 10], [40, 10], [40, 40], [10, 40]],
                        "shape_type": "polygon",
                    }
                ],
                "imagePath": "a.png",
                "imageHeight": shape[0],
                "imageWidth": shape[1],
            }
        )
    )


def test_label_formats(tmp_path: Path) -> None:
    shape = (60, 80)
    _labelme(tmp_path / "a.json", "graphene_2", shape)
    got = read_labels(tmp_path / "a.json", ["a.png"], [shape], material="graphene")
    assert [r.n_layers for r in got.regions] == [2] and got.regions[0].mask.sum() == 961
    _labelme(tmp_path / "h.json", "hBN_2", shape)
    with pytest.raises(CalibrationError, match="for hBN, not graphene"):
        read_labels(tmp_path / "h.json", ["a.png"], [shape], material="graphene")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 60}],
        "categories": [{"id": 1, "name": "graphene_few"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[10, 10, 40, 10, 40, 40, 10, 40]],
                "bbox": [10, 10, 30, 30],
                "area": 900,
                "iscrowd": 0,
                "attributes": {"n_layers": 3},
            }
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    got = read_labels(tmp_path / "coco.json", ["a.png"], [shape], material="graphene")
    assert [r.n_layers for r in got.regions] == [3]
    ls = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/abcdef12-a.png"},
            "annotations": [
                {
                    "result": [
                        {
                            "type": "polygonlabels",
                            "original_width": 80,
                            "original_height": 60,
                            "value": {
                                "points": [[10, 10], [50, 10], [50, 50]],
                                "polygonlabels": ["1L"],
                            },
                        }
                    ]
                }
            ],
        }
    ]
    (tmp_path / "ls.json").write_text(json.dumps(ls))
    got = read_labels(tmp_path / "ls.json", ["a.png"], [shape], material="graphene")
    assert [r.n_layers for r in got.regions] == [1]
    sem = tmp_path / "sem"
    sem.mkdir()
    lab = np.zeros(shape, np.uint8)
    lab[5:20, 5:20] = 1
    lab[30:50, 30:50] = 2
    lab[30:50, 60:70] = 2
    cv2.imwrite(str(sem / "a.png"), lab)
    got = read_labels(sem, ["a.png"], [shape], material="graphene")
    assert sorted(r.n_layers for r in got.regions) == [1, 2, 2]


def test_instance_masks(tmp_path: Path) -> None:
    ids = np.zeros((60, 80), np.uint16)
    ids[5:20, 5:20] = 1
    ids[30:50, 30:50] = 7
    cv2.imwrite(str(tmp_path / "a.png"), ids)
    regions = read_instance_masks(tmp_path, ["a.png"], [(60, 80)])
    assert sorted(int(r.mask.sum()) for r in regions) == [225, 400]
    assert all(r.n_layers is None for r in regions)
    with pytest.raises(CalibrationError, match="differs|is 80x60 px but"):
        read_instance_masks(tmp_path, ["a.png"], [(61, 80)])
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((60, 80), np.uint8))
    with pytest.raises(CalibrationError, match="empty"):
        read_instance_masks(tmp_path, ["b.png"], [(60, 80)])


# -- CLI --------------------------------------------------------------------------------------
def test_cli_calibrate_masks_show_export(
    tmp_path: Path, warm: tuple[list[np.ndarray], list[tuple[int, np.ndarray, int]]]
) -> None:
    from typer.testing import CliRunner

    from flakefinder.cli.main import create_app

    images, truth = warm
    (tmp_path / "m").mkdir()
    for k, im in enumerate(images):
        cv2.imwrite(str(tmp_path / f"i{k}.png"), im[:, :, ::-1])
        ids = np.zeros(im.shape[:2], np.uint16)
        for j, (kk, m, _n) in enumerate(truth):
            if kk == k:
                ids[m] = j + 1
        cv2.imwrite(str(tmp_path / "m" / f"i{k}.png"), ids)
    app = create_app()
    runner = CliRunner()
    out = tmp_path / "setup.json"
    args = [
        "calibrate",
        str(tmp_path / "i0.png"),
        str(tmp_path / "i1.png"),
        "--masks",
        str(tmp_path / "m"),
        "--material",
        "graphene",
        "--oxide-nm",
        "90",
        "--um-per-px",
        "0.4",
        "--out",
        str(out),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "1 L" in res.output and out.is_file()
    res = runner.invoke(app, ["setup", "show", str(out), "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and (tmp_path / "p.png").stat().st_size > 1000
    res = runner.invoke(
        app, ["setup", "export", str(out), "--format", "gmm", "--out", str(tmp_path / "g.json")]
    )
    assert res.exit_code == 0
    assert set(json.loads((tmp_path / "g.json").read_text())) >= {"1", "2", "3", "4"}
    # bad: a mask of the wrong size -> error, nothing written
    cv2.imwrite(str(tmp_path / "m" / "i1.png"), np.ones((10, 10), np.uint8))
    out2 = tmp_path / "setup2.json"
    args[-1] = str(out2)
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and isinstance(res.exception, CalibrationError)
    assert not out2.exists()
