"""Synthetic micrographs with known terraces for the terrace-segmentation tests."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUBSTRATE = np.array([150.0, 120.0, 190.0])  # violet, like 90 nm SiO2 on a white-balanced camera


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    terraces: list[tuple[np.ndarray, tuple[float, float, float]]]  # (mask, contrast C)
    bulk: np.ndarray  # mask of the clipped bulk crystal


def _poly(h: int, w: int, pts: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.array(pts, np.int32)], 1)
    return m.astype(bool)


def scene(
    *, h: int = 480, w: int = 640, exposure: float = 1.0, seed: int = 0,
    substrate: np.ndarray = SUBSTRATE, vignetting: float = 0.12, noise: float = 2.0,
) -> Scene:
    """A chip field: a two-terrace flake (1 L next to 2 L), a separate 3 L flake, a clipped bulk
    crystal with its blurred rim, faint mottled residue, dust specks; vignetting, blur, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    field = (1.0 - vignetting * r2)[:, :, None] * substrate[None, None, :]
    rel = np.ones((h, w, 3), np.float32)
    one = _poly(h, w, [(80, 100), (200, 90), (210, 190), (90, 200)])
    two = _poly(h, w, [(200, 90), (300, 110), (290, 200), (210, 190)])
    three = _poly(h, w, [(420, 300), (540, 290), (560, 400), (430, 410)])
    bulk = _poly(h, w, [(420, 60), (560, 70), (570, 200), (430, 190)])
    c1, c2, c3 = (-0.10, -0.12, -0.05), (-0.20, -0.24, -0.11), (-0.29, -0.34, -0.17)
    for m, c in ((one, c1), (two, c2), (three, c3)):
        rel[m] = 1.0 + np.array(c, np.float32)
    rel[bulk] = 2.2  # bright bulk: clips
    residue = np.zeros((h, w), np.float32)
    cv2.circle(residue, (150, 380), 45, 1.0, -1)
    mottle = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3.0)
    residue = residue * (mottle - mottle.mean()) * 0.5
    rel += residue[:, :, None]
    for _ in range(12):
        y, x = int(rng.integers(10, h - 10)), int(rng.integers(10, w - 10))
        cv2.circle(rel, (x, y), 1, (0.5, 0.5, 0.5), -1)
    img = field * rel * exposure
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    img = img + rng.normal(0.0, noise, img.shape)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return Scene(out, [(one, c1), (two, c2), (three, c3)], bulk)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))
