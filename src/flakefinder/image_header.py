"""What an image file declares, checked before any decoder runs: size limits, JPEG scans, the
working size detection uses, and the memory a decode will hold (no pixel is decoded here).

:mod:`flakefinder.imaging` (the one decoding helper) reads headers into :class:`ImageHeader`
and checks them with :class:`ImageLimits`; servers reserve
:meth:`ImageHeader.decode_peak_bytes` from their memory budget before decoding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from flakefinder.errors import ImageError

# PIL modes that imaging shrinks inside PIL (the rest go through numpy at full size first)
PIL_SHRINK_MODES = ("L", "RGB", "RGBA")
# a JPEG marker after entropy-coded data: 0xFF not followed by 0x00 (stuffing), a restart
# marker (0xD0-0xD7) or another 0xFF (fill)
_JPEG_MARKER_RE = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def working_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) of the image detection works on: the image itself when it has at most
    ``max_pixels`` pixels (or ``max_pixels`` is None), else the largest size of the same aspect
    ratio with at most ``max_pixels`` pixels (each side at least 1)."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    s = math.sqrt(max_pixels / (width * height))
    # (a hair over the exact product, so that 720 x 540 at 43,200 px is 240 x 180, not 239)
    w, h = max(1, math.floor(width * s + 1e-9)), max(1, math.floor(height * s + 1e-9))
    while w * h > max_pixels:  # floating-point edge: shrink the longer side
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


@dataclass(frozen=True)
class ImageLimits:
    """Largest image any decoder here accepts, checked from the header before decoding.

    ``max_pixels`` bounds width x height (per page of a TIFF); ``max_decoded_bytes`` bounds the
    memory of the decoded pixels (all pages and samples at their stored bit depth), so a small
    compressed file that declares a huge image (a decompression bomb) is refused unread.
    ``max_jpeg_scans`` bounds the scans of a JPEG, counted in the byte stream before decoding:
    every scan of a progressive JPEG walks all its blocks again, so a small file with
    thousands of (empty) scans would take tens of seconds to decode (ordinary progressive
    JPEGs have about ten).
    """

    max_pixels: int = 50_000_000
    max_decoded_bytes: int = 512 * 1024 * 1024
    max_jpeg_scans: int = 100

    def check(self, width: int, height: int, n_bytes: int, what: str) -> None:
        """Raise :class:`ImageError` if a declared ``width`` x ``height`` image is too big."""
        if width <= 0 or height <= 0:
            raise ImageError(f"{what}: the header declares an empty image ({width}x{height} px)")
        if width * height > self.max_pixels:
            raise ImageError(
                f"{what}: {width}x{height} px exceeds the limit of {self.max_pixels:,} pixels"
            )
        if n_bytes > self.max_decoded_bytes:
            raise ImageError(
                f"{what}: decoding would take {n_bytes / 2**20:.0f} MiB, over the limit of"
                f" {self.max_decoded_bytes / 2**20:.0f} MiB"
            )

    def check_scans(self, n_scans: int, what: str) -> None:
        """Raise :class:`ImageError` for a JPEG of more than ``max_jpeg_scans`` scans."""
        if n_scans > self.max_jpeg_scans:
            raise ImageError(
                f"{what}: JPEG of {n_scans} scans, over the limit of {self.max_jpeg_scans}"
                " (a progressive JPEG has about ten; this many would take very long to decode)"
            )


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares, read without decoding its pixels (:func:`read_header`).

    ``decoded_bytes`` is the size of its pixels at their stored depth (what
    :attr:`ImageLimits.max_decoded_bytes` bounds); :meth:`decode_peak_bytes` is an upper bound
    of the memory :func:`decode_image` holds at once, what a server reserves before decoding.
    """

    format: str  # "PNG", "JPEG", "BMP" or "TIFF"
    width_px: int
    height_px: int
    mode: str  # PIL mode; for TIFF the numpy dtype of the samples
    decoded_bytes: int
    jpeg_scans: int = 0
    progressive: bool = False

    def work_size(self, max_pixels: int | None) -> tuple[int, int]:
        """:func:`working_size` of this image."""
        return working_size(self.width_px, self.height_px, max_pixels)

    def decode_peak_bytes(self, max_pixels: int | None = None) -> int:
        """Most memory :func:`decode_image` (with ``max_pixels``) holds at once for this image:
        the decoder's full-size buffer, the copies made on the way and the result."""
        w, h = self.width_px, self.height_px
        full = w * h
        tw, th = self.work_size(max_pixels)
        out = tw * th * 3
        if self.format == "TIFF":  # tifffile's (or OpenCV's) array, uint8 channels, result
            return self.decoded_bytes + full * 3 + out * 2
        if self.format == "JPEG":  # DCT scaling decodes at 1/2, 1/4 or 1/8 when that suffices
            scale = _jpeg_draft_scale(w, h, tw, th)
            coefficients = (-(-w // 8) * 8) * (-(-h // 8) * 8) * 3 * 2 if self.progressive else 0
            w, h = -(-w // scale), -(-h // scale)
            return coefficients + _pil_peak(self.mode, w, h, tw, th)
        return _pil_peak(self.mode, w, h, tw, th)


def _pil_store_bytes(mode: str) -> int:
    """Bytes per pixel of PIL's own buffer for ``mode`` (multi-band modes use 4)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _numpy_bytes(mode: str) -> int:
    """Bytes per pixel of the numpy array imaging takes from PIL (other modes: RGB)."""
    return {"L": 1, "RGBA": 4, "I": 4, "F": 4}.get(mode, 2 if mode.startswith("I;16") else 3)


def _pil_peak(mode: str, w: int, h: int, tw: int, th: int) -> int:
    """Upper bound of imaging's memory for a ``w`` x ``h`` PIL decode shrunk to tw x th.

    PIL's buffer, numpy's copy of it (counted twice: PIL hands it over as bytes), the
    conversion to uint8 channels, the shrunk image and the RGB result.
    """
    store, arr = _pil_store_bytes(mode), _numpy_bytes(mode)
    full, small = w * h, tw * th
    if mode in PIL_SHRINK_MODES:
        if (tw, th) != (w, h):  # shrunk by PIL: its resize holds a tw x h intermediate
            return full * store + tw * h * store + small * (store + 2 * arr + 3 + 3)
        return full * (store + 2 * arr + 3)
    convert = 0 if mode in ("I", "F") or mode.startswith("I;16") else 4  # -> RGB in PIL
    channels = 1 if arr in (2, 4) and convert == 0 else 3
    return full * (store + convert + 2 * arr + channels) + small * (channels + 3)


def _jpeg_draft_scale(w: int, h: int, tw: int, th: int) -> int:
    """The DCT scale (1, 2, 4 or 8) PIL's draft mode picks to decode w x h at >= tw x th."""
    scale = 1
    for s in (2, 4, 8):
        if -(-w // s) >= tw and -(-h // s) >= th:
            scale = s
    return scale


def jpeg_scans(data: bytes) -> int:
    """Number of scans (SOS markers) of JPEG ``data``, found by walking its segments.

    Segment payloads (EXIF thumbnails, ICC profiles) are skipped by their length and
    entropy-coded data up to the next marker, so only the image's own scans are counted.
    """
    n, pos, size = 0, 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:  # garbage between segments: look for the next marker
            match = _JPEG_MARKER_RE.search(data, pos)
            if match is None:
                break
            pos = match.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            n += 1
            match = _JPEG_MARKER_RE.search(data, pos)
            if match is None:
                break
            pos = match.start()
    return n
