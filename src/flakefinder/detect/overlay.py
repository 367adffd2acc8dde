"""Draw detections so that a person can read them: colour by layer number, labels beside flakes.

Each flake is outlined in the colour of its layer number (a fixed palette for colour-blind eyes:
Okabe & Ito's; ``1 L`` … ``7 L`` each their own colour, 8–10 layers black, unknown thickness
white and labelled ``?``) over a dark or light halo, so that it stands out on grey, violet, pink
or orange substrate alike. A small label (``2L 0.91``; just ``2`` where crowded) sits beside the
flake, never over it and never over another label (:mod:`flakefinder.detect.overlay_layout`),
joined to it by a leader line. Thick flakes (more than 10 layers) are drawn faintly: a thin,
half-transparent outline and no label. A legend lists the layer colours present. Sizes scale with
the image (readable at 1920×1200 and 2880×2048). Pure numpy/cv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from flakefinder.detect.overlay_layout import (
    LabelRequest,
    PlacedLabel,
    Rect,
    leader_start,
    place_labels,
)
from flakefinder.domain import LayerClass
from flakefinder.imaging import to_rgb8

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.domain import Detection

Colour = tuple[int, int, int]

# Okabe & Ito (2008), "Color Universal Design": distinct for the common colour-vision deficiencies
_LAYER_COLOURS: tuple[Colour, ...] = (
    (240, 228, 66),  # 1 L  yellow
    (86, 180, 233),  # 2 L  sky blue
    (230, 159, 0),  # 3 L  orange
    (0, 158, 115),  # 4 L  bluish green
    (204, 121, 167),  # 5 L  reddish purple
    (213, 94, 0),  # 6 L  vermillion
    (0, 114, 178),  # 7 L  blue
)
_MANY: Colour = (0, 0, 0)  # 8-10 layers
_UNKNOWN: Colour = (255, 255, 255)  # thickness unknown: "?"
_THICK: Colour = (255, 255, 255)  # > 10 layers, drawn faintly
_THICK_ALPHA = 0.4
_FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_LABELLED_LAYERS = 10
"""Flakes with more layers than this are thick: drawn faintly, without a label."""


def layer_number(det: Detection) -> int | None:
    """The flake's layer number: its estimate, 1 for a monolayer, else None (unknown)."""
    if det.layer_count is not None:
        return int(det.layer_count)
    return 1 if det.layer_class is LayerClass.MONO else None


def is_thick(det: Detection) -> bool:
    """More than :data:`MAX_LABELLED_LAYERS` layers (or classed thick with no number)."""
    n = layer_number(det)
    if n is None:
        return det.layer_class is LayerClass.THICK
    return n > MAX_LABELLED_LAYERS


def layer_key(det: Detection) -> str:
    """Legend key of a flake: ``"1"`` … ``"7"``, ``"8-10"``, ``"?"`` or ``"thick"``."""
    if is_thick(det):
        return "thick"
    n = layer_number(det)
    if n is None:
        return "?"
    return str(n) if n <= len(_LAYER_COLOURS) else f"{len(_LAYER_COLOURS) + 1}-10"


def layer_colour(key: str) -> Colour:
    """RGB colour of a legend key (see :func:`layer_key`)."""
    if key == "?":
        return _UNKNOWN
    if key == "thick":
        return _THICK
    if key.isdigit() and 1 <= int(key) <= len(_LAYER_COLOURS):
        return _LAYER_COLOURS[int(key) - 1]
    return _MANY


def _halo(colour: Colour) -> Colour:
    return (255, 255, 255) if _luminance(colour) < 60 else (20, 20, 20)


def _luminance(c: Colour) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def label_texts(det: Detection, *, with_material: bool) -> tuple[str, ...]:
    """Label texts of a flake, longest first: ``2L graphene 0.91`` / ``2L 0.91``, ``2L``, ``2``
    (``? 0.91``, ``?`` when the thickness is unknown)."""
    n = layer_number(det)
    num = "?" if n is None else str(n)
    head = num if n is None else f"{num}L"
    if with_material:
        head = f"{head} {det.material}"
    short = num if n is None else f"{num}L"
    return tuple(dict.fromkeys((f"{head} {det.confidence:.2f}", short, num)))


