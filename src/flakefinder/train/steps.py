"""The pieces the training loop is made of: the sample stream, devices, one step, test loss.

Sample ``q`` of the stream is image ``perm_p[q mod n]`` (``perm_p`` a permutation drawn from
(seed, p = q div n)), augmented with a seed drawn from (seed, q): data depend only on the
position in the stream, whatever the number of workers or processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from flakefinder.errors import ModelError
from flakefinder.train.checkpoint import LOSS_KEYS, EpochSums
from flakefinder.train.data import CocoDetectionDataset
from flakefinder.train.recipe import Stage, TrainRecipe


def collate(batch: list[Any]) -> tuple[Any, ...]:
    """Transpose a list of (image, target) pairs into (images, targets)."""
    return tuple(zip(*batch, strict=True))


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of sample ``position`` of the stream."""
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


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def loader_workers(requested: int) -> int:
    """DataLoader workers: the recipe's number, but never more than the cores available."""
    return max(0, min(int(requested), available_cores()))


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; a CUDA device without CUDA is refused."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available")
    return device


def distributed(device: str) -> tuple[int, int, str]:
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


def to_device(batch: tuple[Any, ...], device: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Move a collated batch to ``device``."""
    images, targets = batch
    ims = [im.to(device, non_blocking=True) for im in images]
    tgs = [{k: (v.to(device) if hasattr(v, "to") else v) for k, v in t.items()} for t in targets]
    return ims, tgs


def train_step(
    net: Any,
    opt: Any,
    params: list[Any],
    batch: tuple[Any, ...],
    *,
    recipe: TrainRecipe,
    stage: Stage,
    step: int,
    weights: dict[str, float],
    device: str,
    sums: EpochSums,
) -> float:
    """One SGD step (warm-up lr, clipping); adds the losses to ``sums``; returns the loss."""
    import torch

    from flakefinder.detect.maskrcnn_model import weighted_loss

    ims, tgs = to_device(batch, device)
    losses = net(ims, tgs)
    loss = weighted_loss(losses, weights)
    if not torch.isfinite(loss):
        raise ModelError(
            f"training diverged at step {step} (loss {float(loss)}); "
            "lower the learning rate or set clip_grad_norm"
        )
    if step < recipe.warmup_iterations:
        for g in opt.param_groups:
            g["lr"] = stage.lr * (step + 1) / recipe.warmup_iterations
    elif recipe.warmup_iterations and step == recipe.warmup_iterations:
        for g in opt.param_groups:
            g["lr"] = stage.lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
    opt.step()
    value = float(loss.detach())
    sums.total += value
    for k in LOSS_KEYS:
        if k in losses:
            sums.parts[k] += float(losses[k].detach())
    return value


def evaluate_loss(
    model: Any,
    dataset: CocoDetectionDataset,
    indices: list[int],
    *,
    weights: dict[str, float],
    device: str,
    batch_size: int,
    seed: int,
) -> tuple[float, int]:
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
            ims, tgs = to_device(collate(batch), device)
            loss = weighted_loss(model(ims, tgs), weights)
            total += float(loss.detach()) * len(batch)
            count += len(batch)
    model.train(was_training)
    return total, count
