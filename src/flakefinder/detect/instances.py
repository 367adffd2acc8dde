"""Instance masks of a segmenting network, before classification (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, eq=False)
class Segment:
    """One instance mask of the network, before classification."""

    mask: np.ndarray  # bool (H, W)
    bbox_px: tuple[float, float, float, float]
    score: float
