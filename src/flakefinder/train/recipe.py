"""Training recipes: the paper's four-stage schedule and its hyper-parameters, from TOML.

A recipe file (see ``recipes/paper.toml``) holds top-level keys (:class:`TrainRecipe` fields),
a ``[loss_weights]`` table (classifier, box_reg, mask, objectness, rpn_box) and a list of
``[[stages]]`` tables with ``name``, ``layers`` (``heads``, ``4+``, ``all``), ``lr`` and
``epochs``. Unknown keys and out-of-range values raise :class:`RecipeError` naming them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flakefinder.errors import FlakefinderError
from flakefinder.train.selftrain_spec import SelfTrainSpec

RECIPE_DIR = Path(__file__).with_name("recipes")
LAYER_CHOICES = ("heads", "4+", "all")
BACKBONE_CHOICES = ("resnet101_fpn", "resnet50_fpn", "mobilenet_v3_fpn")
WEIGHT_CHOICES = ("coco", "imagenet", "none")
LOSS_KEYS = ("classifier", "box_reg", "mask", "objectness", "rpn_box")
# recipe loss-weight key -> torchvision loss-dict key
TORCHVISION_LOSS_NAMES = {
    "classifier": "loss_classifier",
    "box_reg": "loss_box_reg",
    "mask": "loss_mask",
    "objectness": "loss_objectness",
    "rpn_box": "loss_rpn_box_reg",
}
PAPER_MATERIALS = ("graphene", "hBN", "MoS2", "WTe2")


class RecipeError(FlakefinderError, ValueError):
    """A training recipe that is malformed."""


@dataclass(frozen=True)
class Stage:
    name: str
    layers: str
    lr: float
    epochs: int


def paper_stages() -> tuple[Stage, ...]:
    return (
        Stage("heads", "heads", 1e-3, 30),
        Stage("stage4+", "4+", 1e-3, 30),
        Stage("all", "all", 1e-4, 30),
        Stage("all", "all", 1e-5, 30),
    )


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of a training run; defaults are the paper's."""

    name: str = "paper"
    stages: tuple[Stage, ...] = field(default_factory=paper_stages)
    iterations_per_epoch: int = 500
    batch_size: int = 2  # per process (per GPU)
    image_size: int = 1024
    momentum: float = 0.9
    weight_decay: float = 1e-4
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {
            "classifier": 0.6,
            "box_reg": 1.0,
            "mask": 1.0,
            "objectness": 1.0,
            "rpn_box": 1.0,
        }
    )
    augment: bool = True
    seed: int = 0
    backbone: str = "resnet101_fpn"
    weights: str = "coco"  # initial weights when not transferring from a model folder
    materials: tuple[str, ...] = PAPER_MATERIALS
    class_agnostic: bool = False  # one "flake" class; classes come from a setup profile
    train_fraction: float = 0.8
    num_workers: int = 2
    max_test_images: int = 0  # 0: evaluate the test loss on every held-out image each epoch
    clip_grad_norm: float = 0.0  # 0: no clipping (the paper does not clip)
    rois_per_image: int = 512  # sampled ROIs per image for the box/mask heads (torchvision default)
    rpn_post_nms_train: int = 2000  # RPN proposals kept per image in training
    warmup_iterations: int = 0  # linear lr warm-up over the first steps (the paper: none)
    frozen_batchnorm: bool = True  # False: trainable BatchNorm (for training without pretraining)
    tile_um_per_px: float = 0.0  # > 0: trained on tiles at this pixel size, inferred tiled
    selftrain: SelfTrainSpec | None = None  # [selftrain]: the dataset is built by self-training

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def torchvision_loss_weights(self) -> dict[str, float]:
        return {TORCHVISION_LOSS_NAMES[k]: float(v) for k, v in self.loss_weights.items()}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stages"] = [dataclasses.asdict(s) for s in self.stages]
        d["materials"] = list(self.materials)
        if self.selftrain is None:
            d.pop("selftrain")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "recipe") -> TrainRecipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(known)}")
        kwargs = dict(data)
        if "stages" in kwargs:
            kwargs["stages"] = tuple(
                _stage(s, f"{source}: stage {i + 1}") for i, s in enumerate(kwargs["stages"])
            )
        if "materials" in kwargs:
            if isinstance(kwargs["materials"], str):
                raise RecipeError(f"{source}: materials must be a list of names")
            kwargs["materials"] = tuple(str(m) for m in kwargs["materials"])
        if kwargs.get("selftrain") is not None:
            kwargs["selftrain"] = SelfTrainSpec.from_dict(kwargs["selftrain"], source=source)
        if "loss_weights" in kwargs:
            lw = kwargs["loss_weights"]
            if not isinstance(lw, dict):
                raise RecipeError(f"{source}: loss_weights must be a table")
            bad = sorted(set(lw) - set(LOSS_KEYS))
            if bad:
                raise RecipeError(f"{source}: unknown loss weight(s) {bad}; allowed: {LOSS_KEYS}")
            merged = dict(TrainRecipe().loss_weights)
            merged.update(lw)
            kwargs["loss_weights"] = merged
        try:
            return cls(**kwargs)
        except RecipeError as exc:
            raise RecipeError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise RecipeError(f"{source}: {exc}") from None

    def with_overrides(
        self,
        *,
        iterations_per_epoch: int | None = None,
        epochs: int | None = None,
        materials: tuple[str, ...] | list[str] | None = None,
        n_stages: int | None = None,
        **changes: Any,
    ) -> TrainRecipe:
        """Copy with the iterations per epoch, the epochs of *every* stage, materials changed.

        ``n_stages`` keeps only the first stages of the schedule (1 to the recipe's number).
        """
        if iterations_per_epoch is not None:
            changes["iterations_per_epoch"] = int(iterations_per_epoch)
        stages = tuple(changes.get("stages", self.stages))
        if n_stages is not None:
            if not 1 <= int(n_stages) <= len(stages):
                raise RecipeError(
                    f"recipe {self.name!r} has {len(stages)} stage(s); cannot run {n_stages}"
                )
            stages = stages[: int(n_stages)]
            changes["stages"] = stages
        if epochs is not None:
            changes["stages"] = tuple(dataclasses.replace(s, epochs=int(epochs)) for s in stages)
        if materials is not None:
            changes["materials"] = tuple(materials)
        return dataclasses.replace(self, **changes)


