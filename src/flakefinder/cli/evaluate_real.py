"""``flakefinder evaluate IMAGES --masks DIR|--coco FILE (--setup FILE | --calibrate-on N)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer


@dataclass(frozen=True)
class RealOptions:
    """Options of the real-image evaluation (see ``flakefinder evaluate --help``)."""

    paths: tuple[Path, ...]
    out: Path
    masks: Path | None
    coco: Path | None
    setup: Path | None
    calibrate_on: int | None
    splits: int
    seed: int
    materials: str | None
    oxide_nm: float | None
    um_per_px: float | None
    max_layers: int
    iou: float


def evaluate_real(opts: RealOptions) -> None:
    """Score the calibrated contrast detector on outlined real micrographs; write metrics.json."""
    from flakefinder.artifacts import write_json_atomic
    from flakefinder.cli.options import resolve_context
    from flakefinder.errors import DatasetError
    from flakefinder.evaluate.fewshot import few_shot, score_profile
    from flakefinder.evaluate.real import load_coco_truth, load_mask_truth, summarize_splits
    from flakefinder.imaging import iter_image_files, load_image

    if (opts.masks is None) == (opts.coco is None):
        raise typer.BadParameter("give exactly one of --masks and --coco", param_hint="--masks")
    if (opts.setup is None) == (opts.calibrate_on is None):
        raise typer.BadParameter(
            "give --setup FILE (score a profile) or --calibrate-on N (few-shot protocol)",
            param_hint="--setup",
        )
    if opts.max_layers < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-layers")
    files = iter_image_files(list(opts.paths))
    if not files:
        raise DatasetError("no image files found")
    if opts.masks is not None:
        truth = load_mask_truth(files, opts.masks)
    else:
        assert opts.coco is not None
        truth = load_coco_truth(files, opts.coco)
    images = [load_image(t.path) for t in truth]
    metrics: dict[str, object]
    if opts.setup is not None:
        from flakefinder.detect.setup_io import load_setup

        loaded = load_setup(opts.setup)
        prof = loaded.profile
        ctx = resolve_context(
            um_per_px=opts.um_per_px, oxide_nm=opts.oxide_nm, materials=opts.materials,
            profile=prof,
        )  # fmt: skip
        s = score_profile(
            prof,
            truth,
            images,
            ctx,
            flatfield=loaded.flatfield,
            max_layers=opts.max_layers,
            iou_threshold=opts.iou,
        )
        metrics = {"mode": "profile", "setup": loaded.describe(), **s.to_json()}
        line = f"recall {s.recall:.3f}, precision {s.precision:.3f} ({s.n_truth} flakes)"
    else:
        from flakefinder.cli.options import note_assumed_defaults

        ctx = resolve_context(
            um_per_px=opts.um_per_px, oxide_nm=opts.oxide_nm, materials=opts.materials
        )
        note_assumed_defaults(
            ctx, um_per_px=opts.um_per_px, oxide_nm=opts.oxide_nm, who="the few-shot protocol"
        )
        assert opts.calibrate_on is not None
        scores = few_shot(
            truth,
            images,
            ctx,
            n_calibration=opts.calibrate_on,
            n_splits=opts.splits,
            seed=opts.seed,
            max_layers=opts.max_layers,
            iou_threshold=opts.iou,
            progress=lambda msg: typer.echo(f"  {msg}", err=True),
        )
        summary = summarize_splits(scores)
        metrics = {"mode": f"few-shot, calibrate on {opts.calibrate_on}", **summary}
        r, p = summary["recall"], summary["precision"]
        line = (
            f"recall {r['mean']} ± {r['sd']}, precision {p['mean']} ± {p['sd']} "
            f"over {len(scores)} splits"
        )
    metrics.update(
        iou_threshold=opts.iou, max_layers=opts.max_layers, materials=list(ctx.materials)
    )
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(opts.out / "metrics.json", metrics)
    typer.echo(
        f"class-agnostic, IoU >= {opts.iou}, detections of 1-{opts.max_layers} layers: {line}"
    )
    typer.echo(f"written to {opts.out / 'metrics.json'}")
