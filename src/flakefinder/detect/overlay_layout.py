"""Where overlay labels go: beside their flake, never on another label, never on a flake.

Pure geometry (numpy and OpenCV). :func:`place_labels` places one label per flake greedily, in the
order given (most wanted first): for each flake it tries its label texts from the longest to the
shortest, each at candidate positions around the flake's bounding box at growing distances, and
takes the first rectangle that lies inside the image, touches no placed label or leader line (nor
a reserved area such as the legend) and covers no flake pixel (flake masks grown by a small
clearance). Places on plain substrate whose leader line crosses no label and no other flake come
first. When no such place exists it accepts the shortest text where it covers at most
``max_cover`` of any flake's mask; failing that the flake keeps its outline and gets no label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

Rect = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels, end exclusive."""

# distances of the label from the box, in label heights: near first, far only for short texts
_NEAR = (0.4, 1.5)
_FAR = (3.0, 5.0, 8.0)
_SIDES = ("right", "left", "above", "below", "above-right", "above-left", "below-right",
          "below-left")  # fmt: skip


@dataclass(frozen=True)
class LabelRequest:
    """One flake that wants a label.

    Parameters
    ----------
    index
        The flake's index (into the ``owner`` map: pixels of flake ``i`` hold ``i + 1``).
    box
        Its bounding box ``(x0, y0, x1, y1)`` in pixels.
    texts
        Label texts to try, longest first (the last is the shortest, e.g. just the layer number).
    outline
        Points ``(x, y)`` on the flake's outline; the leader line ends at the one nearest the label.
    """

    index: int
    box: tuple[float, float, float, float]
    texts: tuple[str, ...]
    outline: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PlacedLabel:
    """A label rectangle, its text and the point of its flake that its leader line reaches."""

    index: int
    text: str
    rect: Rect
    anchor: tuple[int, int]


