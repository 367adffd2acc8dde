"""Mask R-CNN flake detector (implements :class:`flakefinder.domain.Detector`).

Pipeline per image: :func:`flakefinder.imaging.to_rgb8` (grey / RGBA / 16-bit accepted) ->
letterbox to ``config.image_size`` (aspect kept, zero padded, as in the paper) -> batched
forward pass -> boxes and mask probabilities mapped back to the original pixel grid ->
mask >= 0.5 -> largest outer contour, simplified -> :class:`Detection` whose material and
thickness class come from the class name (``graphene_mono``...) -> the exact layer count is
refined from optical contrast by :func:`flakefinder.detect.refine.refine_layer_count`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np

from flakefinder.detect.instances import Segment
from flakefinder.detect.letterbox import letterbox, unletterbox_boxes, unletterbox_mask
from flakefinder.domain import Detection, ImagingContext, parse_category_name
from flakefinder.errors import ModelError
from flakefinder.imaging import to_rgb8

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from flakefinder.detect.maskrcnn_model import ModelConfig

log = logging.getLogger(__name__)


def default_model_folder() -> Path:
    """Where the shipped model lives: ``flakefinder/models/default`` inside the package."""
    return Path(__file__).resolve().parent.parent / "models" / "default"


def resolve_device(device: str) -> str:
    """Check a torch device name and resolve ``"auto"``.

    Parameters
    ----------
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"auto"`` (CUDA when available, else CPU).

    Returns
    -------
    str
        The device to use.

    Raises
    ------
    ModelError
        For any other name, or a CUDA device on a machine without CUDA.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and re.fullmatch(r"cuda(:\d+)?", device) is None:
        raise ModelError(f"device must be 'cpu', 'cuda', 'cuda:<index>' or 'auto', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available")
    return device