@dataclass(frozen=True)
class OverlayStyle:
    """Sizes of the drawing for one image size (everything scales with the longer side)."""

    font_scale: float
    text_px: int
    line_px: int
    halo_px: int
    pad_px: int

    @classmethod
    def for_image(cls, height_px: int, width_px: int, line_px: int | None = None) -> OverlayStyle:
        unit = max(height_px, width_px) / 1920
        line = line_px if line_px is not None else max(1, round(2 * unit))
        return cls(
            font_scale=max(0.35, 0.8 * unit),
            text_px=max(1, round(2 * unit)),
            line_px=line,
            halo_px=max(1, round(1.5 * unit)),
            pad_px=max(2, round(5 * unit)),
        )

    def label_size(self, text: str) -> tuple[int, int]:
        """``(width, height)`` of a label's rectangle holding ``text``."""
        (tw, th), base = cv2.getTextSize(text, _FONT, self.font_scale, self.text_px)
        return tw + 2 * self.pad_px, th + base + 2 * self.pad_px


def draw_detections(
    image: np.ndarray,
    detections: Sequence[Detection],
    *,
    alpha: float = 0.2,
    thickness: int | None = None,
    show_boxes: bool = False,
    show_labels: bool = True,
    show_legend: bool = True,
) -> np.ndarray:
    """Return an RGB uint8 copy of ``image`` with every detection drawn on it.

    Parameters
    ----------
    image
        Grey, RGB or RGBA image of any integer or float type.
    detections
        The flakes, in the image's pixel coordinates.
    alpha
        Opacity of the tint inside each labelled flake (0: outline only).
    thickness
        Outline width in pixels (default: scaled with the image).
    show_boxes
        Also draw each flake's bounding box.
    show_labels
        Labels beside the flakes, with leader lines.
    show_legend
        A legend of the layer colours present (when any flake is drawn).
    """
    base = to_rgb8(image)
    out = base.copy()
    h, w = out.shape[:2]
    if not detections:
        return out
    style = OverlayStyle.for_image(h, w, thickness)
    shapes = [_shape_of(d, h, w) for d in detections]
    owner = _owner_map(shapes, h, w)
    keys = [layer_key(d) for d in detections]
    for shape, key in zip(shapes, keys, strict=True):
        if key != "thick" and alpha > 0:
            tint = np.array(layer_colour(key), dtype=np.float32)
            crop = out[shape.window]
            region = crop[shape.mask].astype(np.float32)
            crop[shape.mask] = np.clip(region * (1 - alpha) + tint * alpha, 0, 255).astype(np.uint8)
    _draw_faint(out, [s.outlines for s, k in zip(shapes, keys, strict=True) if k == "thick"])
    for i in reversed(_label_order(detections)):  # the thinnest outlines end on top
        colour = layer_colour(keys[i])
        for pts in shapes[i].outlines:
            _polyline(out, pts, colour, style.line_px, style.halo_px)
        if show_boxes:
            x0, y0, x1, y1 = (round(v) for v in detections[i].bbox_px)
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, style.line_px, cv2.LINE_AA)
    busy = _busy(base, owner > 0)
    legend = _legend_rows(detections, keys) if show_legend else []
    legend_rect = _legend_rect(legend, owner > 0, busy, style)
    if show_labels:
        labels = _layout(detections, shapes, owner, style, legend_rect, busy)
        for lab in labels:  # every line first, so that no line runs over a label's text
            _draw_leader(out, lab, layer_colour(keys[lab.index]), style)
        for lab in labels:
            _draw_label(out, lab, layer_colour(keys[lab.index]), style)
    if legend_rect:
        _draw_legend(out, legend, legend_rect[0], style)
    return out


def layout_labels(
    detections: Sequence[Detection],
    shape: tuple[int, int],
    *,
    style: OverlayStyle | None = None,
    reserved: Sequence[Rect] = (),
    image: np.ndarray | None = None,
) -> list[PlacedLabel]:
    """Where :func:`draw_detections` puts the labels of ``detections`` on an image of ``shape``.

    Thick flakes get none; the others are placed thinnest first, then largest first. With the
    RGB uint8 ``image``, places on plain substrate are preferred over undetected bulk or dust.
    """
    h, w = shape
    shapes = [_shape_of(d, h, w) for d in detections]
    style = style or OverlayStyle.for_image(h, w)
    owner = _owner_map(shapes, h, w)
    busy = None if image is None else _busy(to_rgb8(image), owner > 0)
    return _layout(detections, shapes, owner, style, reserved, busy)