def rects_overlap(a: Rect, b: Rect) -> bool:
    """Whether two end-exclusive rectangles share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates(box: tuple[float, float, float, float], w: int, h: int, gap: float) -> list[Rect]:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    spots = {
        "right": (x1 + gap, cy - h / 2),
        "left": (x0 - gap - w, cy - h / 2),
        "above": (cx - w / 2, y0 - gap - h),
        "below": (cx - w / 2, y1 + gap),
        "above-right": (x1 + gap, y0 - gap - h),
        "above-left": (x0 - gap - w, y0 - gap - h),
        "below-right": (x1 + gap, y1 + gap),
        "below-left": (x0 - gap - w, y1 + gap),
    }
    out = []
    for side in _SIDES:
        lx, ly = spots[side]
        rx, ry = round(lx), round(ly)
        out.append((rx, ry, rx + w, ry + h))
    return out


def _nearest(
    points: Sequence[tuple[float, float]], rect: Rect, box: tuple[float, ...]
) -> tuple[int, int]:
    cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    if not points:
        return round((box[0] + box[2]) / 2), round((box[1] + box[3]) / 2)
    p = np.asarray(points, dtype=np.float64)
    i = int(np.argmin((p[:, 0] - cx) ** 2 + (p[:, 1] - cy) ** 2))
    return round(float(p[i, 0])), round(float(p[i, 1]))


def leader_start(rect: Rect, anchor: tuple[int, int]) -> tuple[int, int]:
    """The point of ``rect`` nearest ``anchor``: where the leader line leaves the label."""
    ax, ay = anchor
    return min(max(ax, rect[0]), rect[2] - 1), min(max(ay, rect[1]), rect[3] - 1)


def _leader_points(rect: Rect, anchor: tuple[int, int]) -> np.ndarray:
    """Integer points every pixel along the leader line, without its two ends."""
    (x0, y0), (x1, y1) = leader_start(rect, anchor), anchor
    n = max(abs(x1 - x0), abs(y1 - y0))
    if n < 2:
        return np.zeros((0, 2), dtype=np.intp)
    t = np.arange(1, n) / n
    return np.stack([np.rint(x0 + t * (x1 - x0)), np.rint(y0 + t * (y1 - y0))], axis=1).astype(
        np.intp
    )


def _any_inside(pts: np.ndarray, r: Rect, grow: int) -> bool:
    x, y = pts[:, 0], pts[:, 1]
    inside = (x >= r[0] - grow) & (x < r[2] + grow) & (y >= r[1] - grow) & (y < r[3] + grow)
    return bool(inside.any())


def _integral(m: np.ndarray) -> np.ndarray:
    """Summed-area table of a bool map, ``(H + 1, W + 1)``."""
    return np.asarray(cv2.integral(m.astype(np.uint8), sdepth=cv2.CV_32S))


def _count(s: np.ndarray, r: Rect) -> int:
    """How many set pixels of the integral image ``s`` lie in ``r`` (inside the image)."""
    return int(s[r[3], r[2]] - s[r[1], r[2]] - s[r[3], r[0]] + s[r[1], r[0]])


class _Board:
    """The image's free space: flake pixels (grown by a clearance) and placed rectangles."""

    def __init__(
        self,
        owner: np.ndarray,
        clearance_px: int,
        reserved: Sequence[Rect],
        busy: np.ndarray | None,
        spacing_px: int,
    ) -> None:
        self.owner = owner
        self.spacing = spacing_px
        self.busy_sum = None if busy is None else _integral(np.asarray(busy, dtype=bool))
        self.h, self.w = owner.shape
        flakes = owner > 0
        if clearance_px > 0 and flakes.any():
            k = 2 * clearance_px + 1
            flakes = cv2.dilate(flakes.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        self.flakes_sum = _integral(flakes)
        self.area = np.bincount(owner.ravel(), minlength=int(owner.max()) + 1)
        self.placed: list[Rect] = list(reserved)
        self._leaders: list[np.ndarray] = []  # sample points (x, y) of the placed leader lines

    def add(self, r: Rect, anchor: tuple[int, int]) -> None:
        self.placed.append(r)
        self._leaders.append(_leader_points(r, anchor))

    def crosses_leaders(self, r: Rect) -> bool:
        """Whether ``r`` lies on a placed leader line."""
        return bool(self._leaders) and _any_inside(np.concatenate(self._leaders), r, self.spacing)

    def clean_leader(self, r: Rect, anchor: tuple[int, int], index: int) -> bool:
        """Whether the leader line from ``r`` to ``anchor`` on flake ``index`` crosses no placed
        label and no other flake."""
        line = _leader_points(r, anchor)
        if line.size == 0:
            return True
        if any(_any_inside(line, p, self.spacing) for p in self.placed):
            return False
        xs = np.clip(line[:, 0], 0, self.w - 1)
        ys = np.clip(line[:, 1], 0, self.h - 1)
        ids = self.owner[ys, xs]
        return bool(np.all((ids == 0) | (ids == index + 1)))

    def inside(self, r: Rect) -> bool:
        return r[0] >= 0 and r[1] >= 0 and r[2] <= self.w and r[3] <= self.h

    def free_of_labels(self, r: Rect) -> bool:
        g = self.spacing
        grown = (r[0] - g, r[1] - g, r[2] + g, r[3] + g)
        return not any(rects_overlap(grown, p) for p in self.placed)

    def quiet(self, r: Rect, max_busy: float) -> bool:
        """Whether at most ``max_busy`` of ``r`` lies on busy image (not plain substrate)."""
        if self.busy_sum is None:
            return True
        return _count(self.busy_sum, r) <= max_busy * (r[2] - r[0]) * (r[3] - r[1])

    def touches_flakes(self, r: Rect) -> bool:
        return _count(self.flakes_sum, r) > 0

    def worst_cover(self, r: Rect) -> float:
        """Largest fraction of any one flake's mask that ``r`` covers."""
        ids = self.owner[r[1] : r[3], r[0] : r[2]].ravel()
        counts = np.bincount(ids, minlength=self.area.size)[1:]
        if not counts.any():
            return 0.0
        return float(np.max(counts / np.maximum(self.area[1:], 1)))


def place_labels(
    requests: Sequence[LabelRequest],
    owner: np.ndarray,
    measure: Callable[[str], tuple[int, int]],
    *,
    clearance_px: int = 2,
    reserved: Sequence[Rect] = (),
    max_cover: float = 0.02,
    busy: np.ndarray | None = None,
    max_busy: float = 0.05,
    spacing_px: int = 2,
) -> list[PlacedLabel]:
    """Place the labels of ``requests`` greedily, in their order (see the module text).

    Parameters
    ----------
    requests
        The flakes that want labels, most wanted first.
    owner
        ``(H, W)`` integer map: 0 where no flake is, ``i + 1`` on flake ``i``'s pixels.
    measure
        ``measure(text) -> (width_px, height_px)`` of the label's whole rectangle.
    clearance_px
        How far a label keeps from every flake's pixels.
    reserved
        Rectangles no label may touch (the legend).
    max_cover
        Fallback: the largest fraction of any flake's mask the shortest label may cover.
    busy
        ``(H, W)`` bool map of what is not plain substrate (undetected bulk, dust); at equal
        distance a place with at most ``max_busy`` of it is preferred.
    max_busy
        See ``busy``.
    spacing_px
        Smallest gap between two labels.

    Returns
    -------
    list[PlacedLabel]
        One per flake that got a label; their rectangles never overlap.
    """
    board = _Board(np.asarray(owner), clearance_px, reserved, busy, spacing_px)
    placed: list[PlacedLabel] = []
    for req in requests:
        lab = _place_one(board, req, measure, max_cover, max_busy)
        if lab is not None:
            board.add(lab.rect, lab.anchor)
            placed.append(lab)
    return placed


def _place_one(
    board: _Board,
    req: LabelRequest,
    measure: Callable[[str], tuple[int, int]],
    max_cover: float,
    max_busy: float,
) -> PlacedLabel | None:
    if not req.texts:
        return None
    shortest = req.texts[-1]
    # (text, distances, level): "quiet" = on plain substrate with a clean leader line; "clean" =
    # a leader line that crosses no label and no other flake; "loose" = only the hard rules
    tries = [
        (text, _NEAR + _FAR if text == shortest else _NEAR, level)
        for text in req.texts
        for level in ("quiet", "clean")
    ]
    tries.append((shortest, _NEAR + _FAR, "loose"))
    for text, rings, level in tries:
        w, h = measure(text)
        for ring in rings:
            for r in _candidates(req.box, w, h, ring * h):
                if (
                    not board.inside(r)
                    or not board.free_of_labels(r)
                    or board.touches_flakes(r)
                    or board.crosses_leaders(r)
                ):
                    continue
                anchor = _nearest(req.outline, r, req.box)
                if level != "loose" and not board.clean_leader(r, anchor, req.index):
                    continue
                if level == "quiet" and not board.quiet(r, max_busy):
                    continue
                return PlacedLabel(req.index, text, r, anchor)
    # crowded: the shortest text where it hides at most max_cover of any flake
    w, h = measure(shortest)
    best: tuple[float, Rect] | None = None
    for ring in _NEAR + _FAR:
        for r in _candidates(req.box, w, h, ring * h):
            if board.inside(r) and board.free_of_labels(r) and not board.crosses_leaders(r):
                cover = board.worst_cover(r)
                if cover <= max_cover and (best is None or cover < best[0]):
                    best = (cover, r)
    if best is None:
        return None
    return PlacedLabel(req.index, shortest, best[1], _nearest(req.outline, best[1], req.box))
