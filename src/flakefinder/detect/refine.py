"""Substrate background estimation and layer-count refinement from optical contrast (numpy, cv2).

:func:`fit_background` is the one background implementation in flakefinder (with
:func:`estimate_background`, its field-only wrapper): the contrast detector uses it, and
:func:`refine_layer_count` uses it to turn any detector's mask (e.g. Mask
R-CNN's) into an exact layer count, the colour-contrast post-process the paper left as future work.

Background model: the image is cut into blocks; each block's per-channel median (robust to a flake
covering less than half of it) is a sample of the substrate colour there. The substrate blocks are
first the dominant chromaticity mode (illumination inhomogeneity changes brightness, not
chromaticity), then a low-order 2-D polynomial in log intensity is fitted to them and refitted to
the blocks within a robust residual band (``iterations`` times). Evaluating the polynomial gives a
smooth background field that removes illumination inhomogeneity; on images of 64 px and more it is
evaluated on a grid 8x coarser and interpolated bilinearly (a low-order polynomial is flat on that
scale: ~1e-5 relative difference to the per-pixel evaluation; the outer 5 px band is exact).
"""

from __future__ import annotations

import dataclasses
from typing import cast

import cv2
import numpy as np

from flakefinder.detect.colours import MAX_LAYERS, colour_table, linearize
from flakefinder.domain import Detection, ImagingContext, LayerClass, check_rgb_image
from flakefinder.errors import ImageError


@dataclasses.dataclass(frozen=True, eq=False)
class BackgroundFit:
    """A fitted background: the field and what the fit learned about the substrate."""

    field: np.ndarray  # (H, W, 3) float32, linear light
    substrate_blocks: np.ndarray  # (gh, gw) bool, blocks used in the final fit
    block_px: int
    log_sigma: np.ndarray  # (3,) robust scatter of substrate block medians around the fit


def _poly_terms(u: np.ndarray, v: np.ndarray, degree: int) -> np.ndarray:
    return np.stack([u**i * v**j for j in range(degree + 1) for i in range(degree + 1 - j)], -1)


FIELD_STEP_PX = 8  # the background field is evaluated every 8 px and interpolated


