"""``flakefinder evaluate``: detector metrics on a COCO dataset, and the illumination sweep.

``flakefinder evaluate DATASET_DIR --detector ... --out DIR`` (same as ``evaluate dataset``)
and ``flakefinder evaluate illumination --out DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from flakefinder.cli.options import (
    DEFAULT_MATERIALS,
    DEFAULT_UM_PER_PX,
    DetectorOpt,
    DetectorOptionsOpt,
    DeviceOpt,
    FramePxOpt,
    MaterialsOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
    SetupOpt,
    UmPerPxOpt,
)
from flakefinder.detect.registry import DEFAULT_DETECTOR

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flakefinder.domain import Detector


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
    name: str,
    model: Path | None = None,
    *,
    setup: str | Path | None = None,
    options: list[str] | None = None,
    device: str = "auto",
    score: float = 0.5,
    optics: Mapping[str, float] | None = None,
) -> Detector:
    """A detector from the registry; ``optics`` (e.g. a dataset's gamma and NA) fills those of
    its options that ``options`` does not set and that the detector has."""
    from flakefinder.cli.options import build_detector
    from flakefinder.detect.registry import detector_spec, parse_option_pairs

    given = parse_option_pairs(options)
    known = {o.name for o in detector_spec(name).options}
    extra = [f"{k}={v!r}" for k, v in (optics or {}).items() if k in known and k not in given]
    return build_detector(
        name,
        model=model,
        setup=setup,
        options=[*(options or []), *extra],
        score=score,
        device=device,
    )


def dataset_cmd(
    paths: list[Path] = typer.Argument(
        ...,
        help=(
            "COCO dataset: a folder with annotations.json and the images it names; with --masks "
            "or --coco: image files or folders of real micrographs."
        ),
    ),
    out: Path = typer.Option(..., "--out", help="Output folder for results and metrics."),
    masks: Path | None = typer.Option(
        None, help="Real images: folder of instance-mask PNGs named by image stem (0 = none)."
    ),
    coco: Path | None = typer.Option(None, help="Real images: COCO ground-truth file."),
    calibrate_on: int | None = typer.Option(
        None, help="Real images: few-shot protocol, calibrate on N images from their outlines."
    ),
    splits: int = typer.Option(3, help="Few-shot: number of random splits."),
    seed: int = typer.Option(0, help="Few-shot: seed of the splits."),
    materials: ProfileMaterialsOpt = None,
    oxide_nm: OptionalOxideNmOpt = None,
    um_per_px: OptionalUmPerPxOpt = None,
    max_layers: int = typer.Option(4, help="Real images: count detections of 1..N layers."),
    detector: DetectorOpt = DEFAULT_DETECTOR,
    model: ModelOpt = None,
    setup: SetupOpt = None,
    detector_option: DetectorOptionsOpt = None,
    results: Path | None = typer.Option(
        None, help="Score this COCO results JSON instead of running a detector."
    ),
    score: float = typer.Option(
        0.5,
        "--score",
        help="Confidence floor inside detectors that have one (use ~0.05 for COCO mAP);"
        " every detection the detector returns is scored.",
    ),
    decision_score: float = typer.Option(
        0.0, help="Image-level P/R and confusion use detections with confidence >= this."
    ),
    iou: float = typer.Option(0.5, help="Mask IoU for a correct detection (image level)."),
    device: DeviceOpt = "auto",
    all_images: bool = typer.Option(
        False,
        "--all-images",
        help="With a --model trained on this dataset: score its training images too (by"
        " default only the images its split held out are scored).",
    ),
) -> None:
    """Detect over DATASET_DIR and write results.json, metrics.json, metrics.md and confusion
    matrices (CSV + PNG): COCO mask/box mAP, mAP@50 per material and class, image-level
    precision/recall (the paper's definition) and thickness confusion."""
    from flakefinder.evaluate.cocodata import load_ground_truth, load_results
    from flakefinder.evaluate.run import (
        dataset_optics,
        evaluate_results,
        run_detector,
        write_report,
    )
    from flakefinder.text import plural

    if not 0.0 < iou <= 1.0:
        raise typer.BadParameter("must lie in (0, 1]", param_hint="--iou")
    if masks is not None or coco is not None:
        from flakefinder.cli.evaluate_real import RealOptions, evaluate_real

        evaluate_real(
            RealOptions(
                paths=tuple(paths),
                out=out,
                masks=masks,
                coco=coco,
                setup=None if setup is None else Path(setup),
                calibrate_on=calibrate_on,
                splits=splits,
                seed=seed,
                materials=materials,
                oxide_nm=oxide_nm,
                um_per_px=um_per_px,
                max_layers=max_layers,
                iou=iou,
            )
        )
        return
    if calibrate_on is not None:
        raise typer.BadParameter(
            "needs real images with --masks or --coco", param_hint="--calibrate-on"
        )
    if len(paths) != 1:
        raise typer.BadParameter("give one COCO dataset folder (or real images with --masks)")
    dataset_dir = paths[0]
    gt, root = load_ground_truth(dataset_dir)
    scope = None
    if results is None and model is not None:
        gt, scope = _held_out(gt, dataset_dir, model, all_images)
    dropped = 0
    if results is not None:
        res = load_results(results, gt)
        name, version = results.name, ""
    else:
        det = make_detector(
            detector,
            model,
            setup=setup,
            options=detector_option,
            device=device,
            score=score,
            optics=dataset_optics(gt),
        )
        n = len(gt["images"])

        def progress(k: int, total: int) -> None:
            if k == total or k % 50 == 0:
                typer.echo(f"  {k}/{plural(total, 'image')}", err=True)

        typer.echo(f"running {det.name} {det.version} on {plural(n, 'image')}", err=True)
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
    written = write_report(report, res if results is None else None, out)
    if scope is not None:  # say in the metrics which images the score is on
        from flakefinder.artifacts import write_json_atomic

        metrics = json.loads(written["metrics"].read_text(encoding="utf-8"))
        metrics["images_scored"] = scope
        write_json_atomic(written["metrics"], metrics)
    typer.echo(report.to_markdown())
    typer.echo(f"written to {out}")


def _held_out(
    gt: dict[str, Any], dataset: Path, model: Path, all_images: bool
) -> tuple[dict[str, Any], str | None]:
    """The ground truth to score with a model trained on (part of) ``dataset``, and what it is.

    A model folder records its training split (``split.json``); on the same annotation file
    its training images are left out unless ``all_images`` (then the score is said not to be
    a held-out one).
    """
    from flakefinder.errors import DatasetError
    from flakefinder.evaluate.heldout import held_out, read_split

    split = read_split(model)
    if split is None:
        return gt, None
    part = held_out(gt, dataset / "annotations.json" if dataset.is_dir() else dataset, split)
    if part is None or part.n_training == 0:
        return gt, None
    if all_images:
        scope = (
            f"all {len(gt['images'])} images, {part.n_training} of which trained the model:"
            " not a held-out score"
        )
        typer.secho(f"note: scoring {scope}", fg=typer.colors.YELLOW, err=True)
        return gt, scope
    if part.n_scored == 0:
        raise DatasetError(
            f"all {part.n_training} images of {dataset} trained the model {model} (its"
            " split.json): evaluate it on other images, or pass --all-images to score them"
            " anyway (not a held-out score)"
        )
    scope = (
        f"the {part.n_scored} images the model's split held out ({part.n_training} training"
        " images of this dataset left out; --all-images scores them too)"
    )
    typer.echo(f"scoring {scope}", err=True)
    return part.gt, scope


def illumination_cmd(
    out: Path = typer.Option(..., "--out", help="Output folder: illumination.csv/.md/.png."),
    detectors: str | None = typer.Option(
        None,
        help="Comma-separated detectors (default: every registered detector that needs no setup"
        " profile; one that needs a model is skipped when none is available).",
    ),
    model: ModelOpt = None,
    levels: str = typer.Option(
        "1.0,0.9,0.8,0.7,0.6,0.5,0.4", help="Relative illumination intensities."
    ),
    views: int = typer.Option(8, help="Fields of view, each centred on a known flake."),
    materials: MaterialsOpt = DEFAULT_MATERIALS,
    seed: int = typer.Option(0, help="Seed of the synthetic chip and camera noise."),
    frame_px: FramePxOpt = 512,
    size_px: int | None = typer.Option(None, "--size-px", hidden=True, help="Old --frame-px."),
    um_per_px: UmPerPxOpt = DEFAULT_UM_PER_PX,
    class_agnostic: bool = typer.Option(
        False, help="Count a detection as correct whatever its class."
    ),
    score: float = typer.Option(
        0.5, "--score", help="Confidence floor inside detectors that have one."
    ),
    device: DeviceOpt = "auto",
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
    from flakefinder.cli.options import deprecated_alias
    from flakefinder.detect.registry import available_detectors, detector_spec

    deprecated_alias(size_px, "--size-px", "--frame-px")
    if size_px is not None:
        frame_px = size_px
    mats = parse_materials(materials)
    names = [d.strip() for d in (detectors or ",".join(available_detectors())).split(",")]
    names = [n for n in names if n]
    dets: list[Any] = []
    for name in names:
        spec = detector_spec(name)
        if spec.requires_setup and detectors is None:
            # the sweep renders synthetic views of its own; there is no setup profile to use
            typer.secho(f"skipping {spec.name}: it needs a setup profile", fg=typer.colors.YELLOW,
                        err=True)  # fmt: skip
            continue
        try:
            takes_model = spec.model != "none"
            dets.append(
                make_detector(name, model if takes_model else None, device=device, score=score)
            )
        except ModelError as exc:
            if detectors is not None:
                raise
            typer.secho(f"skipping {name}: {exc}", fg=typer.colors.YELLOW, err=True)
    if not dets:
        raise typer.BadParameter("no usable detector", param_hint="--detectors")
    config = SyntheticSweepConfig(
        materials=mats,
        n_views=views,
        width_px=frame_px,
        height_px=frame_px,
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