def _stage(data: Any, where: str) -> Stage:
    if isinstance(data, Stage):
        return data
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: must be a table with name, layers, lr, epochs")
    allowed = {"name", "layers", "lr", "epochs"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(allowed - {"name"} - set(data))
    if missing:
        raise RecipeError(f"{where}: missing key(s) {missing}")
    return Stage(str(data.get("name", data["layers"])), data["layers"], data["lr"], data["epochs"])


def _validate(r: TrainRecipe) -> None:
    if not r.stages:
        raise RecipeError("a recipe needs at least one stage")
    for i, s in enumerate(r.stages):
        where = f"stage {i + 1} ({s.name})"
        if s.layers not in LAYER_CHOICES:
            raise RecipeError(f"{where}: layers {s.layers!r} is not one of {LAYER_CHOICES}")
        if isinstance(s.lr, bool) or not isinstance(s.lr, (int, float)):
            raise RecipeError(f"{where}: lr must be a number, got {s.lr!r}")
        if not (math.isfinite(s.lr) and 0.0 < s.lr <= 1.0):
            raise RecipeError(f"{where}: lr must be in (0, 1], got {s.lr}")
        if isinstance(s.epochs, bool) or not isinstance(s.epochs, int) or s.epochs < 1:
            raise RecipeError(f"{where}: epochs must be a positive integer, got {s.epochs!r}")
    checks: list[tuple[str, bool]] = [
        ("iterations_per_epoch must be a positive integer", _pos_int(r.iterations_per_epoch)),
        ("batch_size must be a positive integer", _pos_int(r.batch_size)),
        (
            "image_size must be a multiple of 32 (>= 64)",
            _pos_int(r.image_size) and r.image_size >= 64 and r.image_size % 32 == 0,
        ),
        ("momentum must be in [0, 1)", _num(r.momentum) and 0.0 <= r.momentum < 1.0),
        ("weight_decay must be >= 0", _num(r.weight_decay) and r.weight_decay >= 0.0),
        ("train_fraction must be in (0, 1)", _num(r.train_fraction) and 0 < r.train_fraction < 1),
        ("num_workers must be >= 0", isinstance(r.num_workers, int) and r.num_workers >= 0),
        (
            "max_test_images must be >= 0",
            isinstance(r.max_test_images, int) and r.max_test_images >= 0,
        ),
        ("clip_grad_norm must be >= 0", _num(r.clip_grad_norm) and r.clip_grad_norm >= 0),
        ("rois_per_image must be a positive integer", _pos_int(r.rois_per_image)),
        ("rpn_post_nms_train must be a positive integer", _pos_int(r.rpn_post_nms_train)),
        (
            "warmup_iterations must be >= 0",
            isinstance(r.warmup_iterations, int) and r.warmup_iterations >= 0,
        ),
        ("frozen_batchnorm must be true or false", isinstance(r.frozen_batchnorm, bool)),
        ("augment must be true or false", isinstance(r.augment, bool)),
        ("seed must be an integer", isinstance(r.seed, int) and not isinstance(r.seed, bool)),
        (f"backbone must be one of {BACKBONE_CHOICES}", r.backbone in BACKBONE_CHOICES),
        (f"weights must be one of {WEIGHT_CHOICES}", r.weights in WEIGHT_CHOICES),
        ("materials must be a non-empty list of names", bool(r.materials)),
        ("class_agnostic must be true or false", isinstance(r.class_agnostic, bool)),
        (
            "tile_um_per_px must be a number in [0, 100)",
            _num(r.tile_um_per_px) and 0.0 <= r.tile_um_per_px < 100.0,
        ),
        (
            "a [selftrain] recipe needs class_agnostic = true and tile_um_per_px > 0",
            r.selftrain is None or (r.class_agnostic and r.tile_um_per_px > 0),
        ),
    ]
    for message, ok in checks:
        if not ok:
            raise RecipeError(message)
    for k, v in r.loss_weights.items():
        if k not in LOSS_KEYS:
            raise RecipeError(f"unknown loss weight {k!r}; allowed: {LOSS_KEYS}")
        if not _num(v) or v < 0:
            raise RecipeError(f"loss weight {k} must be a number >= 0, got {v!r}")


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def auto_recipe_name(cuda_available: bool) -> str:
    """The recipe ``--recipe auto`` picks: the paper's on a GPU, ``cpu_small`` without one."""
    return "paper" if cuda_available else "cpu_small"


def is_selftrain(rec: TrainRecipe) -> bool:
    """Whether the recipe builds its own dataset by self-training (a ``[selftrain]`` table)."""
    return rec.selftrain is not None


def builtin_recipes() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in RECIPE_DIR.glob("*.toml")))


