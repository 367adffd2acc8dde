"""``flakefinder train`` (Mask R-CNN training, transfer learning) and ``flakefinder dataset-stats``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("dataset-stats")(dataset_stats_cmd)


def train_cmd(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder (annotations.json + images/) or a COCO annotation file."
    ),
    out: Path = typer.Option(..., "--out", help="Model folder to write (also history, plots)."),
    recipe: str = typer.Option(
        "paper", "--recipe", help="Built-in recipe (paper, cpu_small) or a recipe .toml file."
    ),
    init_from: Path | None = typer.Option(
        None, "--init-from", help="Model folder to start from (transfer learning)."
    ),
    materials: list[str] | None = typer.Option(
        None,
        "--materials",
        help="Train only these materials (repeat or comma-separate), e.g. --materials WTe2.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    iterations: int | None = typer.Option(
        None, "--iterations", min=1, help="Override the iterations per epoch."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Override the number of epochs of every stage."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per step."),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt when it exists."
    ),
    minutes: float | None = typer.Option(
        None, "--minutes", min=0.0, help="Stop at the first epoch end after this much time."
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
    `--init-from FIRST_MODEL --materials WTe2`. Multi-GPU: run under torchrun.
    """
    from flakefinder.train.loop import train
    from flakefinder.train.recipe import load_recipe

    rec = load_recipe(recipe).with_overrides(iterations_per_epoch=iterations, epochs=epochs)
    if download_weights and rec.weights in ("coco", "imagenet"):
        from flakefinder.detect.maskrcnn_model import download_pretrained

        for path in download_pretrained(rec.backbone, rec.weights):
            typer.echo(f"pretrained weights: {path}")
    if batch_size is not None:
        rec = rec.with_overrides(batch_size=batch_size)
    from flakefinder.cli import parse_materials

    mats = list(parse_materials(materials)) if materials else []
    if init_from is not None and not mats:
        from flakefinder.detect.model_folder import read_model_config

        mats = list(read_model_config(init_from).class_map.materials)
    train(
        rec,
        dataset,
        out,
        init_from=init_from,
        materials=mats or None,
        resume=resume,
        device=device,
        time_budget_s=minutes * 60.0 if minutes is not None else None,
        skip_missing=skip_missing,
        log=lambda m: typer.echo(m),
    )
    typer.echo(f"done: {out}")


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
