"""Uploaded images on a pixel budget: header first, memory reserved, decoded to a working size.

What detection needs is a working image of at most ``max_work_pixels`` pixels (the server's
``--max-work-megapixels``): a larger upload is shrunk to it while decoding (a JPEG decoded at
1/2, 1/4 or 1/8 scale by its DCT, other formats area-averaged right after the decoder), and
everything downstream (the detector, the Setup page's region growing and calibration) works
on that image. Its pixel size is the upload's times the shrink factor, so detectors that
filter by area in µm² see the same physical sizes; detections come back in the upload's own
pixel coordinates (:meth:`WorkImage.to_original`), so a client sees no difference except in
memory (and in detail finer than one working pixel).

:class:`ImageIntake` bundles the header limits, the working size and the
:class:`~flakefinder.membudget.MemoryBudget` that every decode is reserved from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flakefinder.errors import ImageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from flakefinder.domain import Detection, ImagingContext
    from flakefinder.image_header import ImageHeader, ImageLimits
    from flakefinder.membudget import MemoryBudget, Reservation

MIN_SIDE_PX = 8  # smaller images (or working images) carry no flake worth finding


@dataclass(frozen=True, eq=False)
class WorkImage:
    """The pixels detection works on, and the size of the upload they came from."""

    pixels: np.ndarray  # (h, w, 3) uint8, at most max_work_pixels
    width_px: int  # the upload's size
    height_px: int

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Upload pixels per working pixel along x and y (1.0 when not shrunk)."""
        return self.width_px / self.pixels.shape[1], self.height_px / self.pixels.shape[0]

    @property
    def shrunk(self) -> bool:
        """Whether the working image is smaller than the upload."""
        return self.pixels.shape[:2] != (self.height_px, self.width_px)

    def context(self, context: ImagingContext) -> ImagingContext:
        """``context`` with the working image's pixel size (µm per working pixel)."""
        if not self.shrunk:
            return context
        sx, sy = self.scale_xy
        return dataclasses.replace(context, um_per_px=context.um_per_px * math.sqrt(sx * sy))

    def to_original(self, detections: Sequence[Detection]) -> list[Detection]:
        """``detections`` on the working image in the upload's pixel coordinates (see
        :func:`scale_detection`)."""
        if not self.shrunk:
            return list(detections)
        sx, sy = self.scale_xy
        return [scale_detection(d, sx, sy) for d in detections]

    def point_to_work(self, x_px: float, y_px: float) -> tuple[int, int]:
        """The working pixel that holds upload pixel (``x_px``, ``y_px``)."""
        sx, sy = self.scale_xy
        w, h = self.pixels.shape[1], self.pixels.shape[0]
        return min(w - 1, int(x_px / sx)), min(h - 1, int(y_px / sy))


def scale_detection(d: Detection, sx: float, sy: float) -> Detection:
    """``d`` with its coordinates multiplied by (``sx``, ``sy``) and its area by ``sx * sy``.

    Pixel edges map to pixel edges (working pixel ``j`` covers upload pixels ``j * sx`` to
    ``(j + 1) * sx``). The mask is dropped: a full-size mask is exactly what the budget avoids.
    """
    return dataclasses.replace(
        d,
        polygon_px=tuple((x * sx, y * sy) for x, y in d.polygon_px),
        bbox_px=(d.bbox_px[0] * sx, d.bbox_px[1] * sy, d.bbox_px[2] * sx, d.bbox_px[3] * sy),
        area_px=d.area_px * sx * sy,
        mask=None,
    )


@dataclass(frozen=True)
class ImageIntake:
    """Header limits, working size and memory budget of one server (shared by its routes)."""

    limits: ImageLimits
    max_work_pixels: int | None
    memory: MemoryBudget

    def header(self, data: bytes, what: str) -> ImageHeader:
        """The checked header of ``data`` (ImageError for no image, or one over the limits)."""
        from flakefinder.imaging import read_header

        header = read_header(data, what=what, limits=self.limits)
        if min(header.width_px, header.height_px) < MIN_SIDE_PX:
            raise ImageError(
                f"{what}: image of {header.width_px}x{header.height_px} px is too small"
            )
        return header

    def decode_bytes(self, header: ImageHeader) -> int:
        """What to reserve before decoding ``header``'s image."""
        return header.decode_peak_bytes(self.max_work_pixels)

    async def reserve(self, header: ImageHeader, what: str) -> Reservation:
        """Reserve the decode of ``header``'s image (waits its turn; 413/429 errors)."""
        return await self.memory.reserve(self.decode_bytes(header), what)

    def decode(self, data: bytes, header: ImageHeader, what: str) -> WorkImage:
        """Decode ``data`` to its working image (blocking; run it in a worker thread)."""
        from flakefinder.imaging import decode_image

        pixels = decode_image(data, what=what, limits=self.limits, max_pixels=self.max_work_pixels)
        if min(pixels.shape[:2]) < MIN_SIDE_PX:
            raise ImageError(
                f"{what}: image of {header.width_px}x{header.height_px} px is too thin to shrink"
                f" to {self.max_work_pixels:,} pixels"
            )
        return WorkImage(pixels, header.width_px, header.height_px)
