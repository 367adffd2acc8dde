"""`detect --detector maskrcnn|union --setup FILE` on tiny random models, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from typer.testing import CliRunner  # noqa: E402

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile  # noqa: E402
from flakefinder.cli.main import create_app  # noqa: E402
from flakefinder.detect.maskrcnn import MaskRCNNDetector  # noqa: E402
from flakefinder.detect.maskrcnn_model import ModelConfig, build_model  # noqa: E402
from flakefinder.detect.model_folder import read_model_config, save_model_folder  # noqa: E402
from flakefinder.domain import ImagingContext  # noqa: E402
from flakefinder.errors import FlakefinderError, ModelError  # noqa: E402
from flakefinder.imaging import save_image  # noqa: E402

COV = ((4e-4, 0.0, 0.0), (0.0, 4e-4, 0.0), (0.0, 0.0, 4e-4))
SMALL = {"backbone": "mobilenet_v3_fpn", "image_size": 128, "box_score_thresh": 0.0,
         "box_detections_per_img": 3}  # fmt: skip


def _folder(tmp: Path, cfg: ModelConfig) -> Path:
    torch.manual_seed(0)
    model = build_model(cfg, weights="none").eval()
    return save_model_folder(tmp / "model", model, cfg, dtype="float16")


@pytest.fixture(scope="module")
def agnostic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("agn"), ModelConfig.agnostic(["graphene"], **SMALL))


@pytest.fixture(scope="module")
def graphene_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = ModelConfig.for_materials(["graphene"], **SMALL)
    return _folder(tmp_path_factory.mktemp("gr"), cfg)


def _profile(tmp: Path, material: str = "graphene") -> Path:
    layers = (
        LayerColour(1, (-0.14, -0.14, -0.07), COV),
        LayerColour(2, (-0.25, -0.26, -0.14), COV),
    )
    p = SetupProfile(name="t", um_per_px=0.75, oxide_nm=90.0,
                     materials=(MaterialTable(material, layers),))  # fmt: skip
    return p.save(tmp / f"{material}.json")


def _images(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    save_image(tmp / "imgs" / "a.png", rng.integers(100, 140, (96, 128, 3), dtype=np.uint8))
    return tmp / "imgs"


def _detect(*args: str) -> tuple[int, str]:
    """Exit code as ``flakefinder`` gives it: main() turns a FlakefinderError into exit 2."""
    res = CliRunner().invoke(create_app(), ["detect", *args])
    code = 2 if isinstance(res.exception, FlakefinderError) else res.exit_code
    return code, res.output + str(res.exception or "")


def test_agnostic_config_round_trips(agnostic: Path) -> None:
    cfg = read_model_config(agnostic)
    assert cfg.class_agnostic and cfg.class_names == ("flake",) and cfg.materials == ("graphene",)
    assert cfg.known_materials == ("graphene",)
    with pytest.raises(ModelError, match="single class"):
        ModelConfig(class_names=("graphene_mono",), class_agnostic=True)


def test_agnostic_detector_refuses_to_guess_classes(agnostic: Path) -> None:
    with pytest.raises(ModelError, match="class-agnostic"):
        MaskRCNNDetector.from_folder(agnostic, device="cpu")
    det = MaskRCNNDetector.from_folder(
        agnostic, device="cpu", score_threshold=0.0, segment_only=True
    )
    img = np.full((64, 64, 3), 120, np.uint8)
    with pytest.raises(ModelError, match="needs a setup profile"):
        det.detect(img, ImagingContext())
    ((rgb, segs),) = det.segment_batch([img])
    assert rgb.shape == (64, 64, 3) and all(s.mask.shape == (64, 64) for s in segs)


def test_agnostic_model_without_setup_classifies_per_terrace(agnostic: Path, tmp_path: Path) -> None:
    """No profile: outlines from the network, layers from the terrace self-calibration."""
    out = tmp_path / "o"
    code, text = _detect(str(_images(tmp_path)), "--out", str(out), "--model", str(agnostic),
                         "--detector", "maskrcnn", "--device", "cpu", "--score", "0")  # fmt: skip
    assert code == 0, text
    assert "no setup profile: maskrcnn self-calibrated on 1 image" in text
    meta = json.loads((out / "images.json").read_text())
    assert meta["detector"]["name"] == "maskrcnn" and "+terrace-" in meta["detector"]["version"]
    # random noise: the network's instances stand out of no substrate, so none is a flake
    assert json.loads((out / "detections.json").read_text()) == []


@pytest.mark.parametrize("detector", ["maskrcnn", "union"])
def test_maskrcnn_with_setup_runs(agnostic: Path, tmp_path: Path, detector: str) -> None:
    out = tmp_path / "o"
    code, text = _detect(str(_images(tmp_path)), "--out", str(out), "--model", str(agnostic),
                         "--detector", detector, "--setup", str(_profile(tmp_path)),
                         "--device", "cpu", "--score", "0")  # fmt: skip
    assert code == 0, text
    meta = json.loads((out / "images.json").read_text())
    assert meta["setup"]["name"] == "t"
    assert meta["detector"]["name"] == ("maskrcnn+setup" if detector == "maskrcnn" else "union")
    for r in json.loads((out / "detections.json").read_text()):
        assert r["layer_count"] in (1, 2)  # every reported flake is classified by the profile


def test_profile_for_other_materials_exits_2(graphene_model: Path, tmp_path: Path) -> None:
    prof = _profile(tmp_path, "WSe2")
    code, out = _detect(str(_images(tmp_path)), "--out", str(tmp_path / "o"),
                        "--model", str(graphene_model), "--setup", str(prof), "--detector", "maskrcnn",
                        "--materials", "WSe2", "--device", "cpu")  # fmt: skip
    assert code == 2, out
    assert "trained on graphene, not on WSe2" in out
    code, out = _detect(str(_images(tmp_path)), "--out", str(tmp_path / "o2"),
                        "--model", str(graphene_model), "--setup", str(prof), "--detector", "maskrcnn",
                        "--materials", "graphene", "--device", "cpu")  # fmt: skip
    assert code == 2, out
    assert "no colour table for 'graphene'" in out


def test_union_without_setup_self_calibrates(tmp_path: Path) -> None:
    out = tmp_path / "o"
    code, text = _detect(str(_images(tmp_path)), "--out", str(out), "--detector", "union",
                         "--device", "cpu")  # fmt: skip
    assert code == 0, text
    assert "no setup profile: union self-calibrated" in text
    assert json.loads((out / "images.json").read_text())["detector"]["name"] == "union"
