"""Images built in memory for the memory-budget tests (no binary files shipped)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SUBSTRATE_RGB = (150, 120, 160)


def encode(image: np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    """``image`` encoded by PIL as ``fmt``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **options)
    return buf.getvalue()


def many_scan_jpeg(width: int, height: int, extra_scans: int) -> bytes:
    """A valid progressive JPEG of a flat colour followed by ``extra_scans`` empty scans.

    Each extra scan is a DC successive-approximation refinement over all three components
    with no entropy-coded bytes: decoders accept it and walk every block of the image for it,
    so decoding time grows with ``extra_scans`` x pixels while the file grows by 14 bytes a
    scan (the attack of a few hundred KB that takes tens of seconds to decode).
    """
    flat = np.full((height, width, 3), SUBSTRATE_RGB, np.uint8)
    data = encode(flat, "JPEG", progressive=True, quality=80)
    assert data.endswith(b"\xff\xd9")
    components = bytes([1, 0x00, 2, 0x00, 3, 0x00])  # component id, (no) Huffman tables
    sos = b"\xff\xda" + (6 + len(components)).to_bytes(2, "big") + bytes([3]) + components
    refine_dc = sos + bytes([0, 0, 0x10])  # Ss = Se = 0, Ah = 1, Al = 0
    return data[:-2] + refine_dc * extra_scans + b"\xff\xd9"


def with_app_segment(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP15 segment holding ``payload`` right after its SOI marker."""
    segment = b"\xff\xef" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]
