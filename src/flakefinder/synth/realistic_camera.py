"""Camera side of the realistic renderer: from a reflectance-factor map to JPEG bytes.

Pipeline (all float32, linear light until step 6):

1. per-channel optical blur (in-focus PSF plus a different defocus per channel) and a small
   lateral chromatic magnification per channel, which together give the colour fringes of real
   objectives;
2. radiance = F x raw substrate signal (thin-film model with the drawn lamp and camera);
3. vignetting of the illumination, then a flat-field correction that removes only part of it;
4. white balance: either on the substrate (it comes out grey, with jitter) or on a white
   reference (the substrate keeps its interference colour, violet on 90 nm SiO2);
5. auto-exposure: the brightest channel of the substrate lands at the drawn fraction of full
   scale (after encoding); shot and read noise are added;
6. sRGB or power-law gamma encoding, 8-bit rounding, JPEG compression at the drawn quality.

numpy / opencv only. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Encoding = Literal["srgb", "gamma"]
WhiteBalance = Literal["substrate", "white"]


@dataclass(frozen=True)
class CameraSettings:
    """One drawn camera/optics state for a realistic image.

    Parameters
    ----------
    white_balance : {"substrate", "white"}
        Balance on the bare substrate (grey) or on a white reference (substrate keeps its colour).
    white_balance_jitter_rgb : tuple of float
        Multiplicative error of the white-balance gains.
    substrate_level : float
        Brightest substrate channel after encoding, as a fraction of full scale.
    encoding : {"srgb", "gamma"}
        Transfer curve of the stored values.
    gamma : float
        Exponent for ``encoding="gamma"`` (stored = linear ** (1 / gamma)).
    jpeg_quality : int
        JPEG quality 1-100 (the image is compressed and decoded again).
    blur_sigma_px_rgb : tuple of float
        Gaussian PSF sigma per channel in pixels (defocus differs per channel).
    chromatic_scale_rgb : tuple of float
        Lateral magnification per channel relative to green (1 = none).
    vignetting : float
        Relative illumination drop in the corners before flat-fielding.
    flat_field_efficacy : float
        Fraction of the vignetting removed by the flat-field correction (1 = perfect).
    gradient_xy : tuple of float
        Residual illumination slope per half field in x and y.
    read_noise : float
        Read noise as a fraction of full scale.
    full_well_e : float
        Electrons at full scale (shot noise).
    saturation : float
        Colour-correction strength: chroma around the per-pixel grey is scaled by this (1 = none).
    """

    white_balance: WhiteBalance = "substrate"
    white_balance_jitter_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    substrate_level: float = 0.7
    encoding: Encoding = "srgb"
    gamma: float = 2.2
    jpeg_quality: int = 90
    blur_sigma_px_rgb: tuple[float, float, float] = (0.8, 0.7, 0.9)
    chromatic_scale_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    vignetting: float = 0.2
    flat_field_efficacy: float = 0.9
    gradient_xy: tuple[float, float] = (0.0, 0.0)
    read_noise: float = 0.003
    full_well_e: float = 8000.0
    saturation: float = 1.0

    def __post_init__(self) -> None:
        """Check ranges (finite, physical)."""
        if not 0.05 <= self.substrate_level <= 0.98:
            raise ValueError(f"substrate_level must be in [0.05, 0.98], got {self.substrate_level}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not 1.0 <= self.gamma <= 3.0:
            raise ValueError(f"gamma must be in [1, 3], got {self.gamma}")
        values = (
            *self.white_balance_jitter_rgb,
            *self.blur_sigma_px_rgb,
            *self.chromatic_scale_rgb,
            self.vignetting,
            self.flat_field_efficacy,
            self.read_noise,
            self.full_well_e,
            self.saturation,
        )
        if not all(np.isfinite(v) and v >= 0 for v in values):
            raise ValueError("camera settings must be finite and non-negative")


def decode_level(stored: float, settings: CameraSettings) -> float:
    """Linear signal that encodes to the stored fraction ``stored`` (0-1)."""
    if settings.encoding == "srgb":
        if stored <= 0.04045:
            return stored / 12.92
        return float(((stored + 0.055) / 1.055) ** 2.4)
    return float(stored**settings.gamma)


def encode_levels(linear: np.ndarray, settings: CameraSettings) -> np.ndarray:
    """uint8 stored values of a linear float32 image (clipped to [0, 1])."""
    x = np.arange(4096, dtype=np.float64) / 4095.0
    if settings.encoding == "srgb":
        y = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    else:
        y = x ** (1.0 / settings.gamma)
    lut = np.clip(np.rint(255.0 * y), 0, 255).astype(np.uint8)
    q = np.clip(linear * np.float32(4095.0) + np.float32(0.5), 0, 4095).astype(np.uint16)
    out: np.ndarray = lut[q]
    return out


def _illumination(h: int, w: int, settings: CameraSettings) -> np.ndarray:
    """(H, W, 1) residual illumination after vignetting and partial flat-field correction."""
    y = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / (max(h, w) / 2)
    x = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (max(h, w) / 2)
    r2 = 0.5 * (x[None, :] ** 2 + y[:, None] ** 2)
    vignette = np.clip(1.0 - settings.vignetting * r2, 0.05, None)
    residual = vignette ** np.float32(1.0 - settings.flat_field_efficacy)
    gx, gy = settings.gradient_xy
    field = residual * (1.0 + gx * x[None, :] + gy * y[:, None])
    return np.clip(field, 0.0, None).astype(np.float32)[:, :, None]


def _optics(f: np.ndarray, settings: CameraSettings) -> np.ndarray:
    """Per-channel blur and lateral chromatic magnification of the reflectance map."""
    h, w = f.shape[:2]
    out = np.empty_like(f)
    for c in range(3):
        ch = np.ascontiguousarray(f[:, :, c])
        s = settings.chromatic_scale_rgb[c]
        if abs(s - 1.0) > 1e-5:
            m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), 0.0, s)
            ch = cv2.warpAffine(
                ch, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        sigma = settings.blur_sigma_px_rgb[c]
        if sigma >= 0.3:
            ch = cv2.GaussianBlur(ch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out[:, :, c] = ch
    return out


def white_balance_gains(
    substrate_raw_rgb: np.ndarray, white_raw_rgb: np.ndarray, settings: CameraSettings
) -> np.ndarray:
    """Channel gains: equalise the substrate (or a white reference), times the jitter."""
    ref = substrate_raw_rgb if settings.white_balance == "substrate" else white_raw_rgb
    gains = float(np.mean(ref)) / np.maximum(ref, 1e-6)
    return gains * np.asarray(settings.white_balance_jitter_rgb, dtype=np.float64)


def expose(
    f: np.ndarray,
    substrate_raw_rgb: np.ndarray,
    white_raw_rgb: np.ndarray,
    settings: CameraSettings,
    seed: int,
) -> np.ndarray:
    """uint8 RGB image (before JPEG) of the reflectance-factor map ``f`` (H, W, 3; 1 = substrate).

    Parameters
    ----------
    f : numpy.ndarray
        Reflectance relative to the bare substrate, float32 (H, W, 3), RGB.
    substrate_raw_rgb : numpy.ndarray
        Raw camera signal of the bare substrate (thin-film model with the drawn lamp).
    white_raw_rgb : numpy.ndarray
        Raw camera signal of a perfect white reference under the same lamp.
    settings : CameraSettings
        The drawn camera state.
    seed : int
        Noise seed.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8 RGB.
    """
    h, w = f.shape[:2]
    blurred = _optics(f, settings)
    balanced = np.asarray(substrate_raw_rgb, dtype=np.float64) * white_balance_gains(
        substrate_raw_rgb, white_raw_rgb, settings
    )
    target = decode_level(settings.substrate_level, settings)
    colour = (balanced * (target / max(float(balanced.max()), 1e-9))).astype(np.float32)
    linear = blurred * colour[None, None, :] * _illumination(h, w, settings)
    if settings.saturation != 1.0:  # colour-correction matrix: grey + s * (colour - grey)
        grey = linear.mean(axis=2, keepdims=True)
        linear = grey + np.float32(settings.saturation) * (linear - grey)
        sub = colour.mean() + settings.saturation * (colour - colour.mean())
        linear *= np.float32(target / max(float(sub.max()), 1e-9))
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(
        settings.read_noise**2 + np.clip(linear, 0, None) / max(settings.full_well_e, 1.0)
    )
    linear += rng.standard_normal(linear.shape, dtype=np.float32) * sigma.astype(np.float32)
    return encode_levels(linear, settings)


def jpeg_bytes(image_rgb: np.ndarray, quality: int) -> bytes:
    """JPEG file bytes of an RGB uint8 image at ``quality``."""
    ok, buf = cv2.imencode(
        ".jpg",
        np.ascontiguousarray(image_rgb[:, :, ::-1]),
        [cv2.IMWRITE_JPEG_QUALITY, int(quality)],
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB uint8 image of JPEG bytes."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ValueError("JPEG decoding failed")
    rgb: np.ndarray = np.ascontiguousarray(arr[:, :, ::-1])
    return rgb
