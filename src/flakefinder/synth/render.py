"""Render a field of view of a :class:`~flakefinder.synth.chip.VirtualChip` as a camera would.

Pipeline, in linear light (float32):

1. a reflectance-factor map F = 1 on bare substrate; each terrace is filled with
   ``ContrastModel(oxide, NA).relative_rgb(material, n_layers)`` (thinner first, thicker on top,
   later flakes over earlier ones); particles scale F locally; tape residue darkens it softly;
2. optical blur: a small in-focus blur plus defocus blur growing with ``|focus_error_um|``
   (applied to F only, the illumination being smooth anyway);
3. signal = F x substrate colour (``substrate_rgb()``, scaled to ``substrate_level``) x
   illumination x white-balance gains x a smooth vignetting/gradient field;
4. camera noise: shot noise (``full_well_e``) plus read noise (``noise_sigma``);
5. gamma encoding (stored = linear ** (1/gamma)) and rounding to uint8.

Same inputs and seed give identical bytes. Colours, the vignetting field and the noise lookup
table are cached; only flakes and debris whose bounding box meets the view are rasterised.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np

from flakefinder.synth.instances import SHIFT, ViewGeometry

if TYPE_CHECKING:
    from flakefinder.synth.chip import VirtualChip

_RESIDUE_TINT = np.array([0.8, 1.0, 1.25], dtype=np.float32)  # residue absorbs more blue
_RESIDUE_DOWNSAMPLE = 8


@dataclass(frozen=True)
class RenderSettings:
    """Microscope and camera parameters. Linear signals are fractions of the camera full scale."""

    illumination: float = 1.0  # lamp intensity factor (1 = nominal exposure)
    inhomogeneity: float = 0.1  # vignetting: relative intensity drop in the image corners
    gradient_xy: tuple[float, float] = (0.0, 0.0)  # relative intensity slope per half field in x, y
    white_balance_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # camera channel gains
    substrate_level: float | None = 0.55  # mean bare-substrate signal at illumination 1 and
    # white balance 1 (auto-exposure); None: absolute, a perfect mirror at illumination 1 = 1.0
    noise_sigma: float = 0.004  # read noise, fraction of full scale (1 DN ~ 0.0039)
    full_well_e: float = 10000.0  # electrons at full scale for shot noise; <= 0 disables it
    gamma: float = 1.0  # stored = linear ** (1 / gamma)
    numerical_aperture: float = 0.55
    optical_blur_um: float | None = None  # in-focus PSF sigma; None: 0.21 * 0.55 µm / NA
    blur_px_per_um_defocus: float | None = None  # defocus PSF sigma per µm of focus error;
    # None: derived from NA and the pixel pitch, 0.5 * tan(asin(NA)) µm per µm
    outside_chip_reflectance: float | None = None  # the sample holder beyond the chip's edges,
    # relative to the bare substrate (blurred and lit like the rest); None: substrate everywhere

    def blur_sigma_px(self, focus_error_um: float, um_per_px: float) -> float:
        """Gaussian PSF sigma in pixels for the given focus error."""
        na = min(max(self.numerical_aperture, 0.05), 0.95)
        optical_um = self.optical_blur_um if self.optical_blur_um is not None else 0.21 * 0.55 / na
        if self.blur_px_per_um_defocus is not None:
            defocus_px = self.blur_px_per_um_defocus * abs(focus_error_um)
        else:
            defocus_px = 0.5 * math.tan(math.asin(na)) * abs(focus_error_um) / um_per_px
        return math.hypot(optical_um / um_per_px, defocus_px)


@lru_cache(maxsize=32)
def _contrast_model(oxide_thickness_nm: float, numerical_aperture: float) -> Any:
    from flakefinder.optics import ContrastModel

    return ContrastModel(
        oxide_thickness_nm=oxide_thickness_nm, numerical_aperture=numerical_aperture
    )


@lru_cache(maxsize=16384)
def relative_rgb(
    oxide_thickness_nm: float, numerical_aperture: float, material: str, n_layers: int
) -> tuple[float, float, float]:
    """Cached ``ContrastModel(oxide, NA).relative_rgb(material, n_layers)`` as a tuple."""
    model = _contrast_model(oxide_thickness_nm, numerical_aperture)
    rgb = np.asarray(model.relative_rgb(material, n_layers), dtype=np.float64)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


@lru_cache(maxsize=64)
def substrate_rgb(
    oxide_thickness_nm: float, numerical_aperture: float
) -> tuple[float, float, float]:
    """Cached ``ContrastModel(oxide, NA).substrate_rgb()`` as a tuple."""
    model = _contrast_model(oxide_thickness_nm, numerical_aperture)
    rgb = np.asarray(model.substrate_rgb(), dtype=np.float64)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


@lru_cache(maxsize=8)
def _illumination_field(
    height_px: int, width_px: int, inhomogeneity: float, gx: float, gy: float
) -> np.ndarray:
    """(H, W, 1) float32: 1 at the centre, ``1 - inhomogeneity`` in the corners, plus gradients."""
    y = (np.arange(height_px, dtype=np.float32) + 0.5 - height_px / 2) / (height_px / 2)
    x = (np.arange(width_px, dtype=np.float32) + 0.5 - width_px / 2) / (width_px / 2)
    r2 = 0.5 * (x[None, :] ** 2 + y[:, None] ** 2)
    f = 1.0 - inhomogeneity * r2 + gx * x[None, :] + gy * y[:, None]
    f = np.clip(f, 0.0, None).astype(np.float32)
    f.flags.writeable = False
    return cast("np.ndarray", f[:, :, None])


@lru_cache(maxsize=4)
def _base_image(
    height_px: int,
    width_px: int,
    inhomogeneity: float,
    gradient: tuple[float, float],
    colour: tuple[float, float, float],
) -> np.ndarray:
    field = _illumination_field(height_px, width_px, inhomogeneity, gradient[0], gradient[1])
    base = np.ascontiguousarray(field * np.asarray(colour, dtype=np.float32)[None, None, :])
    base.flags.writeable = False
    return base


@lru_cache(maxsize=1)
def _gauss_lut() -> np.ndarray:
    """256 standard-normal quantiles: a uniform random byte -> a Gaussian deviate (std ~1)."""
    from scipy.special import ndtri

    q = ndtri((np.arange(256) + 0.5) / 256.0)
    return cast("np.ndarray", (q / q.std()).astype(np.float32))


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-thread float32 work buffer reused between renders (saves page faults on big tiles)."""
    bufs: dict[str, np.ndarray] = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.shape != shape:
        buf = bufs[name] = np.empty(shape, dtype=np.float32)
    return buf


