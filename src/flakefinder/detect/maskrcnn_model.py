"""Mask R-CNN model definition: configuration, builder, pretrained-weight loading, loss weights.

The paper uses Mask R-CNN with a ResNet-101 FPN backbone, initialised from MS-COCO weights
except for the network heads, images letterboxed to 1024 x 1024, loss
``L = 0.6 L_cls + 1.0 L_box + 1.0 L_mask`` and four training stages (heads, ResNet stage 4+,
all, all). torchvision provides COCO Mask R-CNN weights only for ResNet-50 FPN; for the other
backbones "coco" falls back to ImageNet backbone weights. Weights are only ever read from the
local torch hub cache (``torch.hub.get_dir()/checkpoints``) -- nothing is downloaded.

torch/torchvision are imported inside functions so that importing this module stays cheap.
Model folders (save/load) live in :mod:`flakefinder.detect.model_folder`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.domain import ClassMap, parse_category_name
from flakefinder.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch
    from torchvision.models.detection import MaskRCNN

log = logging.getLogger(__name__)

BACKBONES: tuple[str, ...] = ("resnet101_fpn", "resnet50_fpn", "mobilenet_v3_fpn")
CONFIG_VERSION = 1

#: The single class of a class-agnostic segmenter: material and layer number come from a setup
#: profile (:mod:`flakefinder.detect.segment_classify`), not from the network.
AGNOSTIC_CLASS = "flake"

# Paper: (alpha, beta, gamma) = (0.6, 1.0, 1.0) for classification, box and mask losses;
# torchvision's RPN losses keep weight 1.
PAPER_LOSS_WEIGHTS: dict[str, float] = {
    "loss_classifier": 0.6,
    "loss_box_reg": 1.0,
    "loss_mask": 1.0,
    "loss_objectness": 1.0,
    "loss_rpn_box_reg": 1.0,
}
_LOSS_ALIASES = {"cls": "loss_classifier", "box": "loss_box_reg", "mask": "loss_mask"}

# Per-backbone defaults for the head sizes (None in ModelConfig -> these).
_HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet101_fpn": {"box_representation_size": 1024, "mask_head_channels": (256,) * 4,
                      "mask_predictor_channels": 256, "trainable_layers": 3},
    "resnet50_fpn": {"box_representation_size": 1024, "mask_head_channels": (256,) * 4,
                     "mask_predictor_channels": 256, "trainable_layers": 3},
    # Light heads so that fp16 weights stay well under 25 MB for a shipped CPU model.
    "mobilenet_v3_fpn": {"box_representation_size": 256, "mask_head_channels": (128, 128),
                         "mask_predictor_channels": 128, "trainable_layers": 3,
                         "anchor_sizes": ((32, 48), (64, 96), (128, 192), (256, 512))},
}  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; stored as ``config.json`` in a model folder.

    ``None`` fields take the backbone's default (resolved at construction, so a saved config is
    always explicit). ``min_size``/``max_size`` default to ``image_size``: images arrive already
    letterboxed, so torchvision's internal resize is the identity.
    """

    class_names: tuple[str, ...]
    backbone: str = "resnet101_fpn"
    image_size: int = 1024
    trainable_layers: int | None = None  # backbone stages trainable at build time (0..5)
    min_size: int | None = None
    max_size: int | None = None
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05  # model-internal; the detector applies its own threshold
    box_nms_thresh: float = 0.5
    box_representation_size: int | None = None
    mask_head_channels: tuple[int, ...] | None = None
    mask_predictor_channels: int | None = None
    anchor_sizes: tuple[tuple[int, ...], ...] | None = None  # None: torchvision default
    frozen_batchnorm: bool = True
    class_agnostic: bool = False  # one "flake" class; needs a setup profile to classify
    materials: tuple[str, ...] = ()  # materials seen in training (class-agnostic models)
    tile_um_per_px: float | None = None  # trained on tiles at this pixel size: infer tiled
    version: int = CONFIG_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ModelError(
                f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}"
            )
        names = tuple(self.class_names)
        if not names:
            raise ModelError("a model needs at least one class name")
        object.__setattr__(self, "materials", tuple(str(m) for m in self.materials))
        if self.class_agnostic:
            if names != (AGNOSTIC_CLASS,):
                raise ModelError(
                    f"a class-agnostic model has the single class {AGNOSTIC_CLASS!r}, got {list(names)}"
                )
        for n in () if self.class_agnostic else names:
            try:
                parse_category_name(n)
            except ValueError as exc:
                raise ModelError(str(exc)) from None
        if len(set(names)) != len(names):
            raise ModelError(f"duplicate class names in {list(names)}")
        if self.image_size < 32 or self.image_size % 32:
            raise ModelError(f"image_size must be a multiple of 32 (>= 32), got {self.image_size}")
        if self.tile_um_per_px is not None and not 0.0 < float(self.tile_um_per_px) < 100.0:
            raise ModelError(f"tile_um_per_px must lie in (0, 100) um, got {self.tile_um_per_px}")
        object.__setattr__(self, "class_names", names)
        for key, value in _HEAD_DEFAULTS[self.backbone].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.min_size is None:
            object.__setattr__(self, "min_size", self.image_size)
        if self.max_size is None:
            object.__setattr__(self, "max_size", self.image_size)
        object.__setattr__(self, "mask_head_channels", tuple(self.mask_head_channels or ()))
        if self.anchor_sizes is not None:
            object.__setattr__(self, "anchor_sizes", tuple(tuple(a) for a in self.anchor_sizes))

    @classmethod
    def for_materials(cls, materials: list[str] | tuple[str, ...], **kwargs: Any) -> ModelConfig:
        """Config whose classes are ``ClassMap.for_materials(materials)`` (e.g. graphene_mono...)."""
        return cls(class_names=ClassMap.for_materials(materials).names, **kwargs)

    @classmethod
    def agnostic(cls, materials: list[str] | tuple[str, ...] = (), **kwargs: Any) -> ModelConfig:
        """Class-agnostic config: one ``"flake"`` class; ``materials`` records the training data."""
        return cls(
            class_names=(AGNOSTIC_CLASS,), class_agnostic=True, materials=tuple(materials), **kwargs
        )

    @property
    def known_materials(self) -> tuple[str, ...]:
        """Materials the model was trained on (empty: not recorded)."""
        if self.class_agnostic:
            return self.materials
        return ClassMap(self.class_names).materials

    @property
    def class_map(self) -> ClassMap:
        return ClassMap(self.class_names)

    @property
    def num_classes(self) -> int:
        """Number of predictor outputs, background included."""
        return len(self.class_names) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["materials"] = list(self.materials)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "class_names" not in kwargs:
            raise ModelError("model config has no class_names")
        kwargs["class_names"] = tuple(kwargs["class_names"])
        if kwargs.get("materials") is not None:
            kwargs["materials"] = tuple(kwargs["materials"])
        if kwargs.get("mask_head_channels") is not None:
            kwargs["mask_head_channels"] = tuple(kwargs["mask_head_channels"])
        if kwargs.get("anchor_sizes") is not None:
            kwargs["anchor_sizes"] = tuple(tuple(a) for a in kwargs["anchor_sizes"])
        if int(kwargs.get("version", CONFIG_VERSION)) > CONFIG_VERSION:
            raise ModelError(
                f"model config version {kwargs['version']} is newer than this flakefinder "
                f"supports ({CONFIG_VERSION}); upgrade flakefinder"
            )
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ModelError(f"invalid model config: {exc}") from None


