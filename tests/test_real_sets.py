"""The real sets of ../shared/data/real (exact counts), their parsing, the scale bar, and the
scoring protocol of benchmarks/bench_real.py with fake detectors (truth in: perfect; nothing:
recall 0)."""

from __future__ import annotations

import base64
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flakefinder.calibration.scale_bar import scale_bar_px
from flakefinder.coco import decode_segmentation
from flakefinder.domain import Detection, LayerClass
from flakefinder.errors import DatasetError
from flakefinder.evaluate import real_bench
from flakefinder.evaluate.real_bench import run_mode, score_terraces
from flakefinder.evaluate.real_sets import (
    LabelledImage,
    layer_of_category,
    load_real_set,
    parse_segmentation,
)

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def root() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"the real micrographs are not beside the clone ({REAL.resolve()} is absent)")
    return REAL


def _layers(rs):
    return Counter((n, t.is_thick(k)) for t in rs.truth for k, n in enumerate(t.layers))


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("3L", (3, False)), ("1L", (1, False)), (">5L", (None, True)), (">=5L", (None, True)),
     ("2-Layer", (2, False)), ("3-Layer", (3, False)), ("12 layers", (12, False))],
)
def test_layer_of_category(name, expected):
    assert layer_of_category(name) == expected


@pytest.mark.parametrize("name", ["graphene", "0L", "", "5", "L5"])
def test_layer_of_category_refuses_other_names(name):
    with pytest.raises(DatasetError, match="layer"):
        layer_of_category(name)


def test_string_encoded_segmentations_parse_to_the_same_masks():
    poly = [[2.0, 2.0, 12.0, 2.0, 12.0, 8.0, 2.0, 8.0]]
    assert parse_segmentation(str(poly)) == poly
    assert parse_segmentation(poly) is poly
    direct = decode_segmentation(poly, 10, 15)
    assert np.array_equal(decode_segmentation(parse_segmentation(str(poly)), 10, 15), direct)
    assert direct.sum() == 60
    rle = {"size": [10, 15], "counts": [20, 5, 125]}
    assert parse_segmentation(str(rle)) == rle
    assert decode_segmentation(parse_segmentation(str(rle)), 10, 15).sum() == 5


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "42", "[[1, 2", "'a string'", "{1, 2}"]
)
def test_string_segmentation_is_never_evaluated(text):
    with pytest.raises(DatasetError, match="segmentation"):
        parse_segmentation(text)


# -- scale bar ----------------------------------------------------------------------------------


def _substrate(h=600, w=800):
    rng = np.random.default_rng(0)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (235, 160, 110)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def test_scale_bar_on_a_drawn_bar_with_text_above():
    import cv2

    img = _substrate()
    img[560:565, 600:750] = 250
    cv2.putText(img, "5 um", (640, 550), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (250, 250, 250), 2)
    assert scale_bar_px(img) == 150.0


def test_no_scale_bar_on_plain_substrate_or_a_bright_flake():
    img = _substrate()
    assert scale_bar_px(img) is None
    img[520:590, 560:700] = 250  # a bright thick flake, not a thin bar
    assert scale_bar_px(img) is None


def test_nbse2_pixel_size_from_the_scale_bars(root):
    rs = load_real_set("nbse2_2024", root)
    by_name = dict(zip((p.name for p in rs.images), rs.um_per_px_images, strict=True))
    assert sum(v is None for v in by_name.values()) <= 1
    assert by_name["flake3-100x.jpg"] == pytest.approx(0.0375, rel=0.02)  # 7.5 um bar at 100x
    others = [v for k, v in by_name.items() if v is not None and k != "flake3-100x.jpg"]
    assert len(others) >= 14 and all(v == pytest.approx(0.025, rel=0.02) for v in others)
    assert rs.um_per_px == pytest.approx(0.025, rel=0.01)


# -- loaders on the real data -------------------------------------------------------------------


def test_nbse2_2025(root):
    rs = load_real_set("nbse2_2025", root, measure_scale_bar=False)
    assert (rs.name, rs.material, rs.objective) == ("nbse2_2025", "NbSe2", "150x")
    assert len(rs.images) == 32 and rs.n_instances == 280
    assert _layers(rs) == {(3, False): 25, (4, False): 69, (5, False): 44, (None, True): 142}
    assert rs.layers_known and rs.exhaustive and rs.um_per_px is None and rs.oxide_nm is None
    assert any(" " in p.name for p in rs.images) and all(p.is_file() for p in rs.images)
    assert all(m.shape == (1199, 1599) and m.any() for t in rs.truth for m in t.masks)
    assert "GPL-3.0" in rs.licence


def test_nbse2_2024(root):
    rs = load_real_set("nbse2_2024", root, measure_scale_bar=False)
    assert len(rs.images) == 16 and rs.n_instances == 47
    assert _layers(rs) == {
        (None, True): 27, (5, False): 10, (4, False): 6, (3, False): 3, (2, False): 1
    }


