"""``flakefinder evaluate``: detector metrics on a COCO dataset, and the illumination sweep.

``flakefinder evaluate DATASET_DIR --detector ... --out DIR`` (same as ``evaluate dataset``)
and ``flakefinder evaluate illumination --out DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from flakefinder.domain import Detector

ALL_DETECTORS = ("maskrcnn", "rulebased", "contrast")


class _DatasetByDefault(TyperGroup):
    """Route ``evaluate DATASET_DIR ...`` to the ``dataset`` sub-command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["dataset", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        cls=_DatasetByDefault,
        help=(
            "Evaluate detectors. `evaluate DATASET_DIR --detector NAME --out DIR` scores a detector "
            "on a COCO dataset; `evaluate illumination --out DIR` runs the illumination sweep."
        ),
        no_args_is_help=True,
    )
    sub.command("dataset")(dataset_cmd)
    sub.command("illumination")(illumination_cmd)
    app.add_typer(sub, name="evaluate")


def make_detector(
    name: str, model: Path | None, *, device: str = "auto", score: float = 0.5
) -> Detector:
    """A detector by name; maskrcnn needs ``model`` or an installed default model."""
    from flakefinder.detect.registry import create_detector
    from flakefinder.errors import ModelError

    key = name.strip().lower()
    if key == "maskrcnn":
        from flakefinder.detect.maskrcnn import default_model_folder

        if model is None and not default_model_folder().is_dir():
            raise ModelError(
                f"no default Mask R-CNN model is installed (looked in {default_model_folder()}); "
                "pass --model DIR with a trained model folder, or use another detector"
            )
        return create_detector("maskrcnn", model=model, device=device, score_threshold=score)
    try:
        return create_detector(key)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--detector") from None


def dataset_cmd(
    dataset_dir: Path = typer.Argument(
        ..., help="COCO dataset: a folder with annotations.json and the images it names."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder for results and metrics."),
    detector: str = typer.Option("maskrcnn", help="Detector: maskrcnn, contrast or rulebased."),
    model: Path | None = typer.Option(None, help="Mask R-CNN model folder (maskrcnn only)."),
    results: Path | None = typer.Option(
        None, help="Score this COCO results JSON instead of running a detector."
    ),
    score: float = typer.Option(
        0.5, help="maskrcnn only: confidence floor of the detector (use ~0.05 for COCO mAP)."
    ),
    decision_score: float = typer.Option(
        0.0, help="Image-level P/R and confusion use detections with confidence >= this."
    ),
    iou: float = typer.Option(0.5, help="Mask IoU for a correct detection (image level)."),
    device: str = typer.Option("auto", help="maskrcnn only: cpu, cuda or auto."),
) -> None:
    """Detect over DATASET_DIR and write results.json, metrics.json, metrics.md and confusion
    matrices (CSV + PNG): COCO mask/box mAP, mAP@50 per material and class, image-level
    precision/recall (the paper's definition) and thickness confusion."""
    from flakefinder.evaluate.cocodata import load_ground_truth, load_results
    from flakefinder.evaluate.run import evaluate_results, run_detector, write_report

    if not 0.0 < iou <= 1.0:
        raise typer.BadParameter("must lie in (0, 1]", param_hint="--iou")
    gt, root = load_ground_truth(dataset_dir)
    dropped = 0
    if results is not None:
        res = load_results(results, gt)
        name, version = results.name, ""
    else:
        det = make_detector(detector, model, device=device, score=score)
        n = len(gt["images"])

        def progress(k: int, total: int) -> None:
            if k == total or k % 50 == 0:
                typer.echo(f"  {k}/{total} images", err=True)

        typer.echo(f"running {det.name} {det.version} on {n} images", err=True)
        res, dropped = run_detector(det, gt, root, progress=progress)
        name, version = str(det.name), str(det.version)
    report = evaluate_results(
        gt,
        res,
        iou_threshold=iou,
        score_threshold=decision_score,
        detector=name,
        detector_version=version,
        n_dropped=dropped,
    )
    write_report(report, res if results is None else None, out)
    typer.echo(report.to_markdown())
    typer.echo(f"written to {out}")


def illumination_cmd(
    out: Path = typer.Option(..., "--out", help="Output folder: illumination.csv/.md/.png."),
    detectors: str | None = typer.Option(
        None,
        help="Comma-separated detectors (default maskrcnn,rulebased,contrast; maskrcnn is "
        "skipped when no model is available).",
    ),
    model: Path | None = typer.Option(None, help="Mask R-CNN model folder."),
    levels: str = typer.Option(
        "1.0,0.9,0.8,0.7,0.6,0.5,0.4", help="Relative illumination intensities."
    ),
    views: int = typer.Option(8, help="Fields of view, each centred on a known flake."),
    materials: str = typer.Option("graphene", help="Comma-separated materials on the chip."),
    seed: int = typer.Option(0, help="Seed of the synthetic chip and camera noise."),
    size_px: int = typer.Option(512, help="Image width and height (px)."),
    um_per_px: float = typer.Option(0.2, help="Pixel size on the sample (µm)."),
    class_agnostic: bool = typer.Option(
        False, help="Count a detection as correct whatever its class."
    ),
    score: float = typer.Option(0.5, help="maskrcnn only: confidence floor."),
    device: str = typer.Option("auto", help="maskrcnn only: cpu, cuda or auto."),
) -> None:
    """Reproduce the paper's Fig. 2: render the same synthetic views at decreasing illumination
    and report each detector's recall and precision (flake and image level)."""
    from flakefinder.errors import ModelError
    from flakefinder.evaluate.illumination import (
        SyntheticSweepConfig,
        illumination_sweep,
        synthetic_views,
    )

    try:
        lv = tuple(float(v) for v in levels.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(
            f"not a list of numbers: {levels!r}", param_hint="--levels"
        ) from None
    if not lv or any(v <= 0 for v in lv):
        raise typer.BadParameter("give positive intensities", param_hint="--levels")
    from flakefinder.cli import parse_materials

    mats = parse_materials(materials)
    names = [d.strip() for d in (detectors or ",".join(ALL_DETECTORS)).split(",") if d.strip()]
    dets: list[Any] = []
    for name in names:
        try:
            dets.append(make_detector(name, model, device=device, score=score))
        except ModelError as exc:
            if detectors is not None:
                raise
            typer.secho(f"skipping {name}: {exc}", fg=typer.colors.YELLOW, err=True)
    if not dets:
        raise typer.BadParameter("no usable detector", param_hint="--detectors")
    config = SyntheticSweepConfig(
        materials=mats,
        n_views=views,
        width_px=size_px,
        height_px=size_px,
        um_per_px=um_per_px,
        seed=seed,
    )
    result = illumination_sweep(
        dets,
        synthetic_views(config),
        config.context(),
        illuminations=lv,
        class_agnostic=class_agnostic,
        progress=lambda msg: typer.echo(f"  {msg}", err=True),
    )
    paths = result.write(out)
    typer.echo(result.to_markdown())
    typer.echo(f"written: {', '.join(str(p) for p in paths.values())}")