# --------------------------------------------------------------------------- building


def build_model(config: ModelConfig, *, weights: str | Path = "none") -> MaskRCNN:
    """Build a torchvision ``MaskRCNN`` for ``config`` with ``len(class_names) + 1`` outputs.

    ``weights``: ``"none"`` (random heads, identity-initialised frozen batch norm);
    ``"coco"`` (COCO Mask R-CNN weights where torchvision has them, else ImageNet backbone
    weights; only from the local torch hub cache, never downloaded); ``"imagenet"``; or a path
    to a model folder / ``.pt``/``.pth``/``.safetensors`` state dict (transfer learning:
    every tensor whose name and shape match is loaded, the class-specific predictors are not).
    """
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import misc as misc_nn_ops

    norm = misc_nn_ops.FrozenBatchNorm2d if config.frozen_batchnorm else _batchnorm()
    trainable = int(config.trainable_layers or 0)
    if config.backbone == "mobilenet_v3_fpn":
        # three pyramid levels (strides 8, 16, 32) + pool: small flakes need the stride-8 level
        backbone = mobilenet_backbone(
            backbone_name="mobilenet_v3_large", weights=None, fpn=True, norm_layer=norm,
            trainable_layers=min(trainable, 6), returned_layers=[2, 3, 5],
        )  # fmt: skip
    else:
        backbone = resnet_fpn_backbone(
            backbone_name=config.backbone.removesuffix("_fpn"), weights=None,
            norm_layer=norm, trainable_layers=min(trainable, 5),
        )  # fmt: skip
    anchor_generator = None
    if config.anchor_sizes is not None:
        sizes = config.anchor_sizes
        anchor_generator = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    rep = int(config.box_representation_size or 1024)
    out_ch = backbone.out_channels
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        rpn_anchor_generator=anchor_generator,
        box_head=TwoMLPHead(out_ch * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, config.num_classes),
        box_score_thresh=config.box_score_thresh,
        box_nms_thresh=config.box_nms_thresh,
        box_detections_per_img=config.box_detections_per_img,
        mask_head=MaskRCNNHeads(out_ch, list(config.mask_head_channels or (256,)), 1),
        mask_predictor=MaskRCNNPredictor(
            (config.mask_head_channels or (256,))[-1],
            int(config.mask_predictor_channels or 256),
            config.num_classes,
        ),
    )
    _initialise(model, config, weights)
    return model