def mask_to_polygon(
    mask: np.ndarray, *, epsilon_px: float = 1.0
) -> tuple[tuple[float, float], ...] | None:
    """Largest outer contour of a bool mask, simplified by ``epsilon_px``; None if < 3 points.

    Vertices are (x, y) = (column, row) indices of boundary pixels (OpenCV's convention).
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    if epsilon_px > 0:
        simplified = cv2.approxPolyDP(contour, epsilon_px, True)
        if len(simplified) >= 3:
            contour = simplified
    pts = contour.reshape(-1, 2)
    if len(pts) < 3:
        return None
    return tuple((float(x), float(y)) for x, y in pts)


# Median grey level of the bare 90 nm SiO2/Si substrate in the synthetic training images at the
# mean training illumination (0.95): RGB medians (121, 116, 150) -> grey 129.
SUBSTRATE_GREY = 129.0


def auto_expose(rgb: np.ndarray, target_grey: float) -> np.ndarray:
    """``rgb`` scaled by one gain so that its median grey level is ``target_grey``.

    The software twin of a camera's auto-exposure: a dimmer or brighter lamp gives the network
    the same picture (one gain for all channels, so colours are kept). The gain is limited to
    1/3..3; within 1 % of 1 the image is returned as it is.
    """
    grey = float(np.median(rgb[::4, ::4].mean(axis=2)))
    gain = float(np.clip(target_grey / max(grey, 1.0), 1 / 3, 3.0))
    if abs(gain - 1.0) < 0.01:
        return rgb
    lut = np.clip(np.arange(256, dtype=np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
    return cast("np.ndarray", lut[rgb])


class MaskRCNNDetector:
    """Detector around a torchvision Mask R-CNN built by :mod:`flakefinder.detect.maskrcnn_model`.

    ``only_context_materials`` (default on): detections of materials that are not on the chip
    (``context.materials``) are dropped; a scan knows what was exfoliated, and on the shipped
    model this raised precision on a graphene/hBN chip from 0.73 to 0.89 at equal recall.
    """

    name = "maskrcnn"

    def __init__(
        self,
        model: torch.nn.Module,
        config: ModelConfig,
        *,
        device: str = "cpu",
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        refine_layers: bool = True,
        only_context_materials: bool = True,
        keep_masks: bool = True,
        version: str | None = None,
        exposure_target_grey: float | None = SUBSTRATE_GREY,
        gamma: float = 1.0,
        numerical_aperture: float = 0.55,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ModelError(f"score threshold must lie in [0, 1], got {score_threshold}")
        self.config = config
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.score_threshold = float(score_threshold)
        self.mask_threshold = float(mask_threshold)
        self.refine_layers = refine_layers
        self.only_context_materials = only_context_materials
        self.keep_masks = keep_masks
        self.exposure_target_grey = exposure_target_grey
        self.gamma = float(gamma)  # camera encoding: stored = linear ** (1 / gamma)
        self.numerical_aperture = float(numerical_aperture)
        self.version = version or f"{config.backbone}-cfg{config.version}"
        self._parsed = (
            [] if config.class_agnostic else [parse_category_name(n) for n in config.class_names]
        )

    @classmethod
    def from_folder(
        cls,
        path: str | Path | None = None,
        *,
        device: str = "auto",
        segment_only: bool = False,
        **options: Any,
    ) -> MaskRCNNDetector:
        """Load a model folder (default: the shipped one) and wrap it.

        A class-agnostic model is refused unless ``segment_only`` (its caller classifies the
        segments by a setup profile, see :mod:`flakefinder.detect.segment_classify`).
        """
        from flakefinder.detect.model_folder import load_model_folder, model_folder_version

        folder = Path(path) if path is not None else default_model_folder()
        if path is None and not folder.is_dir():
            raise ModelError(
                f"no default Mask R-CNN model is installed (looked in {folder}); pass a model "
                "folder with --model DIR, or use --detector contrast"
            )
        if not segment_only:
            from flakefinder.detect.model_folder import read_model_config

            if read_model_config(folder).class_agnostic:
                raise ModelError(
                    f"the model {folder} is class-agnostic (one 'flake' class): it needs a setup "
                    "profile to give flakes a material and layer number (--setup FILE with "
                    "--detector maskrcnn or union)"
                )
        model, config = load_model_folder(folder)
        version = f"{config.backbone}-{model_folder_version(folder)}"
        return cls(model, config, device=device, version=version, **options)

    # ------------------------------------------------------------------ public API

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        return self.detect_batch([image], context)[0]

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext, *, batch_size: int = 4
    ) -> list[list[Detection]]:
        """Detect flakes in several images with batched forward passes (``batch_size`` at a time)."""
        out: list[list[Detection]] = []
        for start in range(0, len(images), max(1, batch_size)):
            out.extend(self._detect_chunk(images[start : start + batch_size], context))
        return out

    # ------------------------------------------------------------------ internals

    def _exposed(self, rgb: np.ndarray) -> np.ndarray:
        """The network's input: ``rgb`` scaled so its median grey level (the bare substrate,
        which fills most of a field of view) is ``exposure_target_grey``, as in training
        (:func:`auto_expose`); ``exposure_target_grey=None`` turns it off."""
        return rgb if self.exposure_target_grey is None else auto_expose(rgb, self.exposure_target_grey)

    def segment_batch(
        self, images: Sequence[np.ndarray], *, batch_size: int = 4, um_per_px: float | None = None
    ) -> list[tuple[np.ndarray, list[Segment]]]:
        """Instance masks without classes, for any model (class-agnostic or not).

        Returns, per image, the RGB uint8 image the network saw (before exposure scaling) and
        its segments with score >= ``score_threshold``, best first. A model trained on tiles
        (``config.tile_um_per_px``) runs tiled at its pixel size when ``um_per_px`` is given
        (:func:`flakefinder.detect.maskrcnn_tiled.segment_tiled`).
        """
        if self.config.tile_um_per_px is not None and um_per_px is not None:
            from flakefinder.detect.maskrcnn_tiled import segment_tiled

            return segment_tiled(self, images, um_per_px, batch_size=batch_size)
        out: list[tuple[np.ndarray, list[Segment]]] = []
        for start in range(0, len(images), max(1, batch_size)):
            for rgb, scale, pad, o in self._forward(images[start : start + batch_size]):
                out.append((rgb, self._segments(rgb, scale, pad, o)))
        return out

    def _segments(
        self, rgb: np.ndarray, scale: float, pad: tuple[int, int], output: dict[str, torch.Tensor]
    ) -> list[Segment]:
        h, w = rgb.shape[:2]
        scores = output["scores"].float().cpu().numpy()
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        boxes = unletterbox_boxes(output["boxes"].float().cpu().numpy()[keep], scale, pad, (h, w))
        masks = output["masks"][keep, 0].float().cpu().numpy()
        segs = []
        for i in range(keep.size):
            mask = unletterbox_mask(masks[i], (h, w), threshold=self.mask_threshold)
            if mask.any():
                x0, y0, x1, y1 = (float(v) for v in boxes[i])
                segs.append(Segment(mask, (x0, y0, x1, y1), float(scores[keep[i]])))
        return segs

    def _forward(
        self, images: Sequence[np.ndarray], *, expose: bool = True
    ) -> list[tuple[np.ndarray, float, tuple[int, int], dict[str, torch.Tensor]]]:
        """Letterbox (after :meth:`_exposed` unless ``expose`` is False) and run the network."""
        import torch

        rgbs = [to_rgb8(im, what=f"image {i}") for i, im in enumerate(images)]
        size = self.config.image_size
        boxed = [letterbox(self._exposed(im) if expose else im, size) for im in rgbs]
        tensors = [
            torch.from_numpy(np.ascontiguousarray(p.transpose(2, 0, 1)))
            .to(self.device)
            .float()
            .div_(255.0)
            for p, _, _ in boxed
        ]
        with torch.inference_mode():
            outputs = self.model(tensors)
        return [
            (rgb, scale, pad, o)
            for rgb, (_, scale, pad), o in zip(rgbs, boxed, outputs, strict=True)
        ]

    def _detect_chunk(
        self, images: Sequence[np.ndarray], context: ImagingContext
    ) -> list[list[Detection]]:
        if self.config.class_agnostic:
            raise ModelError(
                "this Mask R-CNN model is class-agnostic (one 'flake' class): it needs a setup "
                "profile to give each flake its material and layer number (--setup FILE)"
            )
        results = []
        for rgb, scale, pad, o in self._forward(images):
            dets = self._to_detections(rgb, scale, pad, o, context)
            results.append(self._refined(rgb, dets, context) if self.refine_layers else dets)
        return results

    def _to_detections(
        self,
        rgb: np.ndarray,
        scale: float,
        pad: tuple[int, int],
        output: dict[str, torch.Tensor],
        context: ImagingContext,
    ) -> list[Detection]:
        h, w = rgb.shape[:2]
        scores = output["scores"].float().cpu().numpy()
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        labels = output["labels"].cpu().numpy()[keep]
        boxes = unletterbox_boxes(output["boxes"].float().cpu().numpy()[keep], scale, pad, (h, w))
        masks = output["masks"][keep, 0].float().cpu().numpy()
        dets: list[Detection] = []
        for i in range(keep.size):
            label = int(labels[i])
            if not 1 <= label <= len(self._parsed):
                continue
            material, layer_class = self._parsed[label - 1]
            if self.only_context_materials and material not in context.materials:
                continue
            mask = unletterbox_mask(masks[i], (h, w), threshold=self.mask_threshold)
            area = float(mask.sum())
            polygon = mask_to_polygon(mask) if area > 0 else None
            if polygon is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            dets.append(
                Detection(
                    material=material,
                    layer_class=layer_class,
                    confidence=float(scores[keep[i]]),
                    polygon_px=polygon,
                    bbox_px=(x0, y0, x1, y1),
                    area_px=area,
                    mask=mask if self.keep_masks else None,
                )
            )
        return dets

    def _refined(
        self, rgb: np.ndarray, dets: list[Detection], context: ImagingContext
    ) -> list[Detection]:
        """Exact layer counts from optical contrast; the substrate background is fitted once."""
        if not dets:
            return dets
        from flakefinder.detect.refine import estimate_background, refine_layer_count

        field = estimate_background(rgb, gamma=self.gamma)
        return [
            refine_layer_count(
                rgb,
                d,
                context,
                background_field=field,
                gamma=self.gamma,
                numerical_aperture=self.numerical_aperture,
            )
            for d in dets
        ]