def gaussian_noise(shape: tuple[int, ...], seed: int, out: np.ndarray | None = None) -> np.ndarray:
    """Fast seeded Gaussian-like noise (256 quantile levels) of ``shape``, float32."""
    n = int(np.prod(shape))
    raw = np.random.SFC64(seed & 0xFFFFFFFFFFFFFFFF).random_raw((n + 7) // 8)
    u8 = np.ascontiguousarray(raw.view(np.uint8)[:n]).reshape(shape)
    return cv2.LUT(u8, _gauss_lut(), dst=out)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; large sigmas are done on a downsampled copy (same result to ~1%)."""
    if sigma_px < 0.3:
        return image
    if sigma_px <= 3.0:
        return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)
    h, w = image.shape[:2]
    f = max(2, int(sigma_px / 1.5))
    small = cv2.resize(
        image, (max(1, -(-w // f)), max(1, -(-h // f))), interpolation=cv2.INTER_AREA
    )
    s = math.sqrt(max(sigma_px**2 - (0.5 * f) ** 2, 0.25)) / f
    small = cv2.GaussianBlur(small, (0, 0), s, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _paint_outside(
    f: np.ndarray, chip: VirtualChip, view: ViewGeometry, pad_px: int, outside: float
) -> list[tuple[int, int, int, int]]:
    """Set F to ``outside`` where pixel centres lie beyond the chip; the boxes of those strips."""
    h, w = f.shape[:2]
    (x0, y0), (x1, y1) = view.to_px(((0.0, 0.0), (chip.width_um, chip.height_um)), pad_px)
    c0, c1 = int(np.clip(np.ceil(x0 - 0.5), 0, w)), int(np.clip(np.floor(x1 - 0.5) + 1, 0, w))
    r0, r1 = int(np.clip(np.ceil(y0 - 0.5), 0, h)), int(np.clip(np.floor(y1 - 0.5) + 1, 0, h))
    strips = [(0, 0, w, r0), (0, r1, w, h), (0, 0, c0, h), (c1, 0, w, h)]
    out = []
    for a, b, c, d in strips:
        if c > a and d > b:
            f[b:d, a:c] = np.float32(outside)
            out.append((a - 1, b - 1, c + 1, d + 1))
    return out


def reflectance_map(
    chip: VirtualChip,
    view: ViewGeometry,
    *,
    numerical_aperture: float,
    pad_px: int = 0,
    outside: float | None = None,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]] | None:
    """F (H + 2 pad, W + 2 pad, 3) float32 and the pixel boxes (x0, y0, x1, y1) where F may
    differ from 1; None when no flake or debris (or, with ``outside``, no chip edge) meets the
    view. ``outside`` is F beyond the chip's edges. F is a per-thread scratch buffer,
    overwritten by the next call in the same thread."""
    rect = view.rect_um(pad_px + 1.0)
    flakes = chip.flakes_in_rect(*rect)
    debris = chip.debris_in_rect(*rect)
    edge = outside is not None and (
        rect[0] < 0 or rect[1] < 0 or rect[2] > chip.width_um or rect[3] > chip.height_um
    )
    if not flakes and not debris and not edge:
        return None
    h, w = view.height_px + 2 * pad_px, view.width_px + 2 * pad_px
    f = _scratch("reflectance", (h, w, 3))
    f.fill(1.0)
    ox = chip.oxide_thickness_nm
    boxes: list[tuple[int, int, int, int]] = []
    if edge:
        assert outside is not None
        boxes += _paint_outside(f, chip, view, pad_px, outside)
    for flake in flakes:
        for i, t in enumerate(flake.terraces):
            colour = relative_rgb(ox, numerical_aperture, flake.material, t.n_layers)
            pts = view.to_cv(t.polygon_um, pad_px)
            cv2.fillPoly(f, [pts], colour, cv2.LINE_8, SHIFT)
            if i == 0:
                boxes.append(_pixel_box(pts, 1))
    residue = [d for d in debris if d.kind == "residue"]
    for d in debris:
        if d.kind == "particle":
            pts = view.to_cv(d.polygon_um, pad_px)
            _scale_region(f, pts, 1.0 - d.strength)
            boxes.append(_pixel_box(pts, 1))
        else:
            boxes.append(_pixel_box(view.to_cv(d.polygon_um, pad_px), 6 * _RESIDUE_DOWNSAMPLE))
    if residue:
        k = _RESIDUE_DOWNSAMPLE
        small: np.ndarray = np.zeros((-(-h // k), -(-w // k)), dtype=np.float32)
        for d in residue:
            tmp = np.zeros_like(small)
            pts = view.to_px(d.polygon_um, pad_px) / k - 0.5
            cv2.fillPoly(
                tmp, [np.rint(pts * (1 << SHIFT)).astype(np.int32)], d.strength, cv2.LINE_8, SHIFT
            )
            small += tmp
        small = cv2.GaussianBlur(small, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)
        dark = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        f *= 1.0 - dark[:, :, None] * _RESIDUE_TINT
    return f, boxes


def _pixel_box(pts: np.ndarray, grow: int) -> tuple[int, int, int, int]:
    return (
        (int(pts[:, 0].min()) >> SHIFT) - grow,
        (int(pts[:, 1].min()) >> SHIFT) - grow,
        (int(pts[:, 0].max()) >> SHIFT) + 1 + grow,
        (int(pts[:, 1].max()) >> SHIFT) + 1 + grow,
    )


def merge_boxes(
    boxes: list[tuple[int, int, int, int]], margin: int, width: int, height: int
) -> list[tuple[int, int, int, int]]:
    """Grow boxes by ``margin``, clip them to the image and merge overlapping ones until the
    boxes are disjoint (blurring each one separately then equals blurring the whole image)."""
    out = [
        (
            max(x0 - margin, 0),
            max(y0 - margin, 0),
            min(x1 + margin, width),
            min(y1 + margin, height),
        )
        for x0, y0, x1, y1 in boxes
    ]
    out = [b for b in out if b[2] > b[0] and b[3] > b[1]]
    merged = True
    while merged:
        merged = False
        result: list[tuple[int, int, int, int]] = []
        for b in out:
            for j, r in enumerate(result):
                if b[0] < r[2] and r[0] < b[2] and b[1] < r[3] and r[1] < b[3]:
                    result[j] = (min(b[0], r[0]), min(b[1], r[1]), max(b[2], r[2]), max(b[3], r[3]))
                    merged = True
                    break
            else:
                result.append(b)
        out = result
    return out


def blur_regions(
    f: np.ndarray, boxes: list[tuple[int, int, int, int]], sigma_px: float, margin: int
) -> np.ndarray:
    """Blur ``f`` (1 outside ``boxes``) in place, box by box; the whole image when that is cheaper."""
    h, w = f.shape[:2]
    regions = merge_boxes(boxes, margin, w, h)
    if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions) > 0.6 * h * w:
        return blur(f, sigma_px)
    for x0, y0, x1, y1 in regions:
        f[y0:y1, x0:x1] = blur(f[y0:y1, x0:x1], sigma_px)
    return f


def _scale_region(f: np.ndarray, pts: np.ndarray, factor: float) -> None:
    """Multiply ``f`` by ``factor`` inside the cv-format polygon ``pts`` (small polygons)."""
    h, w = f.shape[:2]
    x0 = max(int(pts[:, 0].min()) >> SHIFT, 0)
    y0 = max(int(pts[:, 1].min()) >> SHIFT, 0)
    x1 = min((int(pts[:, 0].max()) >> SHIFT) + 2, w)
    y1 = min((int(pts[:, 1].max()) >> SHIFT) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    m = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    local = pts - np.array([x0 << SHIFT, y0 << SHIFT], dtype=np.int32)
    cv2.fillPoly(m, [local], 1, cv2.LINE_8, SHIFT)
    sub = f[y0:y1, x0:x1]
    sub[m.astype(bool)] *= np.float32(factor)


def render_linear(
    chip: VirtualChip,
    center_x_um: float,
    center_y_um: float,
    width_px: int,
    height_px: int,
    um_per_px: float,
    *,
    focus_error_um: float = 0.0,
    settings: RenderSettings = RenderSettings(),
) -> np.ndarray:
    """Noise-free linear signal (H, W, 3) float32 of the view (before noise and gamma)."""
    if width_px < 1 or height_px < 1 or um_per_px <= 0:
        raise ValueError(f"bad view size {width_px}x{height_px} px at {um_per_px} µm/px")
    view = ViewGeometry(center_x_um, center_y_um, int(width_px), int(height_px), um_per_px)
    sigma = settings.blur_sigma_px(focus_error_um, um_per_px)
    pad = int(math.ceil(3.0 * sigma)) + 1
    na = settings.numerical_aperture
    sub = np.asarray(substrate_rgb(chip.oxide_thickness_nm, na))
    if settings.substrate_level is not None:
        sub = sub * (settings.substrate_level / max(float(sub.mean()), 1e-6))
    colour = sub * settings.illumination * np.asarray(settings.white_balance_rgb, dtype=float)
    base = _base_image(
        view.height_px,
        view.width_px,
        float(settings.inhomogeneity),
        (float(settings.gradient_xy[0]), float(settings.gradient_xy[1])),
        (float(colour[0]), float(colour[1]), float(colour[2])),
    )
    drawn = reflectance_map(
        chip, view, numerical_aperture=na, pad_px=pad, outside=settings.outside_chip_reflectance
    )
    if drawn is None:
        return base.copy()
    f = blur_regions(drawn[0], drawn[1], sigma, pad)
    return cv2.multiply(f[pad : pad + view.height_px, pad : pad + view.width_px], base)


@lru_cache(maxsize=8)
def _gamma_lut(gamma: float) -> np.ndarray:
    x = np.arange(4096, dtype=np.float64) / 4095.0
    return np.clip(np.rint(255.0 * x ** (1.0 / gamma)), 0, 255).astype(np.uint8)


def encode(linear: np.ndarray, settings: RenderSettings, seed: int) -> np.ndarray:
    """Add camera noise to a linear (H, W, 3) float32 signal (in place) and encode it as uint8."""
    v = linear
    if settings.noise_sigma > 0 or settings.full_well_e > 0:
        g = gaussian_noise(v.shape, seed, out=_scratch("noise", v.shape))
        if settings.full_well_e > 0:
            # sigma^2 = read^2 + v / full_well (shot noise), all with cv2 (one SIMD pass each)
            var = _scratch("variance", v.shape)
            cv2.addWeighted(v, 1.0 / settings.full_well_e, v, 0.0, settings.noise_sigma**2, dst=var)
            np.maximum(var, 0.0, out=var)
            cv2.sqrt(var, dst=var)
            cv2.multiply(var, g, dst=var)
            cv2.add(v, var, dst=v)
        else:
            cv2.scaleAdd(g, settings.noise_sigma, v, dst=v)
    np.maximum(v, 0.0, out=v)
    if settings.gamma == 1.0:
        return cv2.convertScaleAbs(v, alpha=255.0)
    q = np.minimum(v * np.float32(4095.0) + np.float32(0.5), np.float32(4095.0)).astype(np.uint16)
    return cast("np.ndarray", np.take(_gamma_lut(float(settings.gamma)), q))


def render_view(
    chip: VirtualChip,
    center_x_um: float,
    center_y_um: float,
    width_px: int,
    height_px: int,
    um_per_px: float,
    *,
    focus_error_um: float = 0.0,
    settings: RenderSettings = RenderSettings(),
    seed: int = 0,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB image of the view centred on (center_x_um, center_y_um) of ``chip``.

    Deterministic: the same chip, view, focus error, settings and ``seed`` give identical bytes.
    """
    linear = render_linear(
        chip,
        center_x_um,
        center_y_um,
        width_px,
        height_px,
        um_per_px,
        focus_error_um=focus_error_um,
        settings=settings,
    )
    return encode(linear, settings, seed)