def _batchnorm() -> Any:
    from torch import nn

    return nn.BatchNorm2d


def hub_checkpoint_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _pretrained_candidates(backbone: str, kind: str) -> list[tuple[str, str, str]]:
    """(description, url, key prefix rewrite) of pretrained checkpoints to try, best first."""
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, ResNet101_Weights
    from torchvision.models.detection import (
        FasterRCNN_MobileNet_V3_Large_FPN_Weights,
        MaskRCNN_ResNet50_FPN_Weights,
    )

    coco = {
        "resnet50_fpn": [("COCO Mask R-CNN", MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url, "")],
        "mobilenet_v3_fpn": [
            ("COCO Faster R-CNN", FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1.url, "")
        ],
        "resnet101_fpn": [],
    }
    imagenet = {
        "resnet50_fpn": [("ImageNet", ResNet50_Weights.IMAGENET1K_V1.url, "backbone.body.")],
        "resnet101_fpn": [("ImageNet", ResNet101_Weights.IMAGENET1K_V1.url, "backbone.body.")],
        "mobilenet_v3_fpn": [
            ("ImageNet", MobileNet_V3_Large_Weights.IMAGENET1K_V1.url, "backbone.body.")
        ],
    }
    return (coco[backbone] if kind == "coco" else []) + imagenet[backbone]


def download_pretrained(backbone: str, kind: str = "coco") -> list[Path]:
    """Fetch the pretrained checkpoints for ``backbone`` into the torch hub cache (online).

    Only called on request (``flakefinder train --download-weights``); building a model never
    downloads. Returns the cached files; already cached files are not fetched again.
    """
    import torch

    ckpt_dir = hub_checkpoint_dir()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for desc, url, _ in _pretrained_candidates(backbone, kind):
        path = ckpt_dir / url.rsplit("/", 1)[-1]
        if not path.is_file():
            log.info("downloading %s weights for %s from %s", desc, backbone, url)
            try:
                torch.hub.download_url_to_file(url, str(path), progress=True)
            except Exception as exc:  # urllib raises many types when offline
                raise ModelError(f"cannot download {desc} weights from {url}: {exc}") from None
        paths.append(path)
    return paths