def _layout(
    detections: Sequence[Detection],
    shapes: Sequence[_Shape],
    owner: np.ndarray,
    style: OverlayStyle,
    reserved: Sequence[Rect],
    busy: np.ndarray | None,
) -> list[PlacedLabel]:
    with_material = len({d.material for d in detections}) > 1
    requests = [
        LabelRequest(
            i,
            detections[i].bbox_px,
            label_texts(detections[i], with_material=with_material),
            tuple((float(x), float(y)) for o in shapes[i].outlines for x, y in o.tolist()),
        )
        for i in _label_order(detections)
    ]
    return place_labels(
        requests,
        owner,
        style.label_size,
        clearance_px=style.line_px + style.halo_px + 1,
        reserved=reserved,
        busy=busy,
        spacing_px=max(2, style.pad_px // 2),
    )


def _busy(rgb: np.ndarray, flakes: np.ndarray) -> np.ndarray:
    """Pixels that are not plain substrate: far (robustly) from the median colour outside the
    detected flakes, smoothed so that camera noise does not count."""
    smooth = cv2.blur(rgb, (5, 5))
    sample = smooth[::4, ::4][~flakes[::4, ::4]]
    if sample.size == 0:
        return np.zeros(flakes.shape, dtype=bool)
    substrate = np.median(sample, axis=0).round().astype(np.uint8)
    diff = cv2.absdiff(smooth, np.broadcast_to(substrate, smooth.shape).copy())
    r, g, b = cv2.split(diff)
    dist = cv2.max(cv2.max(r, g), b)
    spread = float(np.median(dist[::4, ::4])) * 1.4826
    return np.asarray(dist > max(12.0, 4.0 * spread))


def _label_order(detections: Sequence[Detection]) -> list[int]:
    """Indices of the flakes that get labels (not thick): thinnest first, then largest first."""
    return sorted(
        (i for i, d in enumerate(detections) if not is_thick(d)),
        key=lambda i: (layer_number(detections[i]) or 99, -detections[i].area_px),
    )


@dataclass(frozen=True)
class _Shape:
    """A flake's pixels within its bounding window, and its outlines in image coordinates."""

    window: tuple[slice, slice]
    mask: np.ndarray
    outlines: tuple[np.ndarray, ...]


def _shape_of(det: Detection, h: int, w: int) -> _Shape:
    bx0, by0, bx1, by1 = det.bbox_px
    x0, y0 = max(int(np.floor(bx0)) - 1, 0), max(int(np.floor(by0)) - 1, 0)
    x1, y1 = min(int(np.ceil(bx1)) + 1, w), min(int(np.ceil(by1)) + 1, h)
    if det.mask is not None and det.mask.shape == (h, w):
        if x1 <= x0 or y1 <= y0:  # a box that does not hold the mask: use the whole image
            x0, y0, x1, y1 = 0, 0, w, h
        mask = np.asarray(det.mask[y0:y1, x0:x1], dtype=bool)
    else:
        x0, y0, x1, y1 = (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else (0, 0, w, h)
        canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        if len(det.polygon_px) >= 3:
            pts = np.round(np.asarray(det.polygon_px, dtype=np.float64)).astype(np.int32)
            cv2.fillPoly(canvas, [(pts - (x0, y0)).reshape(-1, 1, 2)], 1)
        mask = canvas.astype(bool)
    outlines: tuple[np.ndarray, ...]
    if len(det.polygon_px) >= 2:
        outlines = (np.round(np.asarray(det.polygon_px, dtype=np.float64)).astype(np.int32),)
    else:
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        outlines = tuple(c.reshape(-1, 2) + (x0, y0) for c in contours)
    return _Shape((slice(y0, y1), slice(x0, x1)), mask, outlines)


def _owner_map(shapes: Sequence[_Shape], h: int, w: int) -> np.ndarray:
    """``(H, W)`` int32: ``i + 1`` on flake ``i``'s pixels (a later flake wins), 0 elsewhere."""
    owner = np.zeros((h, w), dtype=np.int32)
    for i, shape in enumerate(shapes):
        owner[shape.window][shape.mask] = i + 1
    return owner


def _polyline(img: np.ndarray, pts: np.ndarray, colour: Colour, lw: int, halo: int) -> None:
    poly = [pts.reshape(-1, 1, 2)]
    cv2.polylines(img, poly, True, _halo(colour), lw + 2 * halo, cv2.LINE_AA)
    cv2.polylines(img, poly, True, colour, lw, cv2.LINE_AA)


def _draw_faint(img: np.ndarray, outlines: Sequence[Sequence[np.ndarray]]) -> None:
    polys = [p.reshape(-1, 1, 2) for o in outlines for p in o]
    if not polys:
        return
    drawn = np.zeros(img.shape[:2], dtype=np.uint8)
    cv2.polylines(drawn, polys, True, 255, 1, cv2.LINE_AA)
    ys, xs = np.nonzero(drawn)
    a = drawn[ys, xs].astype(np.float32)[:, None] / 255.0 * _THICK_ALPHA
    colour = np.array(_THICK, dtype=np.float32)
    img[ys, xs] = np.clip(img[ys, xs] * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def _draw_leader(img: np.ndarray, lab: PlacedLabel, colour: Colour, style: OverlayStyle) -> None:
    """The line from the label's nearest point to the flake's nearest outline point."""
    start = leader_start(lab.rect, lab.anchor)
    if abs(start[0] - lab.anchor[0]) + abs(start[1] - lab.anchor[1]) > style.line_px:
        lw = max(1, style.line_px - 1)
        cv2.line(img, start, lab.anchor, _halo(colour), lw + 2 * style.halo_px, cv2.LINE_AA)
        cv2.line(img, start, lab.anchor, colour, lw, cv2.LINE_AA)


def _draw_label(img: np.ndarray, lab: PlacedLabel, colour: Colour, style: OverlayStyle) -> None:
    x0, y0, x1, y1 = lab.rect
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), _halo(colour), 1)
    ink = (0, 0, 0) if _luminance(colour) > 110 else (255, 255, 255)
    _, base = cv2.getTextSize(lab.text, _FONT, style.font_scale, style.text_px)
    origin = (x0 + style.pad_px, y1 - style.pad_px - base)
    cv2.putText(img, lab.text, origin, _FONT, style.font_scale, ink, style.text_px, cv2.LINE_AA)


# -- legend ---------------------------------------------------------------------------------------

_KEY_ORDER = [str(n) for n in range(1, len(_LAYER_COLOURS) + 1)] + ["8-10", "?", "thick"]


def _legend_rows(detections: Sequence[Detection], keys: Sequence[str]) -> list[tuple[str, str]]:
    """``(key, text)`` rows: a title (the materials), then each layer colour present."""
    present = set(keys)
    rows = [("", ", ".join(sorted({d.material for d in detections})))]
    names = {"?": "? unknown thickness", "thick": "thick (faint)", "8-10": "8-10 L"}
    rows += [(k, names.get(k, f"{k} L")) for k in _KEY_ORDER if k in present]
    return rows


def _legend_size(rows: Sequence[tuple[str, str]], style: OverlayStyle) -> tuple[int, int, int]:
    sizes = [style.label_size(text) for _, text in rows]
    row_h = max(h for _, h in sizes)
    swatch = row_h
    return max(w for w, _ in sizes) + swatch, row_h * len(rows) + style.pad_px, row_h


def _legend_rect(
    rows: Sequence[tuple[str, str]], covered: np.ndarray, busy: np.ndarray, style: OverlayStyle
) -> list[Rect]:
    """The legend's rectangle in the image corner that hides the fewest flake pixels, then the
    least that is not plain substrate ([] when there is no legend or it would not fit in two
    thirds of the image)."""
    h, w = covered.shape
    if len(rows) < 2:
        return []
    lw, lh, _ = _legend_size(rows, style)
    m = style.pad_px
    if lw + 2 * m > w / 3 * 2 or lh + 2 * m > h / 3 * 2:
        return []
    corners: list[Rect] = [
        (m, m, m + lw, m + lh),
        (w - m - lw, m, w - m, m + lh),
        (m, h - m - lh, m + lw, h - m),
        (w - m - lw, h - m - lh, w - m, h - m),
    ]

    def hidden(r: Rect) -> tuple[int, int]:
        window = (slice(r[1], r[3]), slice(r[0], r[2]))
        return int(covered[window].sum()), int(busy[window].sum())

    best = min(corners, key=hidden)
    return [best]


def _draw_legend(
    img: np.ndarray, rows: Sequence[tuple[str, str]], rect: Rect, style: OverlayStyle
) -> None:
    x0, y0, x1, y1 = rect
    box = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (box * 0.35 + 0.65 * 30).astype(np.uint8)  # dark, see-through panel
    _, _, row_h = _legend_size(rows, style)
    for r, (key, text) in enumerate(rows):
        top = y0 + r * row_h + style.pad_px // 2
        tx = x0 + style.pad_px
        if key:
            s = row_h - 2 * style.pad_px
            sy = top + style.pad_px
            colour = layer_colour(key)
            if key == "thick":
                cv2.rectangle(img, (tx, sy), (tx + s, sy + s), colour, 1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (tx, sy), (tx + s, sy + s), _halo(colour), -1)
                cv2.rectangle(img, (tx + 1, sy + 1), (tx + s - 1, sy + s - 1), colour, -1)
            tx += s + style.pad_px
        _, base = cv2.getTextSize(text, _FONT, style.font_scale, style.text_px)
        origin = (tx, top + row_h - style.pad_px - base)
        cv2.putText(
            img, text, origin, _FONT, style.font_scale, (255, 255, 255), style.text_px, cv2.LINE_AA
        )