def test_hbn_extracts_the_embedded_jpegs_unchanged(root, tmp_path):
    from flakefinder.artifacts import load_json_file

    rs = load_real_set("hbn", root, cache_dir=tmp_path / "hbn")
    assert len(rs.images) == 55 and rs.n_instances == 72
    assert not rs.exhaustive and not rs.layers_known and rs.material == "hBN"
    assert all(n is None for t in rs.truth for n in t.layers)
    first = sorted((root / "hbn_autoflakedet" / "labelme").glob("*.json"))[0]
    data = base64.b64decode(load_json_file(first)["imageData"])
    assert rs.images[0] == tmp_path / "hbn" / f"{first.stem}.jpg"
    assert rs.images[0].read_bytes() == data
    assert rs.truth[0].masks[0].shape == (2048, 2880)
    mtime = rs.images[0].stat().st_mtime_ns
    again = load_real_set("hbn", root, cache_dir=tmp_path / "hbn", max_images=2)
    assert len(again.images) == 2 and again.images[0].stat().st_mtime_ns == mtime  # kept


def test_hbn_graphene_rle(root):
    rs = load_real_set("hbn_graphene", root)
    assert len(rs.images) == 1 and rs.n_instances == 1
    assert rs.truth[0].layers == (2,) and not rs.exhaustive
    assert int(rs.truth[0].masks[0].sum()) == 23460  # the annotation's area: RLE is exact


def test_2dmatgmm(root):
    rs = load_real_set("2dmatgmm", root)
    assert len(rs.images) == 8 and rs.truth is None and rs.n_instances == 0
    assert rs.oxide_nm == 90.0 and rs.um_per_px == pytest.approx(0.3844, abs=1e-4)
    assert rs.lab_table is not None and rs.lab_table.name == "graphene_90nm.json"