def _initialise(model: MaskRCNN, config: ModelConfig, weights: str | Path) -> None:
    import torch

    if isinstance(weights, str) and weights in ("none", "coco", "imagenet"):
        if weights == "none":
            return
        ckpt_dir = hub_checkpoint_dir()
        for desc, url, prefix in _pretrained_candidates(config.backbone, weights):
            path = ckpt_dir / url.rsplit("/", 1)[-1]
            if not path.is_file():
                continue
            state = torch.load(path, map_location="cpu", weights_only=True)
            if prefix:  # classification network: only its feature extractor goes in the body
                state = {
                    prefix + k.removeprefix("features."): v
                    for k, v in state.items()
                    if not k.startswith(("fc.", "classifier."))
                }
            n, total = load_matching(model, state)
            log.info("loaded %d/%d tensors of %s weights from %s", n, total, desc, path)
            return
        log.warning(
            "%s-pretrained weights for %s not found in %s; starting from ImageNet/random "
            "initialisation",
            "COCO" if weights == "coco" else "ImageNet", config.backbone, ckpt_dir,
        )  # fmt: skip
        return
    from flakefinder.detect.state_dict import read_state_dict

    state = read_state_dict(Path(weights))
    n, total = load_matching(model, state)
    if n == 0:
        raise ModelError(f"no tensor in {weights} fits a {config.backbone} Mask R-CNN")
    log.info("transfer learning: loaded %d/%d tensors from %s", n, total, weights)


def load_matching(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """Copy every tensor of ``state`` whose name and shape match ``model``; skip predictors.

    Returns (tensors loaded, tensors offered). Class-specific layers (box and mask predictors)
    are never copied, as in the paper ("except for the network heads").
    """
    own = model.state_dict()
    skip = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")
    take = {
        k: v.to(own[k].dtype)
        for k, v in state.items()
        if k in own and not k.startswith(skip) and tuple(v.shape) == tuple(own[k].shape)
    }
    model.load_state_dict(take, strict=False)
    return len(take), len(state)


# --------------------------------------------------------------------------- training helpers


def weighted_loss(
    loss_dict: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None
) -> torch.Tensor:
    """Weighted sum of torchvision's loss dict; default: the paper's (0.6, 1, 1) + RPN 1.

    ``weights`` may use torchvision names (``loss_classifier``...) or ``cls``/``box``/``mask``;
    losses without a weight count with 1.
    """
    w = dict(PAPER_LOSS_WEIGHTS)
    for k, v in (weights or {}).items():
        w[_LOSS_ALIASES.get(k, k)] = float(v)
    if not loss_dict:
        raise ValueError("weighted_loss got an empty loss dict")
    items = [w.get(k, 1.0) * v for k, v in loss_dict.items()]
    total = items[0]
    for t in items[1:]:
        total = total + t
    return total


STAGES = ("heads", "4+", "all")


def set_trainable_stage(model: MaskRCNN, stage: str) -> None:
    """Set ``requires_grad`` for a paper training stage.

    ``"heads"``: RPN, FPN and ROI heads only (backbone body frozen); ``"4+"``: also ResNet
    stage 4 and 5 (torchvision ``layer3``, ``layer4``; the last two stages of MobileNet);
    ``"all"``: everything. Frozen batch norm has no parameters and stays frozen.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(STAGES)}")
    for p in model.parameters():
        p.requires_grad_(True)
    if stage == "all":
        return
    body = model.backbone.body
    names = [n for n, _ in body.named_children()]
    if stage == "heads":
        keep: set[str] = set()
    elif "layer4" in names:
        keep = {"layer3", "layer4"}
    else:  # mobilenet: features indices; keep from the second-to-last strided stage
        stages = [i for i, n in enumerate(names) if getattr(getattr(body, n), "_is_cn", False)]
        start = stages[-2] if len(stages) >= 2 else 0
        keep = set(names[start:])
    for n, child in body.named_children():
        if n not in keep:
            for p in child.parameters():
                p.requires_grad_(False)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
