"""``flakefinder train`` (Mask R-CNN training, transfer learning) and ``flakefinder dataset-stats``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flakefinder.cli.options import OptionalOxideNmOpt, OptionalUmPerPxOpt

if TYPE_CHECKING:
    from flakefinder.train.recipe import TrainRecipe


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("dataset-stats")(dataset_stats_cmd)


def train_cmd(
    dataset: Path | None = typer.Argument(
        None,
        help="Dataset folder (annotations.json + images/), a COCO file, or labels to fine-tune "
        "on: a Label Studio JSON export, labelme JSON (file or folder), Labelbox NDJSON. "
        "None with a self-training recipe (cpu_selftrain, gpu_selftrain): it builds its own.",
    ),
    out: Path = typer.Option(..., "--out", help="Model folder to write (also history, plots)."),
    recipe: str = typer.Option(
        "auto",
        "--recipe",
        help="Built-in recipe (paper, cpu_small, agnostic_cpu, cpu_selftrain, gpu_selftrain) or "
        "a recipe .toml file; auto: paper on a GPU, cpu_small without one.",
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        help="Model folder to start from (transfer learning / fine-tuning); 'default' is the "
        "shipped model.",
    ),
    materials: list[str] | None = typer.Option(
        None,
        "--materials",
        help="Train only these materials (repeat or comma-separate), e.g. --materials WTe2; "
        "with a self-training recipe: the material of the --unlabelled pictures.",
    ),
    unlabelled: list[Path] | None = typer.Option(
        None,
        "--unlabelled",
        help="Self-training recipes: a folder of your own unlabelled micrographs to "
        "pseudo-label (repeatable; default: the shared real sets, see --real-data).",
    ),
    real_data: Path | None = typer.Option(
        None,
        "--real-data",
        help="Self-training recipes: the shared real sets' folder (default "
        "$FLAKEFINDER_REAL_DATA, else ../shared/data/real beside the checkout).",
    ),
    um_per_px: OptionalUmPerPxOpt = None,
    oxide_nm: OptionalOxideNmOpt = None,
    input_format: str = typer.Option(
        "auto",
        "--format",
        help="Format of DATASET: auto, coco, labelstudio, labelme, labelbox or cvat.",
    ),
    images: Path | None = typer.Option(
        None, "--images", help="Folder holding the labelled images (for non-COCO DATASET)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    stages: int | None = typer.Option(
        None, "--stages", min=1, help="Run only the first N stages of the recipe."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Override the number of epochs of every stage."
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", min=1, help="Override the iterations per epoch."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per step."),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt when it exists."
    ),
    max_minutes: float | None = typer.Option(
        None,
        "--max-minutes",
        "--minutes",
        min=0.0,
        help="Stop at a checkpoint before this many minutes are up (at least one step runs); "
        "run the same command again to continue exactly where it stopped.",
    ),
    skip_missing: bool = typer.Option(
        False, "--skip-missing", help="Leave out images named in the COCO file but not on disk."
    ),
    download_weights: bool = typer.Option(
        False,
        "--download-weights",
        help="Fetch the recipe's pretrained (COCO/ImageNet) weights into the torch cache first "
        "(needs internet); without it, only weights already in the cache are used.",
    ),
) -> None:
    """Train Mask R-CNN on a COCO dataset with the paper's staged schedule.

    Two-step training as in the paper: first on all materials, then per material with
    `--init-from FIRST_MODEL --materials WTe2`. Fine-tune the shipped model on your own labels
    with `--init-from default`. Without a GPU the cpu_small recipe is used (say --recipe paper
    to force the paper's). Multi-GPU: run under torchrun.
    """
    import tempfile

    from flakefinder.train.inputs import training_dataset
    from flakefinder.train.loop import train

    rec = _recipe(recipe, device, stages=stages, epochs=epochs, iterations=iterations,
                  batch_size=batch_size)  # fmt: skip
    if rec.selftrain is not None:
        from flakefinder.cli.train_selftrain import selftrain_chunk

        selftrain_chunk(rec, recipe, dataset, out, unlabelled=unlabelled or [], real_data=real_data,
                        materials=materials, um_per_px=um_per_px, oxide_nm=oxide_nm,
                        init_from=_init_folder(init_from), resume=resume, device=device,
                        max_minutes=max_minutes)  # fmt: skip
        return
    if dataset is None:
        from flakefinder.errors import DatasetError

        raise DatasetError(
            "DATASET is missing: give a dataset folder, COCO file or labels, or use a "
            "self-training recipe (--recipe cpu_selftrain) that builds its own"
        )
    if unlabelled or real_data is not None:
        from flakefinder.errors import DatasetError

        raise DatasetError(f"--unlabelled and --real-data need a self-training recipe, not {rec.name}")
    if download_weights and rec.weights in ("coco", "imagenet"):
        from flakefinder.detect.maskrcnn_model import download_pretrained

        for path in download_pretrained(rec.backbone, rec.weights):
            typer.echo(f"pretrained weights: {path}")
    from flakefinder.cli import parse_materials

    mats = list(parse_materials(materials)) if materials else []
    source = _init_folder(init_from)
    with tempfile.TemporaryDirectory(prefix="flakefinder-train-") as scratch:
        data = training_dataset(dataset, input_format, images=images, scratch=Path(scratch))
        if data != dataset:
            typer.echo(f"{dataset}: converted to a COCO dataset for training")
        train(
            rec,
            data,
            out,
            init_from=source,
            materials=mats or None,
            resume=resume,
            device=device,
            time_budget_s=max_minutes * 60.0 if max_minutes is not None else None,
            skip_missing=skip_missing,
            log=lambda m: typer.echo(m),
        )
    typer.echo(f"done: {out}")


def _init_folder(init_from: str | None) -> Path | None:
    """``--init-from``: a model folder, or ``default`` for the shipped model."""
    if init_from is None:
        return None
    if init_from == "default" and not Path(init_from).exists():
        from flakefinder.detect.maskrcnn import default_model_folder

        return default_model_folder()
    return Path(init_from)


def _recipe(
    name: str,
    device: str,
    *,
    stages: int | None,
    epochs: int | None,
    iterations: int | None,
    batch_size: int | None,
) -> TrainRecipe:
    """The recipe to run: ``auto`` resolved (and said), then the command-line overrides."""
    from flakefinder.train.recipe import auto_recipe_name, load_recipe

    why = ""
    if name == "auto":
        import torch

        gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        name = auto_recipe_name(gpu)
        why = f" ({'a GPU is available' if gpu else 'no GPU found'}; choose another with --recipe)"
    rec = load_recipe(name)
    rec = rec.with_overrides(iterations_per_epoch=iterations, epochs=epochs, n_stages=stages)
    if batch_size is not None:
        rec = rec.with_overrides(batch_size=batch_size)
    # the plan that runs: after --stages, --epochs, --iterations and --batch-size
    typer.echo(
        f"recipe {name}{why}: {rec.backbone}, {rec.image_size} px, {len(rec.stages)} stage(s), "
        f"{rec.total_epochs} epoch(s) x {rec.iterations_per_epoch} iterations, "
        f"batch {rec.batch_size}"
    )
    return rec


def dataset_stats_cmd(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder (annotations.json + images/) or a COCO annotation file."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the bar charts to this PNG (default DATASET/dataset_stats.png)."
    ),
) -> None:
    """Images and objects per material and per class (the paper's Fig. 3b)."""
    from flakefinder.train.data import resolve_dataset
    from flakefinder.train.stats import dataset_statistics, plot_statistics

    ann, _ = resolve_dataset(dataset)
    stats = dataset_statistics(ann)
    typer.echo(stats.format_table())
    target = plot if plot is not None else ann.parent / "dataset_stats.png"
    plot_statistics(stats, target)
    typer.echo(f"plot: {target}")
