"""One chunk of self-training: sources, the dataset (built once), training, the account.

``flakefinder train --recipe cpu_selftrain --out DIR [--unlabelled FOLDER ...]`` calls
:func:`run_selftrain`. The first call builds ``DIR/data`` (pseudo-labels and synthetic tiles,
:mod:`.dataset`); later calls reuse it when the sources and the recipe's data settings are
unchanged, and resume the training exactly from ``DIR/checkpoint.pt``. A checkpoint trained on
other data is never continued on new data (it says so). Each call adds its process CPU time
to ``DIR/selftrain.json`` (:mod:`.ledger`).
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.errors import DatasetError
from flakefinder.train.selftrain.sources import (
    SourceSet,
    folder_sets,
    holdout_split,
    shared_real_root,
    shared_sets,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flakefinder.train.recipe import TrainRecipe
    from flakefinder.train.selftrain.pseudo import Labelled
    from flakefinder.train.selftrain_spec import SelfTrainSpec

PSEUDO_LABELLER = "terrace detector (no profile, self-calibrated per set on its training pictures)"


def _sources(
    spec: SelfTrainSpec, folders: list[Path], real_root: Path | None, scratch: Path,
    *, um_per_px: float, oxide_nm: float, material: str, assumed: tuple[str, ...],
    say: Callable[[str], None],
) -> list[SourceSet]:  # fmt: skip
    limit = spec.max_images_per_set or None
    if folders:
        return folder_sets(folders, um_per_px=um_per_px, oxide_nm=oxide_nm, material=material,
                           max_images=limit, assumed=assumed)  # fmt: skip
    root = real_root if real_root is not None else shared_real_root()
    if root is None or not spec.real_sets:
        say("no real pictures (no --unlabelled folder, and no shared real sets found: set "
            "FLAKEFINDER_REAL_DATA or --real-data): synthetic tiles only")  # fmt: skip
        return []
    return shared_sets(root, spec.real_sets, cache_dir=scratch, max_images=limit)


def _key(rec: TrainRecipe, spec: SelfTrainSpec, sets: list[SourceSet],
         splits: dict[str, tuple[list[str], list[str]]]) -> dict[str, Any]:  # fmt: skip
    sources = []
    for s in sets:
        size = {im.name: im.path.stat().st_size for im in s.images}
        sources.append({
            "name": s.name, "origin": s.origin, "material": s.material, "oxide_nm": s.oxide_nm,
            "um_per_px": sorted({round(im.um_per_px, 6) for im in s.images}),
            "trained": [[n, size[n]] for n in splits[s.name][0]],
            "held_out": [[n, size[n]] for n in splits[s.name][1]],
        })  # fmt: skip
    return {"spec": spec.data_key(), "tile_px": rec.image_size,
            "tile_um_per_px": rec.tile_um_per_px, "sources": sources}  # fmt: skip


def _items(spec: SelfTrainSpec, sets: list[SourceSet], splits: dict[str, tuple[list[str],
           list[str]]], tile_px: int, tile_um: float, say: Callable[[str], None],
           ) -> Iterator[Labelled]:  # fmt: skip
    from flakefinder.train.selftrain.pseudo import pseudo_labelled, synthetic

    for s in sets:
        train_names, held = splits[s.name]
        say(f"pseudo-labelling {s.name}: {len(train_names)} pictures (held out: {len(held)})")
        yield from pseudo_labelled(s, train_names, spec, say)
    if spec.synth_images:
        say(f"rendering {spec.synth_images} realistic synthetic tiles")
        yield from synthetic(spec, tile_px, tile_um)


def _info(spec: SelfTrainSpec, sets: list[SourceSet],
          splits: dict[str, tuple[list[str], list[str]]], rec: TrainRecipe) -> dict[str, Any]:  # fmt: skip
    return {
        "pseudo_labels": f"{PSEUDO_LABELLER}; class-agnostic; confidence >= "
                         f"{spec.min_confidence:g} (less sure ones ignored by the loss)",
        "sets": {s.name: {"origin": s.origin, "material": s.material,
                          "um_per_px": round(s.um_per_px, 6), "assumed": list(s.assumed),
                          "trained": splits[s.name][0], "held_out": splits[s.name][1]}
                 for s in sets},
        "synth": {"images": spec.synth_images, "seed": spec.synth_seed,
                  "materials": list(spec.synth_materials), "style": "realistic"},
        "tile_px": rec.image_size, "tile_um_per_px": rec.tile_um_per_px,
    }  # fmt: skip


def _steps(out: Path) -> int:
    from flakefinder.artifacts import load_json_file
    from flakefinder.errors import FlakefinderError

    try:
        data = load_json_file(out / "metrics.json")
    except FlakefinderError:
        return 0
    return int(data.get("iterations", 0)) if isinstance(data, dict) else 0


def _completed(out: Path) -> bool:
    from flakefinder.artifacts import load_json_file
    from flakefinder.errors import FlakefinderError

    try:
        data = load_json_file(out / "metrics.json")
    except FlakefinderError:
        return False
    return bool(isinstance(data, dict) and data.get("completed"))


def _init_from(spec: SelfTrainSpec, given: Path | None) -> Path | None:
    if given is not None:
        return given
    if spec.init_from == "default":
        from flakefinder.detect.maskrcnn import default_model_folder

        return default_model_folder()
    return Path(spec.init_from) if spec.init_from else None


def run_selftrain(
    rec: TrainRecipe,
    out: Path,
    *,
    folders: list[Path],
    real_root: Path | None,
    um_per_px: float,
    oxide_nm: float,
    material: str,
    assumed: tuple[str, ...] = (),
    init_from: Path | None = None,
    resume: bool = True,
    device: str = "auto",
    max_minutes: float | None = None,
    max_steps: int | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run one chunk (see the module docstring); returns the updated ledger.

    ``max_minutes`` counts from the call's start (the dataset build included); ``max_steps``
    stops after that many steps (tests).

    Raises
    ------
    DatasetError
        Unusable sources, nothing to learn, or a checkpoint made on other data.
    """
    from flakefinder.train.checkpoint import CHECKPOINT
    from flakefinder.train.loop import train
    from flakefinder.train.selftrain.dataset import build_dataset, read_manifest, reusable
    from flakefinder.train.selftrain.ledger import record_chunk, write_card_section

    t_wall, t_cpu = time.monotonic(), time.process_time()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    spec = rec.selftrain
    if spec is None:
        raise DatasetError(f"recipe {rec.name!r} has no [selftrain] table")
    data_dir = out / "data"
    built_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="flakefinder-selftrain-") as scratch:
        sets = _sources(spec, folders, real_root, Path(scratch), um_per_px=um_per_px,
                        oxide_nm=oxide_nm, material=material, assumed=assumed, say=log)  # fmt: skip
        splits = {s.name: holdout_split([im.name for im in s.images], spec.holdout_fraction,
                                        spec.holdout_seed, s.name) for s in sets}  # fmt: skip
        key = _key(rec, spec, sets, splits)
        manifest = read_manifest(data_dir)
        if reusable(manifest, key):
            log(f"dataset {data_dir}: reused ({manifest['tiles']} tiles, "  # type: ignore[index]
                f"{manifest['labels']} labels)")  # type: ignore[index]
        else:
            if resume and (out / CHECKPOINT).is_file():
                raise DatasetError(
                    f"{out / CHECKPOINT} continues a training on other data than these sources "
                    f"and settings give ({data_dir} is missing or was built from others); use "
                    "the same sources and recipe, a new --out, or --no-resume"
                )
            log(f"building the self-training dataset in {data_dir}")
            manifest = build_dataset(
                data_dir, _items(spec, sets, splits, rec.image_size, rec.tile_um_per_px, log),
                key=key, info=_info(spec, sets, splits, rec), tile_px=rec.image_size,
                overlap_px=spec.tile_overlap_px, tile_um_per_px=rec.tile_um_per_px,
                min_px=spec.min_instance_px, say=log,
            )  # fmt: skip
            built_cpu = float(manifest["build_cpu_s"])
            log(f"dataset: {manifest['tiles']} tiles, {manifest['labels']} labels, "
                f"{built_cpu:.0f} CPU-s")  # fmt: skip
    assert manifest is not None
    budget = None
    if max_minutes is not None:
        budget = max(0.0, max_minutes * 60.0 - (time.monotonic() - t_wall))
    continuing = resume and (out / CHECKPOINT).is_file()
    before = _steps(out) if continuing else 0
    materials = sorted({s.material for s in sets} | set(spec.synth_materials))
    train(rec, data_dir, out, init_from=_init_from(spec, init_from), materials=materials,
          resume=resume, device=device, time_budget_s=budget, max_steps=max_steps,
          log=log)  # fmt: skip
    import torch

    from flakefinder.detect.maskrcnn import resolve_device

    chunk = {
        "started_utc": started, "cpu_s": round(time.process_time() - t_cpu, 1),
        "wall_s": round(time.monotonic() - t_wall, 1), "data_build_cpu_s": built_cpu,
        "device": resolve_device(device), "torch_threads": torch.get_num_threads(),
        "steps_before": before, "steps_after": _steps(out), "completed": _completed(out),
        "recipe": rec.name,
    }  # fmt: skip
    ledger = record_chunk(out, chunk, manifest, fresh=not continuing, command=command)
    write_card_section(out, ledger)
    log(f"self-training so far: {ledger['cpu_hours']:.3f} CPU-hours in "
        f"{len(ledger['chunks'])} chunk(s), {chunk['steps_after']} steps")  # fmt: skip
    return ledger
