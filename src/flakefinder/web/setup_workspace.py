"""The Setup page's server-side state: uploaded images, marked regions, the last calibration.

A :class:`Workspace` lives in memory only (a calibration session of one person; nothing is
written to disk until the profile is downloaded). :class:`Workspaces` keeps at most a few of them
and drops the least recently used; every limit below is checked before anything is stored.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.errors import CalibrationError

if TYPE_CHECKING:
    from flakefinder.calibration import CalibrationReport

MAX_WORKSPACES = 4
MAX_IMAGES = 12
MAX_REGIONS = 300


@dataclass(frozen=True)
class MarkedRegion:
    """One region a person marked: which image, its mask, and how it was made."""

    id: int
    image_index: int
    mask: np.ndarray = field(repr=False)
    how: str  # "click" or "outline"

    @property
    def area_px(self) -> int:
        """Number of pixels in the mask."""
        return int(self.mask.sum())


@dataclass
class Workspace:
    """Images (same size, RGB uint8), regions by id, and the last calibration report."""

    id: str
    images: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    regions: dict[int, MarkedRegion] = field(default_factory=dict)
    report: CalibrationReport | None = None
    report_region_ids: tuple[int, ...] = ()  # the regions the report's region_layers belong to
    report_skipped: tuple[int, ...] = ()  # regions left out of it (no layer number given)
    next_region_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_image(self, image: np.ndarray, name: str) -> int:
        """Store ``image``; its index. CalibrationError when full or of another size."""
        if len(self.images) >= MAX_IMAGES:
            raise CalibrationError(f"a setup session holds at most {MAX_IMAGES} images")
        if self.images and image.shape != self.images[0].shape:
            h0, w0 = self.images[0].shape[:2]
            raise CalibrationError(
                f"{name}: {image.shape[1]}x{image.shape[0]} px, but the first image is "
                f"{w0}x{h0} px: one calibration takes images of one camera setup"
            )
        self.images.append(image)
        self.names.append(name)
        return len(self.images) - 1

    def image(self, index: int) -> np.ndarray:
        """The image at ``index``; KeyError when there is none."""
        if not 0 <= index < len(self.images):
            raise KeyError(f"no image {index} in this setup session")
        return self.images[index]

    def add_region(self, image_index: int, mask: np.ndarray, how: str) -> MarkedRegion:
        """Store a region; CalibrationError when the session holds too many."""
        if len(self.regions) >= MAX_REGIONS:
            raise CalibrationError(f"a setup session holds at most {MAX_REGIONS} regions")
        region = MarkedRegion(self.next_region_id, image_index, mask, how)
        self.regions[region.id] = region
        self.next_region_id += 1
        return region


class Workspaces:
    """At most ``capacity`` workspaces, least recently used dropped first. Thread-safe."""

    def __init__(self, capacity: int = MAX_WORKSPACES) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Workspace] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Workspace:
        """A new, empty workspace (dropping the least recently used one when full)."""
        ws = Workspace(secrets.token_urlsafe(12))
        with self._lock:
            while len(self._items) >= self.capacity:
                self._items.popitem(last=False)
            self._items[ws.id] = ws
        return ws

    def get(self, workspace_id: str) -> Workspace:
        """The workspace ``workspace_id``; KeyError when unknown or dropped."""
        with self._lock:
            ws = self._items.get(workspace_id)
            if ws is None:
                raise KeyError(
                    "unknown or expired setup session (only the last few are kept): start again"
                )
            self._items.move_to_end(workspace_id)
            return ws
