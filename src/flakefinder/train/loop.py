"""The training loop: the paper's staged SGD schedule with checkpoints, history and resume.

``train(recipe, dataset, out_dir)`` splits the dataset 8:2 (deterministic by the recipe seed),
runs the recipe's stages (each: freeze per ``layers``, fresh SGD with the stage's lr), epochs of
``iterations_per_epoch`` steps drawn from an endless shuffled stream of training samples, and
after every epoch evaluates the weighted loss on the held-out images (train mode for the losses,
no gradients, batch-norm statistics and the RNG left untouched), appends a row to
``history.csv``, redraws ``loss.png`` and writes ``checkpoint.pt``. A later call with
``resume=True`` continues from the checkpoint exactly (same weights as an uninterrupted run on
a deterministic device). The end result is a model folder (``save_model_folder``) in ``out_dir``.

Sample ``q`` of the stream is image ``perm_p[q mod n]`` (``perm_p`` a permutation drawn from
(seed, p = q div n)), augmented with a seed drawn from (seed, q): data depend only on the
position in the stream, whatever the number of workers or processes.

Multi-GPU: run under ``torchrun``; ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` select the process
group (nccl on CUDA, gloo on CPU), each rank takes every ``world``-th batch of the stream,
gradients are averaged by DistributedDataParallel and only rank 0 writes files.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flakefinder.detect.maskrcnn import resolve_device
from flakefinder.domain import ClassMap
from flakefinder.errors import DatasetError, ModelError
from flakefinder.train.augment import Augmenter
from flakefinder.train.data import CocoDetectionDataset, resolve_dataset, split_dataset
from flakefinder.train.history import plot_history, write_history
from flakefinder.train.recipe import TrainRecipe, freeze_for_stage, load_recipe
from flakefinder.train.transfer import build_training_model

CHECKPOINT = "checkpoint.pt"
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


def collate(batch: list[Any]) -> tuple[Any, ...]:
    return tuple(zip(*batch, strict=True))


def sample_seed(seed: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class StreamBatches:
    """Batch sampler over the endless sample stream, from global step ``start_step`` on."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, rank: int, world: int):
        self.n, self.bs, self.seed = n, batch_size, seed
        self.start, self.rank, self.world = start_step, rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _index(self, q: int) -> int:
        p = q // self.n
        if p not in self._perms:
            self._perms = {p: np.random.default_rng([self.seed, p]).permutation(self.n)}
        return int(self._perms[p][q % self.n])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.bs
            yield [(self._index(q), sample_seed(self.seed, q)) for q in range(base, base + self.bs)]
            step += 1


def _distributed(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) from torchrun's environment; initialises the process group."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world, device


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             "python": random.getstate()}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_device(batch: tuple[Any, ...], device: str) -> tuple[list[Any], list[dict[str, Any]]]:
    images, targets = batch
    ims = [im.to(device, non_blocking=True) for im in images]
    tgs = [{k: (v.to(device) if hasattr(v, "to") else v) for k, v in t.items()} for t in targets]
    return ims, tgs


