"""Sane ranges for numbers that come from outside (requests, command lines, stored designs).

One table, used by the pydantic schemas of the server and the web API, by the Typer option
callbacks of the CLI and by the design geometry, so that a value accepted at one edge is
accepted at every other. Pure Python; no imports beyond the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SQL_BIGINT_MAX = 2**63 - 1  # ids and offsets beyond this cannot reach any database


@dataclass(frozen=True)
class Range:
    """A closed interval ``[lo, hi]`` of finite numbers with a unit for messages."""

    lo: float
    hi: float
    unit: str = ""

    def describe(self) -> str:
        """``"0.001..100 µm"``: the range as a message shows it."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.lo:g}..{self.hi:g}{unit}"

    def check(self, value: float, name: str) -> float:
        """``value`` as a float if finite and inside the range.

        Raises
        ------
        ValueError
            With a message that names ``name`` and the range.
        """
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not self.lo <= v <= self.hi:
            raise ValueError(f"{name} must lie in {self.describe()}, got {v:g}")
        return v


UM_PER_PX = Range(1e-3, 100.0, "µm/px")  # 1 nm to 100 µm per pixel on the sample
OXIDE_NM = Range(1.0, 5000.0, "nm")  # SiO2 thickness
POSITION_UM = Range(-1e6, 1e6, "µm")  # design/stage coordinates: ±1 m is far beyond any chip
ANGLE_DEG = Range(-3600.0, 3600.0, "°")  # rotations (ten turns either way)
CHIP_SIZE_MM = Range(0.01, 300.0, "mm")  # a simulated chip's side
AREA_UM2 = Range(0.0, 1e12, "µm²")  # flake areas in filters
FRACTION = Range(0.0, 1.0)  # confidences, overlaps