def _block_medians(lin: np.ndarray, block_px: int) -> np.ndarray:
    """Per-block per-channel median on a 2x subsampled grid -> (gh, gw, 3)."""
    sub = lin[::2, ::2]
    b = max(1, block_px // 2)
    gh, gw = sub.shape[0] // b, sub.shape[1] // b
    blocks = sub[: gh * b, : gw * b].reshape(gh, b, gw, b, 3).transpose(0, 2, 4, 1, 3)
    return cast("np.ndarray", np.median(blocks.reshape(gh, gw, 3, b * b), axis=-1))


def _centres(n: int) -> np.ndarray:
    """Pixel centres of an n-pixel axis in normalised coordinates [-1, 1]."""
    return (np.arange(n) + 0.5) / n * 2.0 - 1.0


def _poly_field(coef: np.ndarray, deg: int, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """exp(polynomial) on the grid v x u -> (len(v), len(u), 3) float32, evaluated separably.

    field_c(y, x) = exp(sum_j v^j * (sum_i c_ij u^i)).
    """
    cu = np.zeros((deg + 1, u.size, 3))
    t = 0
    for j in range(deg + 1):
        for i in range(deg + 1 - j):
            cu[j] += np.outer(u**i, coef[t])
            t += 1
    vpow = np.stack([v**j for j in range(deg + 1)], axis=1)  # (len(v), deg+1)
    logf = (vpow @ cu.reshape(deg + 1, u.size * 3)).reshape(v.size, u.size, 3)
    return np.exp(logf).astype(np.float32)


def fit_background(
    image: np.ndarray,
    *,
    gamma: float = 1.0,
    degree: int = 3,
    block_px: int | None = None,
    iterations: int = 2,
) -> BackgroundFit:
    """Fit the substrate background of an RGB image; see the module docstring.

    ``image`` is uint8 camera values (linearised with ``gamma``) or an (H, W, 3) float linear image.
    """
    if image.dtype == np.uint8:
        check_rgb_image(image)
    elif image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8:
        raise ImageError(f"image must have shape (H, W, 3) with H, W >= 8, got {image.shape}")
    lin = linearize(image, gamma)
    h, w = lin.shape[:2]
    if block_px is None:
        block_px = int(np.clip(min(h, w) // 32, 4, 64)) // 2 * 2
    block_px = max(2, min(block_px, min(h, w) // 2))
    med = _block_medians(lin, block_px)
    gh, gw = med.shape[:2]
    logm = np.log(np.maximum(med, 1e-4)).reshape(-1, 3)

    # Dominant chromaticity mode: bare substrate is the most common colour on a chip.
    chroma = logm[:, [0, 2]] - logm[:, [1]]
    q = np.round(chroma / 0.02).astype(np.int64)
    keys, inv, counts = np.unique(q, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    mode = np.argmax(counts)
    # chromaticity of the mode: median of the blocks in the most populated bin
    mode_chroma = np.median(chroma[inv == mode], axis=0)
    sel = np.all(np.abs(chroma - mode_chroma) < 0.03, axis=1)
    # Within the mode, drop brightness outliers beyond the inhomogeneity (dark thick flakes).
    lg = logm[:, 1]
    sel &= np.abs(lg - np.median(lg[sel])) < 0.35

    # block centres in normalised image coordinates [-1, 1]
    cy = (np.arange(gh) * block_px + block_px / 2.0) / h * 2.0 - 1.0
    cx = (np.arange(gw) * block_px + block_px / 2.0) / w * 2.0 - 1.0
    vv, uu = np.meshgrid(cy, cx, indexing="ij")
    deg = degree
    while deg > 0 and (deg + 1) * (deg + 2) // 2 * 4 > int(sel.sum()):
        deg -= 1
    a_full = _poly_terms(uu.reshape(-1), vv.reshape(-1), deg)
    coef = np.zeros((a_full.shape[1], 3))
    sigma = np.full(3, 0.01)
    for _ in range(max(1, iterations) + 1):
        if sel.sum() < a_full.shape[1]:
            break
        a = a_full[sel]
        coef = np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ logm[sel])
        res = logm - a_full @ coef
        sigma = np.maximum(1.4826 * np.median(np.abs(res[sel]), axis=0), 0.002)
        new_sel = np.all(np.abs(res) < 3.5 * sigma, axis=1)
        if new_sel.sum() < a_full.shape[1] or np.array_equal(new_sel, sel):
            sel = new_sel if new_sel.sum() >= a_full.shape[1] else sel
            break
        sel = new_sel
    if not sel.any():
        sel = np.ones_like(sel)
        coef = np.zeros_like(coef)
        coef[0] = np.median(logm, axis=0)

    # Evaluated on a coarse grid (pixel centres of an (eh, ew) image covering the same area),
    # upsampled bilinearly; the outer half-step band, where resize would clamp, exactly.
    step = FIELD_STEP_PX if min(h, w) >= 8 * FIELD_STEP_PX else 1
    if step == 1:
        field = _poly_field(coef, deg, _centres(h), _centres(w))
    else:
        eh, ew = -(-h // step), -(-w // step)
        coarse = _poly_field(coef, deg, _centres(eh), _centres(ew))
        field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        e = step // 2 + 1
        u, v = _centres(w), _centres(h)
        field[:e] = _poly_field(coef, deg, v[:e], u)
        field[-e:] = _poly_field(coef, deg, v[-e:], u)
        field[:, :e] = _poly_field(coef, deg, v, u[:e])
        field[:, -e:] = _poly_field(coef, deg, v, u[-e:])
    return BackgroundFit(field, sel.reshape(gh, gw), block_px, sigma.astype(np.float32))


def estimate_background(image: np.ndarray, *, gamma: float = 1.0, degree: int = 3) -> np.ndarray:
    """Smooth substrate background field (H, W, 3) float32 in linear light (0..1).

    ``image / field`` (after :func:`flakefinder.detect.colours.linearize`) is the relative image
    ``I / I_bg`` whose value on bare substrate is 1 everywhere, whatever the illumination.
    """
    return fit_background(image, gamma=gamma, degree=degree).field


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:] &= out[:-1]
        m[:-1] &= out[1:]
        m[:, 1:] &= out[:, :-1]
        m[:, :-1] &= out[:, 1:]
        out = m
    return out


def _rasterize(polygon: tuple[tuple[float, float], ...], h: int, w: int) -> np.ndarray:
    """Even-odd fill of a pixel polygon (pixel centres at +0.5), numpy only."""
    mask = np.zeros((h, w), dtype=bool)
    if len(polygon) < 3:
        return mask
    p = np.asarray(polygon, dtype=np.float64)
    x0, y0 = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for r in range(max(0, int(np.floor(y0.min()))), min(h, int(np.ceil(y0.max())) + 1)):
        yc = r + 0.5
        cross = (y0 <= yc) != (y1 <= yc)
        if not cross.any():
            continue
        xs = np.sort(
            x0[cross] + (yc - y0[cross]) * (x1[cross] - x0[cross]) / (y1[cross] - y0[cross])
        )
        for a, b in zip(xs[0::2], xs[1::2], strict=False):
            c0, c1 = max(0, int(np.ceil(a - 0.5))), min(w - 1, int(np.floor(b - 0.5)))
            if c1 >= c0:
                mask[r, c0 : c1 + 1] = True
    return mask


def measure_relative_rgb(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    gamma: float = 1.0,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Median ``I / I_bg`` (3,) inside ``mask``; the mask is eroded 1-2 px when large enough.

    ``background`` is a linear field (H, W, 3) or a constant linear colour (3,); None = fitted.
    """
    lin = linearize(image, gamma)
    if mask.shape != lin.shape[:2] or not mask.any():
        raise ImageError(f"mask of shape {mask.shape} is empty or does not match the image")
    inner = mask
    for r in (2, 1):
        e = _erode(mask, r)
        if e.sum() >= 20:
            inner = e
            break
    bg = fit_background(lin).field if background is None else np.asarray(background, np.float32)
    pix = lin[inner]
    bgp = bg[inner] if bg.ndim == 3 else bg.reshape(1, 3)
    return cast("np.ndarray", np.median(pix / np.maximum(bgp, 1e-6), axis=0))


def refine_layer_count(
    image: np.ndarray,
    detection: Detection,
    context: ImagingContext,
    background_rgb: tuple[float, float, float] | np.ndarray | None = None,
    *,
    background_field: np.ndarray | None = None,
    gamma: float = 1.0,
    numerical_aperture: float = 0.55,
) -> Detection:
    """Return ``detection`` with ``layer_count`` (and contrast, class) from its optical contrast.

    The median relative RGB inside the detection's mask (or its polygon when there is no mask) is
    matched to the optics model's colours of ``detection.material`` for 1..80 layers. The layer
    class follows the count when it is 1..40; bulk (> 40) keeps the detector's class.
    ``background_rgb`` is the bare-substrate colour as stored in the image (0..255 per channel);
    ``background_field`` is a linear (H, W, 3) field from :func:`estimate_background`, passed
    when refining several detections of one image so the fit runs once. With neither, the
    field is fitted here. ``gamma`` is the camera encoding (stored = linear ** (1 / gamma)) and
    ``numerical_aperture`` the objective's NA, both properties of the microscope, not the chip.
    """
    img = check_rgb_image(image)
    h, w = img.shape[:2]
    mask = detection.mask
    if mask is None:
        mask = _rasterize(detection.polygon_px, h, w)
    mask = np.asarray(mask, dtype=bool)
    background = background_field
    if background_rgb is not None:
        bg8 = np.asarray(background_rgb, dtype=np.float64).reshape(3)
        background = ((np.clip(bg8, 0, 255) / 255.0) ** gamma).astype(np.float32)
    rel = measure_relative_rgb(img, mask, gamma=gamma, background=background)
    table = colour_table(
        context.oxide_thickness_nm, numerical_aperture, (detection.material,)
    )
    row_idx, _res = table.nearest(rel[None, :], table.rows_for(detection.material))
    n = table.label(int(row_idx[0]))[1]
    lc = LayerClass.from_layers(n) if n <= MAX_LAYERS else None
    c = rel - 1.0  # Detection.contrast_rgb: C = I/I_substrate - 1
    return dataclasses.replace(
        detection,
        layer_count=n,
        layer_class=lc if lc is not None else detection.layer_class,
        contrast_rgb=(float(c[0]), float(c[1]), float(c[2])),
    )
