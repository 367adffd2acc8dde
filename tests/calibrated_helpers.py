"""A hand-built scene with known flakes for the calibrated contrast detector's tests."""

from __future__ import annotations

import cv2
import numpy as np

from flakefinder.calibration.profile import LayerColour, MaterialTable, SetupProfile
from flakefinder.domain import ImagingContext

SD = 0.01
SUBSTRATE = np.array([120.0, 105.0, 170.0])  # violet, like a real 90 nm SiO2 camera
CONTRAST = {1: (-0.14, -0.14, -0.07), 2: (-0.25, -0.26, -0.15), 4: (-0.44, -0.46, -0.27)}
UM = 0.5  # µm/px -> working factor 2 (0.75 µm target)


def profile(name: str = "test", oxide_nm: float = 90.0) -> SetupProfile:
    cov = ((SD**2, 0.0, 0.0), (0.0, SD**2, 0.0), (0.0, 0.0, SD**2))
    layers = tuple(LayerColour(n, c, cov) for n, c in CONTRAST.items())
    return SetupProfile(name, UM, oxide_nm, (MaterialTable("graphene", layers),))


def ctx(oxide_nm: float = 90.0, materials: tuple[str, ...] = ("graphene",)) -> ImagingContext:
    return ImagingContext(um_per_px=UM, oxide_thickness_nm=oxide_nm, materials=materials)


def scene(noise: float = 1.5, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """320 x 480 image: 1L rectangle, 2L with a 4L terrace, a tiny 1L speck, a blurred bulk."""
    h, w = 320, 480
    rel = np.zeros((h, w, 3))
    masks = {}

    def put(name: str, box: tuple[int, int, int, int], n: int) -> None:
        x0, y0, x1, y1 = box
        rel[y0:y1, x0:x1] = CONTRAST[n]
        m = np.zeros((h, w), bool)
        m[y0:y1, x0:x1] = True
        masks[name] = m

    put("mono", (30, 40, 130, 120), 1)
    put("bi", (200, 40, 360, 200), 2)
    put("four", (250, 90, 310, 150), 4)
    masks["bi"] &= ~masks["four"]
    put("speck", (60, 250, 64, 254), 1)  # 4 x 4 px = 4 µm², under the size floor
    # residue: within 5 sigma of the 1L colour pixel by pixel, but its median is 4 sigma off
    put("residue", (30, 180, 110, 240), 1)
    rel[180:240, 30:110] += (0.04, 0.0, 0.0)
    # a dark bulk crystal with blurred edges: its rim passes through thin-layer colours
    bulk = np.zeros((h, w), np.float32)
    bulk[200:300, 380:460] = 1.0
    bulk = cv2.GaussianBlur(bulk, (0, 0), 5.0)
    rel += bulk[..., None] * (np.array([-0.7, -0.7, -0.35]) - rel)
    img = SUBSTRATE * (1.0 + rel)
    img += np.random.default_rng(seed).normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())