def test_missing_folder_and_unknown_set(tmp_path, root):
    with pytest.raises(DatasetError, match=r"\.\./shared/data/real not found"):
        load_real_set("hbn", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown real set"):
        load_real_set("mos2", root)
    with pytest.raises(DatasetError, match="not found"):
        load_real_set("nbse2_2025", tmp_path)


# -- scoring ------------------------------------------------------------------------------------


def _det(
    mask: np.ndarray, layers: int | None, confidence: float = 0.9, material: str = "NbSe2"
) -> Detection:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
    return Detection(
        material=material,
        layer_class=LayerClass.FEW if layers is not None else LayerClass.THICK,
        confidence=confidence,
        polygon_px=((x0, y0), (x1, y0), (x1, y1), (x0, y1)),
        bbox_px=(x0, y0, x1, y1),
        area_px=float(mask.sum()),
        layer_count=layers,
        mask=mask,
    )


def test_thick_terraces_count_for_precision_not_recall(tmp_path):
    thin = np.zeros((20, 30), bool)
    thin[2:8, 2:10] = True
    thick = np.zeros((20, 30), bool)
    thick[10:18, 12:28] = True
    truth = LabelledImage(tmp_path / "a.jpg", (thin, thick), (3, None), (False, True))
    s = score_terraces(truth, [_det(thick, None)])
    assert (s.n_counted, s.n_found, s.n_correct, s.n_detections) == (1, 0, 1, 1)
    assert (s.recall, s.precision) == (0.0, 1.0) and math.isnan(s.layer_accuracy)
    shifted = np.roll(thin, 5, axis=1)  # IoU 3/13 < 0.5
    s = score_terraces(truth, [_det(thin, 4), _det(shifted, 3, 0.95)])
    assert (s.n_found, s.n_correct, s.n_layer_known, s.n_layer_exact) == (1, 1, 1, 0)


class _FakeDetector:
    """Returns the outlined terraces of each image (with their layer numbers), or nothing."""

    name = "fake"
    version = "1"

    def __init__(self, truth_by_id: dict[int, LabelledImage] | None) -> None:
        self.truth_by_id = truth_by_id
        self.batches: list[int] = []

    def detect(self, image, context):
        if self.truth_by_id is None:
            return []
        t = self.truth_by_id[id(image)]
        return [_det(m, n) for m, n in zip(t.masks, t.layers, strict=True)]


class _FakeBatchDetector(_FakeDetector):
    def detect_batch(self, images, context):
        self.batches.append(len(images))
        return [self.detect(im, context) for im in images]


@pytest.fixture(scope="module")
def two_nbse2(root):
    from flakefinder.imaging import load_image

    rs = load_real_set("nbse2_2025", root, max_images=2)
    return rs, [load_image(p) for p in rs.images]


@pytest.mark.parametrize("cls", [_FakeDetector, _FakeBatchDetector])
def test_bench_scores_a_perfect_detector_as_perfect(two_nbse2, monkeypatch, cls):
    rs, images = two_nbse2
    fake = cls({id(im): t for im, t in zip(images, rs.truth, strict=True)})
    monkeypatch.setattr("flakefinder.detect.registry.create_detector", lambda name, **kw: fake)
    row = run_mode(rs, images, "none", "fake")
    (s,) = row.scores
    thin = sum(not t.is_thick(k) for t in rs.truth for k in range(len(t.masks)))
    assert (s.n_images, s.n_outlined, s.n_counted) == (2, rs.n_instances, thin)
    assert s.n_detections == rs.n_instances and s.n_found == thin
    assert (row.stat("recall")[0], row.stat("precision")[0], row.stat("layer_accuracy")[0]) == (
        1.0, 1.0, 1.0
    )
    assert row.kind == "accuracy" and len(row.ms_per_image) == 2
    assert fake.batches == ([2] if cls is _FakeBatchDetector else [])
    assert all(d.mask is None for ds in row.detections for d in ds)  # masks dropped


def test_bench_scores_an_empty_detector_as_recall_zero(two_nbse2, monkeypatch):
    rs, images = two_nbse2
    monkeypatch.setattr(
        "flakefinder.detect.registry.create_detector", lambda name, **kw: _FakeDetector(None)
    )
    row = run_mode(rs, images, "none", "fake")
    assert row.stat("recall")[0] == 0.0 and math.isnan(row.stat("precision")[0])
    assert row.scores[0].n_detections == 0


def test_failed_calibration_is_a_note_not_a_crash(root, monkeypatch):
    import flakefinder.calibration.api as api
    from flakefinder.errors import CalibrationError
    from flakefinder.imaging import load_image

    def refuse(*args, **kwargs):
        raise CalibrationError("NbSe2: refused for this test")

    monkeypatch.setattr(api, "calibrate", refuse)
    rs = load_real_set("nbse2_2024", root, max_images=3, measure_scale_bar=False)
    images = [load_image(p) for p in rs.images]
    row = run_mode(rs, images, "labels2", "contrast", splits=2)
    assert row.kind == "n/a" and not row.scores
    assert any("2/2 splits failed" in n and "NbSe2" in n for n in row.notes)
    assert "0.1 um/px nominal (150x)" in " ".join(row.notes)
    table = run_mode(rs, images, "table", "contrast")
    assert table.kind == "n/a" and table.notes == ("n/a (no lab table)",)
    assert real_bench.setup_of(rs).oxide_nm == 90.0


class _FixedDetector:
    """Fixed rectangles (1 and 3 layers; ``extra``: one more) on any image; with a profile the
    same ones."""

    name = "fixed"
    version = "1"
    material = "NbSe2"
    extra: tuple[tuple[tuple[int, int, int, int], int], ...] = ()

    def detect(self, image, context):
        h, w = image.shape[:2]
        out = []
        for (y0, y1, x0, x1), n in (((10, 60, 10, 90), 1), ((100, 180, 200, 260), 3), *self.extra):
            m = np.zeros((h, w), bool)
            m[y0:y1, x0:x1] = True
            out.append(_det(m, n, material=self.material))
        return out


class _GrapheneBeyondTable(_FixedDetector):
    """Graphene 1 L and 3 L as the lab's table holds, and a 9 L read beyond the table's ends."""

    material = "graphene"
    extra = (((300, 360, 300, 380), 9),)


def test_2dmatgmm_modes_report_agreement_with_the_lab_table(root, monkeypatch):
    from flakefinder.imaging import load_image

    rs = load_real_set("2dmatgmm", root, max_images=3)
    images = [load_image(p) for p in rs.images]
    made = []

    def create(name, **kw):
        made.append(kw.get("setup") is not None)
        det = _FixedDetector()
        det.material = "graphene"  # the lab's table is graphene's
        return det

    monkeypatch.setattr("flakefinder.detect.registry.create_detector", create)
    table = run_mode(rs, images, "table", "fixed")
    assert table.kind == "reference" and table.scores[0].n_detections == 6 and made == [True]
    none = run_mode(rs, images, "none", "fixed", reference=table)
    assert none.kind == "agreement"
    assert [none.stat(k)[0] for k in ("recall", "precision", "layer_accuracy")] == [1.0, 1.0, 1.0]
    alone = run_mode(rs, images, "none", "fixed")
    assert alone.kind == "counts" and alone.scores[0].n_detections == 6
    assert math.isnan(alone.stat("recall")[0])


def test_bench_scores_what_detect_keeps() -> None:
    """The benchmark drops detections below the commands' default --score, as `detect` does."""
    from flakefinder.cli.options import DEFAULT_SCORE
    from flakefinder.evaluate.real_bench import COMMAND_SCORE

    assert COMMAND_SCORE == DEFAULT_SCORE


def test_agreement_compares_only_the_layer_numbers_the_lab_table_holds(root, monkeypatch):
    """A layer number the classifier read beyond the lab table's ends (here 9 L; the table holds
    1-4 L) is not the lab's: the reference keeps the flake but not its number."""
    from flakefinder.imaging import load_image

    rs = load_real_set("2dmatgmm", root, max_images=2)
    images = [load_image(p) for p in rs.images]
    monkeypatch.setattr(
        "flakefinder.detect.registry.create_detector", lambda name, **kw: _GrapheneBeyondTable()
    )
    table = run_mode(rs, images, "table", "fixed")
    assert [[d.layer_count for d in dets] for dets in table.detections] == [[1, 3, None]] * 2
    none = run_mode(rs, images, "none", "fixed", reference=table)
    assert [none.stat(k)[0] for k in ("recall", "precision", "layer_accuracy")] == [1.0, 1.0, 1.0]
