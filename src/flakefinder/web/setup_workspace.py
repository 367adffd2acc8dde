"""The Setup page's server-side state: uploaded images, marked regions, the last calibration.

A :class:`Workspace` lives in memory only (a calibration session of one person; nothing is
written to disk until the profile is downloaded). :class:`Workspaces` keeps at most a few of them
and drops the least recently used; every limit below is checked before anything is stored.

Memory is capped in bytes, not only in counts: a session holds its images at their working
size (:class:`~flakefinder.intake.WorkImage`, at most the server's working pixels) and each
region as a run-length encoded crop of its bounding box (a few hundred bytes for a flake, not a
full-size mask), and refuses an image or region that would take it over ``max_bytes``.
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
    from flakefinder.calibration.regions import MaskCrop
    from flakefinder.intake import WorkImage

MAX_WORKSPACES = 4
MAX_IMAGES = 12
MAX_REGIONS = 300
MAX_SESSION_BYTES = 64 * 2**20
REGION_OVERHEAD_BYTES = 512  # the region object, its id and its place in the dict
MIB = 2**20


@dataclass(frozen=True)
class MarkedRegion:
    """One region a person marked: which image, where (working-image pixels), and how.

    The mask is its bounding box's crop, stored as a COCO run-length string (column-major).
    """

    id: int
    image_index: int
    offset_yx: tuple[int, int]
    shape_hw: tuple[int, int]
    rle: str = field(repr=False)
    area_px: int  # working-image pixels
    how: str  # "click" or "outline"

    @classmethod
    def from_crop(cls, region_id: int, image_index: int, crop: MaskCrop, how: str) -> MarkedRegion:
        """Encode ``crop``."""
        from flakefinder.coco import encode_rle

        rle = encode_rle(crop.mask)["counts"]
        h, w = crop.mask.shape
        return cls(region_id, image_index, crop.offset_yx, (h, w), rle, crop.area_px, how)

    def mask(self) -> np.ndarray:
        """The crop (``shape_hw`` booleans) at ``offset_yx`` of the working image."""
        from flakefinder.coco import decode_segmentation

        h, w = self.shape_hw
        return decode_segmentation({"size": [h, w], "counts": self.rle}, h, w)

    @property
    def nbytes(self) -> int:
        """Memory this region holds (its run-length string and a fixed overhead)."""
        return len(self.rle) + REGION_OVERHEAD_BYTES


@dataclass
class Workspace:
    """Images (working size, RGB uint8), regions by id, and the last calibration report."""

    id: str
    max_bytes: int = MAX_SESSION_BYTES
    images: list[WorkImage] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    regions: dict[int, MarkedRegion] = field(default_factory=dict)
    report: CalibrationReport | None = None
    report_region_ids: tuple[int, ...] = ()  # the regions the report's region_layers belong to
    report_skipped: tuple[int, ...] = ()  # regions left out of it (no layer number given)
    next_region_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def nbytes(self) -> int:
        """Memory held by the session's images and regions."""
        return sum(im.pixels.nbytes for im in self.images) + sum(
            r.nbytes for r in self.regions.values()
        )

    def _check_room(self, n_bytes: int, what: str) -> None:
        if self.nbytes + n_bytes > self.max_bytes:
            raise CalibrationError(
                f"{what} needs {n_bytes / MIB:.1f} MiB; this setup session holds"
                f" {self.nbytes / MIB:.1f} of its {self.max_bytes / MIB:.1f} MiB: remove"
                " something first, or calibrate from fewer images"
            )

    def add_image(self, image: WorkImage, name: str) -> int:
        """Store ``image``; its index. CalibrationError when full or of another size."""
        if len(self.images) >= MAX_IMAGES:
            raise CalibrationError(f"a setup session holds at most {MAX_IMAGES} images")
        if self.images:
            first = self.images[0]
            if (image.width_px, image.height_px) != (first.width_px, first.height_px):
                raise CalibrationError(
                    f"{name}: {image.width_px}x{image.height_px} px, but the first image is "
                    f"{first.width_px}x{first.height_px} px: one calibration takes images of"
                    " one camera setup"
                )
        self._check_room(image.pixels.nbytes, name)
        self.images.append(image)
        self.names.append(name)
        return len(self.images) - 1

    def image(self, index: int) -> WorkImage:
        """The image at ``index``; KeyError when there is none."""
        if not 0 <= index < len(self.images):
            raise KeyError(f"no image {index} in this setup session")
        return self.images[index]

    def add_region(self, image_index: int, crop: MaskCrop, how: str) -> MarkedRegion:
        """Store a region; CalibrationError when the session holds too many (or too much)."""
        if len(self.regions) >= MAX_REGIONS:
            raise CalibrationError(f"a setup session holds at most {MAX_REGIONS} regions")
        region = MarkedRegion.from_crop(self.next_region_id, image_index, crop, how)
        self._check_room(region.nbytes, "the region")
        self.regions[region.id] = region
        self.next_region_id += 1
        return region


class Workspaces:
    """At most ``capacity`` workspaces, least recently used dropped first. Thread-safe."""

    def __init__(
        self, capacity: int = MAX_WORKSPACES, *, max_session_bytes: int = MAX_SESSION_BYTES
    ) -> None:
        self.capacity = capacity
        self.max_session_bytes = max_session_bytes
        self._items: OrderedDict[str, Workspace] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Workspace:
        """A new, empty workspace (dropping the least recently used one when full)."""
        ws = Workspace(secrets.token_urlsafe(12), max_bytes=self.max_session_bytes)
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