def evaluate_loss(model: Any, dataset: CocoDetectionDataset, indices: list[int], *,
                  weights: dict[str, float], device: str, batch_size: int, seed: int) -> tuple[float, int]:  # fmt: skip
    """(sum of weighted losses, number of images) over ``indices``, without changing the model.

    torchvision returns losses only in train mode, so the model is put in train mode with batch
    norm in eval mode, gradients off and the RNG forked (proposal sampling is random).
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    from flakefinder.detect.maskrcnn_model import weighted_loss

    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
    total, count = 0.0, 0
    devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(indices), batch_size):
            batch = [dataset[i] for i in indices[start : start + batch_size]]
            ims, tgs = _to_device(collate(batch), device)
            loss = weighted_loss(model(ims, tgs), weights)
            total += float(loss.detach()) * len(batch)
            count += len(batch)
    model.train(was_training)
    return total, count


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


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
    time_budget_s: float | None = None,
    skip_missing: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Train a Mask R-CNN; returns ``out_dir`` holding the model folder, history and plots.

    ``dataset``: a dataset folder (``annotations.json`` + ``images/``) or a COCO file.
    ``init_from``: a model folder to transfer from. ``materials``: train only these materials
    (class map ``ClassMap.for_materials``); annotations of other materials are dropped and only
    images with at least one kept annotation are used. Without it, the recipe's materials are
    the class map and any other category in the dataset is an error.
    ``work_dir``: where ``checkpoint.pt`` lives (default ``out_dir``). ``max_epochs`` /
    ``time_budget_s``: stop after that many epochs in this call / once the time is used up (at
    an epoch end); the model folder is written anyway, with ``"completed": false`` in metrics.
    ``skip_missing``: leave out images the COCO file names but that are not on disk (logged)
    instead of raising :class:`DatasetError`.
    """
    import torch

    from flakefinder.artifacts import dataset_hash
    from flakefinder.detect.maskrcnn_model import weighted_loss
    from flakefinder.detect.model_folder import save_model_folder

    t_start = time.monotonic()
    rec = recipe if isinstance(recipe, TrainRecipe) else load_recipe(recipe)
    if materials:
        rec = rec.with_overrides(materials=tuple(materials))
    say = log or (lambda _m: None)
    dev = resolve_device(device)
    rank, world, dev = _distributed(dev)
    is_main = rank == 0
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    say = say if is_main else (lambda _m: None)

    ann, image_dir = resolve_dataset(dataset)
    class_map = ClassMap.for_materials(rec.materials)
    subset = bool(materials)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = CocoDetectionDataset(ann, image_dir, class_map, image_size=rec.image_size,
                                    unknown_categories="drop" if subset else "error",
                                    only_annotated=subset, skip_missing=skip_missing)  # fmt: skip
    for w in caught:
        say(f"warning: {w.message}")
    if len(full) < 2:
        raise DatasetError(f"{ann}: need at least 2 usable images to train, found {len(full)}")
    if is_main:  # only once the dataset is known to be usable
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
    train_ids, test_ids = split_dataset(full.ids, rec.train_fraction, rec.seed)
    aug = Augmenter() if rec.augment else None
    train_ds = CocoDetectionDataset(ann, image_dir, class_map, transform=aug, image_size=rec.image_size,
                                    unknown_categories="drop" if subset else "error", image_ids=train_ids,
                                    only_annotated=subset)  # fmt: skip
    test_ds = CocoDetectionDataset(ann, image_dir, class_map, image_size=rec.image_size,
                                   unknown_categories="drop" if subset else "error", image_ids=test_ids,
                                   only_annotated=subset)  # fmt: skip
    test_idx = list(range(len(test_ds)))
    if rec.max_test_images:
        test_idx = test_idx[: rec.max_test_images]
    test_idx = test_idx[rank::world]
    say(f"dataset {ann}: {len(train_ds)} training / {len(test_ds)} test images, "
        f"{len(class_map.names)} classes, device {dev}, {world} process(es)")  # fmt: skip

    torch.manual_seed(rec.seed)
    model, config, messages = build_training_model(rec, class_map.names, init_from=init_from)
    for m in messages:
        say(m)
    model.to(dev)
    weights = rec.torchvision_loss_weights()

    ckpt_path = work / CHECKPOINT
    stage_i, epoch_i, step, history = 0, 0, 0, []
    ckpt: dict[str, Any] | None = None
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("recipe", {}).get("stages") != rec.to_dict()["stages"] or list(
            ckpt.get("class_names", [])
        ) != list(class_map.names):
            raise ModelError(
                f"{ckpt_path} was written by a different recipe or class map; "
                "use a new output folder or --no-resume"
            )
        model.load_state_dict(ckpt["model"])
        stage_i, epoch_i, step = ckpt["next_stage"], ckpt["next_epoch"], ckpt["step"]
        history = list(ckpt["history"])
        _set_rng_state(ckpt["rng"])
        say(f"resuming from {ckpt_path}: stage {stage_i + 1}, epoch {epoch_i + 1}, step {step}")

    loader: Any = torch.utils.data.DataLoader(
        train_ds,  # type: ignore[arg-type]
        batch_sampler=StreamBatches(len(train_ds), rec.batch_size, rec.seed, step, rank, world),  # type: ignore[arg-type]
        collate_fn=collate,
        num_workers=rec.num_workers,
        generator=torch.Generator().manual_seed(rec.seed),
        pin_memory=dev.startswith("cuda"),
    )
    batches = iter(loader)
    epoch_global = sum(s.epochs for s in rec.stages[:stage_i]) + epoch_i
    epochs_run, stopped_early = 0, False
    from rich.progress import Progress

    with Progress(disable=not (progress and is_main), transient=True) as bar:
        while stage_i < len(rec.stages) and not stopped_early:
            stage = rec.stages[stage_i]
            trainable = freeze_for_stage(model, stage.layers)
            net: Any = model
            if world > 1:
                from torch.nn.parallel import DistributedDataParallel

                net = DistributedDataParallel(
                    model, device_ids=[torch.cuda.current_device()] if dev.startswith("cuda") else None,
                    find_unused_parameters=True,
                )  # fmt: skip
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=stage.lr, momentum=rec.momentum,
                                  weight_decay=rec.weight_decay)  # fmt: skip
            if (
                ckpt is not None
                and ckpt.get("optimizer") is not None
                and ckpt["opt_stage"] == stage_i
            ):
                opt.load_state_dict(ckpt["optimizer"])
            ckpt = None
            say(f"stage {stage_i + 1}/{len(rec.stages)} {stage.name}: layers {stage.layers}, "
                f"lr {stage.lr:g}, {len(trainable)} trainable tensors")  # fmt: skip
            while epoch_i < stage.epochs:
                t0 = time.monotonic()
                model.train()
                sums = dict.fromkeys(LOSS_KEYS, 0.0)
                total = 0.0
                task = bar.add_task(f"epoch {epoch_global + 1}/{rec.total_epochs} ({stage.name})",
                                    total=rec.iterations_per_epoch)  # fmt: skip
                for _ in range(rec.iterations_per_epoch):
                    ims, tgs = _to_device(next(batches), dev)
                    losses = net(ims, tgs)
                    loss = weighted_loss(losses, weights)
                    if not torch.isfinite(loss):
                        raise ModelError(
                            f"training diverged at step {step} (loss {float(loss)}); "
                            "lower the learning rate or set clip_grad_norm"
                        )
                    if step < rec.warmup_iterations:
                        for g in opt.param_groups:
                            g["lr"] = stage.lr * (step + 1) / rec.warmup_iterations
                    elif rec.warmup_iterations and step == rec.warmup_iterations:
                        for g in opt.param_groups:
                            g["lr"] = stage.lr
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    if rec.clip_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(params, rec.clip_grad_norm)
                    opt.step()
                    step += 1
                    total += float(loss.detach())
                    for k in LOSS_KEYS:
                        if k in losses:
                            sums[k] += float(losses[k].detach())
                    bar.update(task, advance=1)
                bar.remove_task(task)
                n_it = rec.iterations_per_epoch
                t_sum, t_n = evaluate_loss(model, test_ds, test_idx, weights=weights, device=dev,
                                           batch_size=rec.batch_size, seed=rec.seed)  # fmt: skip
                stats = torch.tensor([total, float(n_it), t_sum, float(t_n)], dtype=torch.float64)
                if world > 1:
                    import torch.distributed as dist

                    stats = stats.to(dev)
                    dist.all_reduce(stats)
                    stats = stats.cpu()
                epoch_i += 1
                epoch_global += 1
                epochs_run += 1
                row = {
                    "epoch": epoch_global, "stage": stage_i + 1, "stage_name": stage.name,
                    "layers": stage.layers, "lr": stage.lr, "iteration": step,
                    "train_loss": float(stats[0] / stats[1]),
                    "test_loss": float(stats[2] / stats[3]) if stats[3] > 0 else "",
                    **{f"train_{k}": sums[k] / n_it for k in LOSS_KEYS},
                    "seconds": round(time.monotonic() - t0, 3),
                }  # fmt: skip
                history.append(row)
                say(f"epoch {epoch_global}/{rec.total_epochs}: train {row['train_loss']:.4f}, "
                    f"test {row['test_loss'] if row['test_loss'] == '' else format(row['test_loss'], '.4f')}")  # fmt: skip
                done_stage = epoch_i >= stage.epochs
                if is_main:
                    _save_checkpoint(ckpt_path, {
                        "model": model.state_dict(),
                        "optimizer": None if done_stage else opt.state_dict(),
                        "opt_stage": stage_i,
                        "next_stage": stage_i + 1 if done_stage else stage_i,
                        "next_epoch": 0 if done_stage else epoch_i,
                        "step": step, "history": history, "rng": _rng_state(),
                        "recipe": rec.to_dict(), "class_names": list(class_map.names),
                    })  # fmt: skip
                    write_history(out / "history.csv", history)
                    plot_history(out / "loss.png", history, title=rec.name)
                over_time = time_budget_s is not None and time.monotonic() - t_start > time_budget_s
                if (max_epochs is not None and epochs_run >= max_epochs) or over_time:
                    stopped_early = not (done_stage and stage_i + 1 == len(rec.stages))
                    if stopped_early:
                        say("stopping early (epoch or time budget reached); resume to continue")
                        break
            if not stopped_early:
                stage_i, epoch_i = stage_i + 1, 0

    if is_main:
        last = history[-1] if history else {}
        test_losses = [float(r["test_loss"]) for r in history if r.get("test_loss") != ""]
        metrics = {
            "final_train_loss": last.get("train_loss"), "final_test_loss": last.get("test_loss"),
            "best_test_loss": min(test_losses) if test_losses else None,
            "epochs": len(history), "iterations": step, "completed": not stopped_early,
            "train_images": len(train_ds), "test_images": len(test_ds),
            "init_from": str(init_from) if init_from else None,
            "training_seconds_this_run": round(time.monotonic() - t_start, 1),
        }  # fmt: skip
        data_hash = dataset_hash([ann, *(r.path for r in full.records)])
        save_model_folder(out, model, config, metrics=metrics, training_data_hash=data_hash,
                          recipe=rec.to_dict())  # fmt: skip
        say(f"model folder written to {out}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return out
