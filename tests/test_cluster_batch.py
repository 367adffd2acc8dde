"""Batch detection on a local Dask cluster gives what the detector gives in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flakefinder.cli.main import create_app
from flakefinder.cluster.batch import DetectorRecipe, chunked, detect_chunk, detect_files
from flakefinder.domain import ImagingContext
from flakefinder.errors import FlakefinderError
from flakefinder.imaging import save_image
from flakefinder.synth.chip import random_chip
from flakefinder.synth.render import render_view

CTX = ImagingContext(um_per_px=0.4, materials=("graphene",))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    chip = random_chip(600.0, 600.0, ("graphene",), seed=7)
    paths = []
    for i, (cx, cy) in enumerate([(100, 100), (300, 100), (500, 300), (300, 500), (100, 500)]):
        paths.append(
            save_image(folder / f"t{i}.png", render_view(chip, cx, cy, 512, 512, 0.4, seed=i))
        )
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return sorted(paths) + [folder / "broken.png"]


def _summary(
    results: list,
) -> list[tuple[str, list[tuple[str, str, int | None, tuple[float, ...]]]]]:
    return [
        (
            Path(r.path).name,
            [(d.material, d.layer_class.value, d.layer_count, d.bbox_px) for d in r.detections],
        )
        for r in results
    ]


def test_cluster_results_equal_in_process_results(images: list[Path]) -> None:
    spec = DetectorRecipe("contrast")
    local = detect_chunk([str(p) for p in images], spec, CTX)
    assert sum(len(r.detections) for r in local) > 0
    remote = detect_files(images, spec, CTX, n_workers=2, chunk_size=2)
    assert _summary(remote) == _summary(local)  # same flakes, same order as the input
    [broken] = [r for r in remote if r.error]
    assert Path(broken.path).name == "broken.png" and "cannot decode image" in broken.error
    assert all(d.mask is None for r in remote for d in r.detections)


def test_chunked() -> None:
    assert list(chunked(["a", "b", "c"], 2)) == [["a", "b"], ["c"]]
    with pytest.raises(ValueError):
        list(chunked(["a"], 0))


def test_batch_detect_cli(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(
        create_app(),
        ["batch-detect", str(images[0].parent), "--out", str(out), "--detector", "contrast",
         "--workers", "1", "--um-per-px", "0.4"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = (out / "flakes.jsonl").read_text().splitlines()
    assert len(lines) == len(images)
    n_csv = len((out / "flakes.csv").read_text().splitlines()) - 1
    local = detect_chunk([str(p) for p in images], DetectorRecipe("contrast", min_score=0.5), CTX)
    assert n_csv == sum(len(x.detections) for x in local)
    # issue 11 #6: `detect` and `batch-detect` agree on the same images (same --score default)
    det_out = tmp_path / "detect"
    r = CliRunner().invoke(
        create_app(),
        ["detect", str(images[0].parent), "--out", str(det_out), "--um-per-px", "0.4",
         "--detector", "contrast", "--no-overlays"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    n_detect = len((det_out / "flakes.csv").read_text().splitlines()) - 1
    assert n_detect == n_csv > 0
    strict = detect_chunk([str(p) for p in images], DetectorRecipe("contrast", min_score=1.0), CTX)
    assert all(d.confidence >= 1.0 for x in strict for d in x.detections)
    assert sum(len(x.detections) for x in strict) < n_csv  # the score is applied on the worker


def test_batch_detect_over_database_images(tmp_path: Path) -> None:
    from flakefinder.cluster.batch import database_image_paths
    from web_helpers import populate

    url = f"sqlite:///{tmp_path / 'f.db'}"
    populate(url, tmp_path / "tiles").close()
    paths = database_image_paths(url)
    assert [p.name for p in paths] == ["tile_0.png", "tile_1.png"]
    assert database_image_paths(url, scan_id=1) == paths
    out = tmp_path / "out"
    r = CliRunner().invoke(
        create_app(),
        [
            "batch-detect",
            "--db",
            url,
            "--out",
            str(out),
            "--detector",
            "contrast",
            "--workers",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len((out / "flakes.jsonl").read_text().splitlines()) == 2
    (tmp_path / "tiles" / "tile_1.png").unlink()
    with pytest.raises(FlakefinderError, match="1 stored image files are missing"):
        database_image_paths(url)
