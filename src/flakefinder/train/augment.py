"""Online data augmentation for training (the paper's "Model training" section).

Operations, each applied with probability ``p`` (default 0.5) and in this order:

1. colour-channel multiplication: every RGB channel multiplied by its own random gain in
   ``gain`` (default 0.8..1.2), the same gain over the whole image;
2. rotation by a uniform random angle in ``[-rotate_deg, rotate_deg]`` about the image centre;
3. horizontal flip; 4. vertical flip;
5. shift by a uniform random fraction in ``[-shift_fraction, shift_fraction]`` of the width
   (horizontally) and height (vertically).

Geometric operations move image and masks together (masks with nearest-neighbour sampling);
uncovered pixels are filled with 0. Afterwards :func:`prepare_sample` resizes to the square side
keeping the aspect ratio and zero pads (centred, shared with the detector), drops masks that became empty and computes every
box from its mask, so boxes and masks always agree exactly.

Two backends give the same operations: ``"albumentations"`` (2.0.x: MultiplicativeNoise with
per_channel=True / elementwise=False, Affine, HorizontalFlip, VerticalFlip) and ``"numpy"``
(numpy + OpenCV ``warpAffine``), used automatically when albumentations is not installed.
The random draws of the two backends differ; the distributions are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _albumentations_available() -> bool:
    try:
        import albumentations  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Augmenter:
    """Callable ``(image, masks, seed) -> (image, masks)``; deterministic for a given seed."""

    gain: tuple[float, float] = (0.8, 1.2)
    rotate_deg: float = 180.0
    shift_fraction: float = 0.1
    p: float = 0.5
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.backend == "auto":
            self.backend = "albumentations" if _albumentations_available() else "numpy"
        if self.backend not in ("albumentations", "numpy"):
            raise ValueError(
                f"augmentation backend must be albumentations or numpy: {self.backend}"
            )
        self._compose: Any = None

    def _albu(self) -> Any:
        if self._compose is None:
            import albumentations as A
            import cv2

            border: Any = cv2.BORDER_CONSTANT
            t = self.shift_fraction
            self._compose = A.Compose(
                [
                    A.MultiplicativeNoise(
                        multiplier=self.gain, per_channel=True, elementwise=False, p=self.p
                    ),
                    A.Affine(
                        rotate=(-self.rotate_deg, self.rotate_deg),
                        border_mode=border,
                        fill=0,
                        fill_mask=0,
                        p=self.p,
                    ),
                    A.HorizontalFlip(p=self.p),
                    A.VerticalFlip(p=self.p),
                    A.Affine(
                        translate_percent={"x": (-t, t), "y": (-t, t)},
                        border_mode=border,
                        fill=0,
                        fill_mask=0,
                        p=self.p,
                    ),
                ],
                seed=0,
            )
        return self._compose

    def __call__(
        self, image: np.ndarray, masks: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "albumentations":
            compose = self._albu()
            compose.set_random_seed(int(seed))
            if len(masks):
                out = compose(image=image, masks=list(masks))
                new_masks = np.stack([np.asarray(m, dtype=np.uint8) for m in out["masks"]])
            else:
                out = compose(image=image)
                new_masks = np.zeros((0, *out["image"].shape[:2]), dtype=np.uint8)
            return np.ascontiguousarray(out["image"], dtype=np.uint8), new_masks
        return self._numpy(image, masks, np.random.default_rng(int(seed)))

    def _numpy(
        self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        img = image
        if rng.random() < self.p:
            g = rng.uniform(self.gain[0], self.gain[1], size=3)
            img = np.clip(np.rint(img.astype(np.float32) * g), 0, 255).astype(np.uint8)
        if rng.random() < self.p:
            angle = rng.uniform(-self.rotate_deg, self.rotate_deg)
            img, masks = _warp(img, masks, angle, 0.0, 0.0)
        if rng.random() < self.p:
            img, masks = img[:, ::-1], masks[:, :, ::-1]
        if rng.random() < self.p:
            img, masks = img[::-1], masks[:, ::-1]
        if rng.random() < self.p:
            h, w = img.shape[:2]
            dx, dy = rng.uniform(-self.shift_fraction, self.shift_fraction, size=2)
            img, masks = _warp(img, masks, 0.0, dx * w, dy * h)
        return np.ascontiguousarray(img), np.ascontiguousarray(masks)


def _warp(
    image: np.ndarray, masks: np.ndarray, angle_deg: float, dx: float, dy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the image centre (counter-clockwise on screen) and shift by (dx, dy) px."""
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    m[0, 2] += dx
    m[1, 2] += dy
    img = cv2.warpAffine(
        image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    out = [
        cv2.warpAffine(np.ascontiguousarray(mk), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        for mk in masks
    ]
    return img, (np.stack(out) if out else np.zeros((0, h, w), np.uint8))


def resize_pad(
    image: np.ndarray, masks: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Letterbox image and masks to ``size`` x ``size`` (:func:`flakefinder.detect.letterbox`).

    The longer side becomes ``size`` (aspect kept), the content is centred and zero padded,
    exactly as the detector preprocesses images; masks use nearest neighbour. Returns
    (image, masks, scale).
    """
    from flakefinder.detect.letterbox import letterbox

    out_img, scale, _ = letterbox(image, size)
    out_masks = np.zeros((len(masks), size, size), dtype=np.uint8)
    for k, mk in enumerate(masks):
        out_masks[k] = letterbox(np.ascontiguousarray(mk, dtype=np.uint8), size, nearest=True)[0]
    return out_img, out_masks, scale


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, 4) float32 xyxy boxes in the pixel-edge convention (x_max = last column + 1)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, m in enumerate(masks):
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def prepare_sample(
    image: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    size: int,
    *,
    augmenter: Augmenter | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Augment (when ``augmenter`` and ``seed`` are given), resize + pad, drop empty masks, box.

    Returns image (size, size, 3) uint8, masks (N, size, size) uint8, boxes (N, 4) float32 and
    labels (N,) int64.
    """
    masks = np.asarray(masks, dtype=np.uint8).reshape(-1, *image.shape[:2])
    if augmenter is not None and seed is not None:
        image, masks = augmenter(image, masks, seed)
    image, masks, _ = resize_pad(image, masks, size)
    keep = masks.reshape(len(masks), -1).any(axis=1) if len(masks) else np.zeros(0, dtype=bool)
    masks = masks[keep]
    labels = np.asarray(labels, dtype=np.int64)[keep]
    return image, masks, masks_to_boxes(masks), labels