def load_recipe(name_or_path: str | Path) -> TrainRecipe:
    """A built-in recipe by name (``paper``, ``cpu_small``) or a TOML file."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and (RECIPE_DIR / f"{name_or_path}.toml").is_file():
        p = RECIPE_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        raise RecipeError(
            f"no recipe {str(name_or_path)!r}: not a file and not one of {builtin_recipes()}"
        )
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{p}: cannot read TOML: {exc}") from None
    data.setdefault("name", p.stem)
    return TrainRecipe.from_dict(data, source=str(p))


def freeze_for_stage(model: Any, layers: str) -> list[str]:
    """Set ``requires_grad`` for a stage; returns the names of the trainable parameters.

    ``"heads"``: RPN, FPN and ROI heads (the backbone body frozen; FPN counts as a head as in the
    reference Mask R-CNN, whose "heads" regex includes fpn); ``"4+"``: also ResNet stages 4 and 5
    (torchvision ``layer3``/``layer4``, i.e. conv4_x/conv5_x) or, for MobileNet, the blocks from
    the second-to-last strided stage on; ``"all"``: everything. Accepts a DDP-wrapped model.
    """
    from flakefinder.detect.maskrcnn_model import set_trainable_stage

    if layers not in LAYER_CHOICES:
        raise RecipeError(f"layers {layers!r} is not one of {LAYER_CHOICES}")
    net = getattr(model, "module", model)
    set_trainable_stage(net, layers)
    return [n for n, p in net.named_parameters() if p.requires_grad]
