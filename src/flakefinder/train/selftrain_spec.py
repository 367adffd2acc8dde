"""The ``[selftrain]`` table of a recipe: where the pseudo-labelled training data come from."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from flakefinder.errors import FlakefinderError

REAL_SETS = ("nbse2_2025", "nbse2_2024", "hbn", "hbn_graphene", "2dmatgmm")
"""The shared real sets (``flakefinder.evaluate.real_sets.SET_NAMES``) used by default."""


class SelfTrainSpecError(FlakefinderError, ValueError):
    """A ``[selftrain]`` table that is malformed."""


@dataclass(frozen=True)
class SelfTrainSpec:
    """How a self-training recipe builds its dataset.

    Attributes
    ----------
    real_sets
        Shared real sets to pseudo-label when no folders are given.
    holdout_fraction, holdout_seed
        Share of each real set (by file name, seeded) kept out of training for checking.
    min_confidence
        Terrace detections at least this confident become labels; the others are kept as
        ``iscrowd`` annotations (ignored by the loss) so that they are not taught as substrate.
    calibration_images
        Images of a set the terrace detector self-calibrates on before labelling it.
    max_images_per_set
        Use at most this many images of each set (0: all).
    tile_overlap_px
        Overlap of neighbouring tiles cut from a real picture.
    min_instance_px
        Smallest part of an instance kept in a tile.
    synth_images, synth_seed, synth_materials
        Realistic synthetic tiles with exact labels (``synth --style realistic``).
    init_from
        Model folder the first chunk starts from (``default``: the shipped model; ``""``: the
        recipe's ``weights``).
    """

    real_sets: tuple[str, ...] = REAL_SETS
    holdout_fraction: float = 0.3
    holdout_seed: int = 0
    min_confidence: float = 0.7
    calibration_images: int = 12
    max_images_per_set: int = 0
    tile_overlap_px: int = 64
    min_instance_px: int = 16
    synth_images: int = 200
    synth_seed: int = 1
    synth_materials: tuple[str, ...] = ("graphene", "hBN", "MoS2", "WTe2", "WSe2")
    init_from: str = "default"

    def __post_init__(self) -> None:
        checks = [
            ("real_sets must be a list of names", all(isinstance(s, str) for s in self.real_sets)),
            ("holdout_fraction must be in [0, 1)", _num(self.holdout_fraction)
             and 0.0 <= self.holdout_fraction < 1.0),
            ("min_confidence must be in [0, 1]", _num(self.min_confidence)
             and 0.0 <= self.min_confidence <= 1.0),
            ("calibration_images must be >= 1", _int(self.calibration_images, 1)),
            ("max_images_per_set must be >= 0", _int(self.max_images_per_set, 0)),
            ("tile_overlap_px must be >= 0", _int(self.tile_overlap_px, 0)),
            ("min_instance_px must be >= 1", _int(self.min_instance_px, 1)),
            ("synth_images must be >= 0", _int(self.synth_images, 0)),
            ("holdout_seed and synth_seed must be integers",
             _int(self.holdout_seed, 0) and _int(self.synth_seed, 0)),
            ("synth_materials must be a non-empty list of names",
             bool(self.synth_materials) and all(isinstance(m, str) for m in self.synth_materials)),
            ("init_from must be a string", isinstance(self.init_from, str)),
        ]  # fmt: skip
        unknown = [s for s in self.real_sets if s not in REAL_SETS]
        if unknown:
            raise SelfTrainSpecError(f"unknown real set(s) {unknown}; known: {list(REAL_SETS)}")
        for message, ok in checks:
            if not ok:
                raise SelfTrainSpecError(f"selftrain: {message}")

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "recipe") -> SelfTrainSpec:
        """The ``[selftrain]`` table (unknown keys and bad values refused, naming them)."""
        if isinstance(data, SelfTrainSpec):
            return data
        if not isinstance(data, dict):
            raise SelfTrainSpecError(f"{source}: [selftrain] must be a table")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SelfTrainSpecError(
                f"{source}: unknown [selftrain] key(s) {unknown}; allowed: {sorted(known)}"
            )
        kwargs = dict(data)
        for key in ("real_sets", "synth_materials"):
            if key in kwargs:
                if isinstance(kwargs[key], str) or not isinstance(kwargs[key], (list, tuple)):
                    raise SelfTrainSpecError(f"{source}: selftrain.{key} must be a list of names")
                kwargs[key] = tuple(kwargs[key])
        try:
            return cls(**kwargs)
        except SelfTrainSpecError as exc:
            raise SelfTrainSpecError(f"{source}: {exc}") from None

    def data_key(self) -> dict[str, Any]:
        """The fields that decide the dataset (``init_from`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("init_from")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum
