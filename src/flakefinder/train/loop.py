"""The training loop: the paper's staged SGD schedule with checkpoints, history and resume.

``train(recipe, dataset, out_dir)`` splits the dataset 8:2 (deterministic by the recipe seed),
runs the recipe's stages (each: freeze per ``layers``, fresh SGD with the stage's lr), epochs of
``iterations_per_epoch`` steps drawn from an endless shuffled stream of training samples (see
:mod:`flakefinder.train.steps`), and after every epoch evaluates the weighted loss on the
held-out images, appends a row to ``history.csv``, redraws ``loss.png`` and writes
``checkpoint.pt``.

A call may stop anywhere: after ``max_epochs`` epochs, ``max_steps`` steps, or before a step
that would end past ``time_budget_s`` (:class:`~flakefinder.train.budget.StepBudget`). It then
writes a checkpoint at that step, and a later call with ``resume=True`` continues exactly (same
weights and losses as an uninterrupted run on a deterministic device), so that several short
runs add up to one long training. A call that finds the schedule finished says so and leaves
the model folder alone. The model folder itself (``save_model_folder``) is written atomically
(:mod:`flakefinder.train.publish`).

Multi-GPU: run under ``torchrun``; ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` select the process
group (nccl on CUDA, gloo on CPU), each rank takes every ``world``-th batch of the stream,
gradients are averaged by DistributedDataParallel and only rank 0 writes files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flakefinder.detect.maskrcnn import resolve_device
from flakefinder.errors import ModelError
from flakefinder.train.budget import StepBudget
from flakefinder.train.checkpoint import (
    CHECKPOINT,
    LOSS_KEYS,
    Checkpoint,
    EpochSums,
    Position,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from flakefinder.train.history import plot_history, write_history
from flakefinder.train.prepare import TrainData, prepare_data
from flakefinder.train.progress import TrainProgress, format_duration
from flakefinder.train.recipe import Stage, TrainRecipe, freeze_for_stage, load_recipe
from flakefinder.train.steps import (
    StreamBatches,
    collate,
    distributed,
    evaluate_loss,
    loader_workers,
    train_step,
)
from flakefinder.train.transfer import build_training_model

__all__ = ["CHECKPOINT", "LOSS_KEYS", "evaluate_loss", "resolve_device", "train"]

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def _check_checkpoint(ck: Checkpoint, path: Path, rec: TrainRecipe, names: list[str]) -> None:
    if ck.recipe.get("stages") != rec.to_dict()["stages"] or ck.class_names != names:
        was = [(s["layers"], s["epochs"]) for s in ck.recipe.get("stages", [])]
        now = [(s.layers, s.epochs) for s in rec.stages]
        raise ModelError(
            f"{path} was written by a different recipe or class map (stages {was} vs {now}, "
            f"{len(ck.class_names)} vs {len(names)} classes); use a new output folder or "
            "--no-resume"
        )
    if ck.recipe.get("iterations_per_epoch") not in (None, rec.iterations_per_epoch):
        raise ModelError(
            f"{path} was written with {ck.recipe['iterations_per_epoch']} iterations per epoch, "
            f"this run asks for {rec.iterations_per_epoch}; use the same --iterations, a new "
            "output folder or --no-resume"
        )


def _stage_optimizer(
    model: Any, rec: TrainRecipe, stage: Stage, world: int, dev: str
) -> tuple[Any, Any, list[Any], int]:
    """(network to call, SGD optimizer, its parameters, trainable tensor count) for a stage."""
    import torch

    trainable = freeze_for_stage(model, stage.layers)
    net: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.cuda.current_device()] if dev.startswith("cuda") else None
        net = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=stage.lr, momentum=rec.momentum,
                          weight_decay=rec.weight_decay)  # fmt: skip
    return net, opt, params, len(trainable)


def _epoch_row(
    model: Any, data: TrainData, rec: TrainRecipe, pos: Position, sums: EpochSums, *,
    weights: dict[str, float], dev: str, world: int, epoch_global: int,
) -> dict[str, Any]:  # fmt: skip
    """The history row of the epoch that just ended (test loss evaluated here)."""
    import torch

    stage = rec.stages[pos.stage]
    t_sum, t_n = evaluate_loss(model, data.test, data.test_indices, weights=weights, device=dev,
                               batch_size=rec.batch_size, seed=rec.seed)  # fmt: skip
    n_it = rec.iterations_per_epoch
    stats = torch.tensor([sums.total, float(n_it), t_sum, float(t_n)], dtype=torch.float64)
    if world > 1:
        import torch.distributed as dist

        stats = stats.to(dev)
        dist.all_reduce(stats)
        stats = stats.cpu()
    return {
        "epoch": epoch_global, "stage": pos.stage + 1, "stage_name": stage.name,
        "layers": stage.layers, "lr": stage.lr, "iteration": pos.step,
        "train_loss": float(stats[0] / stats[1]),
        "test_loss": float(stats[2] / stats[3]) if stats[3] > 0 else "",
        **{f"train_{k}": sums.parts[k] / n_it for k in LOSS_KEYS},
        "seconds": round(sums.seconds, 3),
    }  # fmt: skip


def _finished_message(out: Path, pos: Position, rec: TrainRecipe) -> str:
    return (
        f"training in {out} already finished: {rec.total_epochs} epoch(s) of "
        f"{len(rec.stages)} stage(s), {pos.step} steps; nothing to do (train again with "
        "--no-resume or a new --out)"
    )


def train(
    recipe: TrainRecipe | str | Path,
    dataset: str | Path,
    out_dir: str | Path,
    *,
    init_from: str | Path | None = None,
    materials: list[str] | tuple[str, ...] | None = None,
    resume: bool = True,
    device: str = "auto",
    work_dir: str | Path | None = None,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    skip_missing: bool = False,
    progress: bool = True,
    progress_every_s: float = 30.0,
    log: Log | None = print,
) -> Path:
    """Train a Mask R-CNN; returns ``out_dir`` holding the model folder, history and plots.

    ``dataset``: a dataset folder (``annotations.json`` + ``images/``) or a COCO file.
    ``init_from``: a model folder to transfer from; without ``materials`` its class map is kept
    and a dataset category outside it is an error. ``materials``: train only these materials
    (class map ``ClassMap.for_materials``); annotations of other materials are dropped and only
    images with at least one kept annotation are used. Without either, the recipe's materials
    are the class map and any other category in the dataset is an error.
    ``work_dir``: where ``checkpoint.pt`` lives (default ``out_dir``). ``max_epochs`` /
    ``max_steps`` / ``time_budget_s``: stop this call after that many epochs / steps / before a
    step that would end past the budget; a checkpoint is written where it stopped and the model
    folder is written anyway, with ``"completed": false`` in metrics. ``skip_missing``: leave
    out images the COCO file names but that are not on disk (logged). ``progress``: a progress
    bar on a terminal, else a text line every ``progress_every_s`` seconds.
    """
    import torch

    t_start = time.monotonic()
    rec = recipe if isinstance(recipe, TrainRecipe) else load_recipe(recipe)
    if materials:
        rec = rec.with_overrides(materials=tuple(materials))
    elif init_from is not None:
        from flakefinder.detect.model_folder import read_model_config

        rec = rec.with_overrides(materials=read_model_config(init_from).class_map.materials)
    rank, world, dev = distributed(resolve_device(device))
    is_main = rank == 0
    say: Log = (log or _quiet) if is_main else _quiet
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    ckpt_path = work / CHECKPOINT

    data = prepare_data(rec, dataset, drop_other_classes=bool(materials),
                        skip_missing=skip_missing, rank=rank, world=world, say=say)  # fmt: skip
    names = list(data.class_map.names)
    ck = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if ck is not None:
        _check_checkpoint(ck, ckpt_path, rec, names)
        if ck.position.stage >= len(rec.stages) and (out / "config.json").is_file():
            say(_finished_message(out, ck.position, rec))
            return out
    if is_main:  # only once the dataset and checkpoint are known to be usable
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
    workers = loader_workers(rec.num_workers)
    say(f"dataset {data.annotation_file}: {len(data.train)} training / {len(data.test)} test "
        f"images, {len(names)} classes, device {dev}, {world} process(es), "
        f"{workers} data worker(s)"
        + (f" (recipe asks for {rec.num_workers}; {workers} core(s) available)"
           if workers < rec.num_workers else ""))  # fmt: skip

    torch.manual_seed(rec.seed)
    model, config, messages = build_training_model(rec, data.class_map.names, init_from=init_from)
    for m in messages:
        say(m)
    model.to(dev)

    pos, sums, history = Position(), EpochSums(), []
    if ck is not None:
        model.load_state_dict(ck.model_state)
        pos, sums, history = ck.position, ck.sums, list(ck.history)
        set_rng_state(ck.rng)
        if pos.stage >= len(rec.stages):
            say(_finished_message(out, pos, rec) + "; writing the missing model folder")
        else:
            say(f"resuming from {ckpt_path}: stage {pos.stage + 1}, epoch {pos.epoch + 1}, "
                f"step {pos.step} (of {len(rec.stages)} stage(s), "
                f"{rec.stages[pos.stage].epochs} epoch(s) in this stage; iteration "
                f"{pos.iteration}/{rec.iterations_per_epoch} of the epoch)")  # fmt: skip

    budget = StepBudget(seconds=time_budget_s, max_steps=max_steps, t_start=t_start)
    completed = _run_schedule(
        model, data, rec, pos, sums, history, ck, budget,
        out=out, ckpt_path=ckpt_path, dev=dev, rank=rank, world=world, workers=workers,
        max_epochs=max_epochs, progress=progress, progress_every_s=progress_every_s, say=say,
        log=log,
    )  # fmt: skip
    if is_main:
        _publish(out, model, config, rec, data, history, pos, completed=completed,
                 init_from=init_from, seconds=time.monotonic() - t_start)  # fmt: skip
        say(f"model folder written to {out}"
            + ("" if completed else " (training not finished: run the same command to continue)"))  # fmt: skip
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return out


def _run_schedule(
    model: Any, data: TrainData, rec: TrainRecipe, pos: Position, sums: EpochSums,
    history: list[dict[str, Any]], ck: Checkpoint | None, budget: StepBudget, *, out: Path,
    ckpt_path: Path, dev: str, rank: int, world: int, workers: int, max_epochs: int | None,
    progress: bool, progress_every_s: float, say: Log, log: Log | None,
) -> bool:  # fmt: skip
    """Run the schedule from ``pos`` (updated in place); True once all stages are done."""
    import torch

    is_main = rank == 0
    if pos.stage >= len(rec.stages):
        return True
    weights = rec.torchvision_loss_weights()
    loader: Any = torch.utils.data.DataLoader(
        data.train,  # type: ignore[arg-type]
        batch_sampler=StreamBatches(len(data.train), rec.batch_size, rec.seed, pos.step, rank, world),
        collate_fn=collate, num_workers=workers,
        generator=torch.Generator().manual_seed(rec.seed), pin_memory=dev.startswith("cuda"),
    )  # fmt: skip
    batches = iter(loader)
    total_steps = rec.total_epochs * rec.iterations_per_epoch
    epochs_run, saved_step = 0, pos.step if ck is not None else -1

    def save(opt: Any | None) -> None:
        nonlocal saved_step
        if not is_main:
            return
        t0 = time.monotonic()
        save_checkpoint(ckpt_path, model=model, optimizer=opt, optimizer_stage=pos.stage,
                        position=pos, sums=sums, history=history, recipe=rec.to_dict(),
                        class_names=list(data.class_map.names))  # fmt: skip
        write_history(out / "history.csv", history)
        plot_history(out / "loss.png", history, title=rec.name)
        budget.save_s = time.monotonic() - t0
        budget.publish_s = budget.save_s  # the model folder costs about as much as a checkpoint
        saved_step = pos.step

    show = progress and is_main
    with TrainProgress(total_steps, pos.step, log=say if show else None, bar=show,
                       every_s=progress_every_s) as bar:  # fmt: skip
        while pos.stage < len(rec.stages):
            stage = rec.stages[pos.stage]
            net, opt, params, n_trainable = _stage_optimizer(model, rec, stage, world, dev)
            if (
                ck is not None
                and ck.optimizer_state is not None
                and ck.optimizer_stage == pos.stage
            ):
                opt.load_state_dict(ck.optimizer_state)
            ck = None
            say(f"stage {pos.stage + 1}/{len(rec.stages)} {stage.name}: layers {stage.layers}, "
                f"lr {stage.lr:g}, {n_trainable} trainable tensors")  # fmt: skip
            while pos.epoch < stage.epochs:
                epoch_global = sum(s.epochs for s in rec.stages[: pos.stage]) + pos.epoch + 1
                label = f"epoch {epoch_global}/{rec.total_epochs} ({stage.name})"
                model.train()
                while pos.iteration < rec.iterations_per_epoch:
                    ends = pos.iteration + 1 == rec.iterations_per_epoch
                    if not budget.allows_step(ends_epoch=ends):
                        if saved_step != pos.step:
                            save(opt)
                        say(f"stopping at step {pos.step} (time or step budget reached); "
                            "run the same command to continue")  # fmt: skip
                        return False
                    t0 = time.monotonic()
                    train_step(net, opt, params, next(batches), recipe=rec, stage=stage,
                               step=pos.step, weights=weights, device=dev, sums=sums)  # fmt: skip
                    dt = time.monotonic() - t0
                    sums.seconds += dt
                    pos.step += 1
                    pos.iteration += 1
                    budget.note_step(dt)
                    bar.step(label=label, loss=sums.total / pos.iteration)
                t0 = time.monotonic()
                row = _epoch_row(model, data, rec, pos, sums, weights=weights, dev=dev,
                                 world=world, epoch_global=epoch_global)  # fmt: skip
                budget.eval_s = time.monotonic() - t0
                history.append(row)
                test = row["test_loss"]
                say(f"epoch {epoch_global}/{rec.total_epochs}: train {row['train_loss']:.4f}, "
                    f"test {test if test == '' else format(test, '.4f')}"
                    + (f", ETA {format_duration(eta)}" if (eta := bar.eta_s()) else ""))  # fmt: skip
                pos.epoch, pos.iteration, sums = pos.epoch + 1, 0, EpochSums()
                done_stage = pos.epoch >= stage.epochs
                if done_stage:
                    pos.stage, pos.epoch = pos.stage + 1, 0
                save(None if done_stage else opt)
                epochs_run += 1
                if done_stage:
                    break
                if max_epochs is not None and epochs_run >= max_epochs:
                    say("stopping early (epoch budget reached); run the same command to continue")
                    return False
            if pos.stage < len(rec.stages) and max_epochs is not None and epochs_run >= max_epochs:
                say("stopping early (epoch budget reached); run the same command to continue")
                return False
    return True


def _publish(
    out: Path, model: Any, config: Any, rec: TrainRecipe, data: TrainData,
    history: list[dict[str, Any]], pos: Position, *, completed: bool,
    init_from: str | Path | None, seconds: float,
) -> None:  # fmt: skip
    """Write the model folder (atomically) with its metrics."""
    from flakefinder.artifacts import dataset_hash
    from flakefinder.detect.model_folder import save_model_folder
    from flakefinder.evaluate.heldout import write_split
    from flakefinder.train.publish import publish_folder

    last = history[-1] if history else {}
    test_losses = [float(r["test_loss"]) for r in history if r.get("test_loss") != ""]
    metrics = {
        "final_train_loss": last.get("train_loss"), "final_test_loss": last.get("test_loss"),
        "best_test_loss": min(test_losses) if test_losses else None,
        "epochs": len(history), "iterations": pos.step, "completed": completed,
        "train_images": len(data.train), "test_images": len(data.test),
        "init_from": str(init_from) if init_from else None,
        "training_seconds_this_run": round(seconds, 1),
    }  # fmt: skip
    data_hash = dataset_hash([data.annotation_file, *(r.path for r in data.full.records)])
    names = {int(im["id"]): str(im["file_name"]) for im in data.full.coco["images"]}

    def write(tmp: Path) -> None:
        save_model_folder(tmp, model, config, metrics=metrics, training_data_hash=data_hash,
                          recipe=rec.to_dict())  # fmt: skip
        # which images trained it: `evaluate` on the same dataset then scores only the others
        write_split(tmp, data.annotation_file, (names[r.image_id] for r in data.train.records),
                    (names[r.image_id] for r in data.test.records))  # fmt: skip

    publish_folder(out, write)
