"""Throughput of one pass (overview, search, revisit): where the time went, and what a
1 cm² chip would take at that objective.

The seed paper searched 1 cm² at 50x in about an hour (Masubuchi et al. 2020, ~1 frame/s).
:attr:`PassReport.hours_per_cm2` is the measured wall time per frame of the pass times the
number of frames that cover 1 cm² at the pass's field of view and tile overlap; for a revisit
pass a frame is one flake's visit (move, autofocus, close-ups, detection), so it says what a
search with autofocus at every field would cost.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PASS_KINDS = ("overview", "search", "revisit")


@dataclass(frozen=True)
class PassReport:
    """Measured times of one pass (seconds; component times are busy times, which overlap
    in a search pass where capture runs beside detection)."""

    kind: str
    objective: str
    um_per_px: float
    fov_width_um: float
    fov_height_um: float
    overlap: float
    frames: int  # tiles (overview, search) or flakes visited (revisit)
    wall_s: float
    move_s: float = 0.0
    focus_s: float = 0.0
    capture_s: float = 0.0
    detect_s: float = 0.0  # detection, or the overview's image analysis
    store_s: float = 0.0
    images: int = 0  # camera frames stored (tiles, mosaic, close-ups)
    route_um: float | None = None  # revisit: travelled distance along the route
    naive_route_um: float | None = None  # revisit: the same flakes in stored order

    @property
    def tiles_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tiles_per_cm2(self) -> int:
        """Frames covering 1 cm² (10 x 10 mm) at this field of view and overlap."""
        step_x = self.fov_width_um * (1.0 - self.overlap)
        step_y = self.fov_height_um * (1.0 - self.overlap)
        if step_x <= 0 or step_y <= 0:
            return 0
        nx = 1 + max(0, math.ceil((10_000.0 - self.fov_width_um) / step_x - 1e-9))
        ny = 1 + max(0, math.ceil((10_000.0 - self.fov_height_um) / step_y - 1e-9))
        return nx * ny

    @property
    def hours_per_cm2(self) -> float:
        """Estimated hours for a 1 cm² chip at this objective, at this pass's time per frame."""
        if self.frames <= 0:
            return float("nan")
        return self.tiles_per_cm2 * self.wall_s / self.frames / 3600.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PassReport:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _ms(total_s: float, n: int) -> str:
    return f"{1000 * total_s / n:.0f}" if n > 0 else "-"


def pass_table(reports: Sequence[PassReport]) -> str:
    """A Markdown table of the passes: frames, tiles/s, time per frame in each step, and the
    estimated hours for 1 cm² at each pass's objective."""
    lines = [
        "| pass | objective | µm/px | frames | wall s | frames/s | move | focus | capture"
        " | detect | store | h per cm² |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        n = r.frames
        lines.append(
            f"| {r.kind} | {r.objective} | {r.um_per_px:g} | {n} | {r.wall_s:.1f} "
            f"| {r.tiles_per_s:.2f} | {_ms(r.move_s, n)} | {_ms(r.focus_s, n)} "
            f"| {_ms(r.capture_s, n)} | {_ms(r.detect_s, n)} | {_ms(r.store_s, n)} "
            f"| {r.hours_per_cm2:.2f} |"
        )
    lines.append("\nmove, focus, capture, detect, store: ms per frame (busy time).")
    routes = [r for r in reports if r.route_um is not None and r.naive_route_um is not None]
    for r in routes:
        assert r.route_um is not None and r.naive_route_um is not None
        saving = 1.0 - r.route_um / r.naive_route_um if r.naive_route_um > 0 else 0.0
        lines.append(
            f"{r.kind} route: {r.route_um / 1000:.2f} mm travelled vs {r.naive_route_um / 1000:.2f}"
            f" mm in stored order ({100 * saving:.0f}% shorter)"
        )
    return "\n".join(lines)
