"""Decoding on a pixel budget (issue 14, memory and time): working size, conversions without
full-size float copies, the JPEG scan cap, and what a decode holds (numpy allocations traced)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from flakefinder.errors import ImageError
from flakefinder.imaging import (
    ImageLimits,
    decode_image,
    jpeg_scans,
    read_header,
    to_rgb8,
    working_size,
)
from image_helpers import SUBSTRATE_RGB, encode, many_scan_jpeg, with_app_segment


def _traced_peak(fn: object, *args: object, **kwargs: object) -> tuple[object, int]:
    """(result, peak bytes of Python/numpy allocations while ``fn`` ran a second time: the
    first run does the imports and caches, which are not what is measured)."""
    fn(*args, **kwargs)  # type: ignore[operator]
    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)  # type: ignore[operator]
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_working_size_keeps_the_aspect_within_the_budget() -> None:
    assert working_size(7000, 7000, None) == (7000, 7000)
    assert working_size(1920, 1200, 8 * 2**20) == (1920, 1200)  # small enough: untouched
    assert working_size(7000, 7000, 8 * 2**20) == (2896, 2896)
    assert working_size(400, 100, 100 * 25) == (100, 25)
    for w, h, budget in ((7001, 13, 4096), (50_000, 1_000, 4_194_304), (1, 10**7, 4096)):
        tw, th = working_size(w, h, budget)
        assert tw * th <= budget and tw >= 1 and th >= 1


def test_to_rgb8_rules_hold_without_float_copies() -> None:
    grey12 = np.array([[0, 4095], [2048, 100]], np.uint16)
    assert to_rgb8(grey12)[:, :, 0].tolist() == [[0, 255], [128, 6]]  # 12-bit camera data
    full16 = np.array([[0, 65535], [32768, 257]], np.uint16)
    assert to_rgb8(full16)[:, :, 1].tolist() == [[0, 255], [128, 1]]
    assert to_rgb8(np.array([[0.5, 1.0]], np.float32))[0, :, 2].tolist() == [128, 255]
    assert to_rgb8(np.array([[7, 300]], np.int64))[0, :, 0].tolist() == [0, 19]  # of 4095
    assert to_rgb8(np.array([[7, 70000]], np.int64))[0, :, 0].tolist() == [0, 255]  # clipped
    with pytest.raises(ImageError, match="negative"):
        to_rgb8(np.array([[-1, 5]], np.int32))
    with pytest.raises(ImageError, match="NaN"):
        to_rgb8(np.array([[np.nan, 1.0]]))
    # a 16-bit 2000 x 2000 grey image: the old float64 route held 3 x 8 bytes per pixel
    big = np.random.default_rng(0).integers(0, 4096, (2000, 2000), dtype=np.uint16)
    out, peak = _traced_peak(to_rgb8, big)
    assert isinstance(out, np.ndarray) and out.shape == (2000, 2000, 3)
    assert peak < 2000 * 2000 * 5  # the uint8 result (1 + 3 bytes/px) and small slices


def _flake_image(n: int) -> np.ndarray:
    image = np.full((n, n, 3), SUBSTRATE_RGB, np.uint8)
    image[n // 4 : n // 2, n // 4 : n // 2] = (40, 40, 40)
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "PNG16"])
def test_large_images_decode_straight_to_the_working_size(fmt: str) -> None:
    image = _flake_image(800)
    if fmt == "TIFF":
        import io

        buf = io.BytesIO()
        tifffile.imwrite(buf, image)
        data = buf.getvalue()
    elif fmt == "PNG16":
        data = encode(image[:, :, 0].astype(np.uint16) * 16)
    else:
        data = encode(image, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    header = read_header(data)
    assert (header.width_px, header.height_px) == (800, 800)
    budget = 200 * 200
    small, peak = _traced_peak(decode_image, data, max_pixels=budget)
    assert isinstance(small, np.ndarray) and small.shape == (200, 200, 3)
    # the dark square, area-averaged by 4: 50..100 in working pixels
    dark = small[:, :, 0] < 100
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (50, 99, 50, 99)
    # numpy never held a full-size RGB copy of an 8-bit image (PIL shrinks it first)
    if fmt in ("PNG", "JPEG", "BMP"):
        assert peak < 800 * 800
    assert peak <= header.decode_peak_bytes(budget)
    assert decode_image(data).shape == (800, 800, 3)  # without a budget: full size


def test_jpeg_draft_decodes_at_a_fraction_of_the_size() -> None:
    data = encode(_flake_image(1600), "JPEG", quality=90)
    header = read_header(data)
    assert header.format == "JPEG" and header.jpeg_scans == 1
    full = header.decode_peak_bytes(None)
    eighth = header.decode_peak_bytes(200 * 200)  # 1/8 DCT scale: 200 x 200 straight away
    assert eighth * 20 < full
    assert decode_image(data, max_pixels=200 * 200).shape == (200, 200, 3)


def test_scans_are_counted_in_the_byte_stream() -> None:
    image = _flake_image(64)
    assert jpeg_scans(encode(image, "JPEG")) == 1
    progressive = encode(image, "JPEG", progressive=True)
    assert 2 <= jpeg_scans(progressive) <= 12
    # scan markers inside a segment's payload (an embedded thumbnail, say) are not scans
    hidden = with_app_segment(progressive, b"\xff\xda" * 500)
    assert jpeg_scans(hidden) == jpeg_scans(progressive)
    assert decode_image(hidden).shape == (64, 64, 3)
    assert jpeg_scans(many_scan_jpeg(64, 64, 300)) == jpeg_scans(progressive) + 300


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding() -> None:
    bomb = many_scan_jpeg(2000, 2000, 3000)
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match=r"JPEG of 30\d\d scans, over the limit of 100"):
        read_header(bomb, what="bomb.jpg")
    with pytest.raises(ImageError, match="scans"):
        decode_image(bomb, what="bomb.jpg")
    # at the limit it still decodes (a real progressive JPEG has about ten scans)
    ok = many_scan_jpeg(64, 64, 80)
    assert decode_image(ok).shape == (64, 64, 3)
    strict = ImageLimits(max_jpeg_scans=20)
    with pytest.raises(ImageError, match="over the limit of 20"):
        decode_image(ok, limits=strict)


def test_header_limits_still_come_first() -> None:
    small = ImageLimits(max_pixels=64 * 64)
    data = encode(_flake_image(100))
    with pytest.raises(ImageError, match="100x100 px exceeds the limit of 4,096 pixels"):
        read_header(data, limits=small)
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(data, limits=small, max_pixels=32 * 32)  # shrinking does not bypass it
    with pytest.raises(ImageError, match="not a PNG, JPEG, TIFF or BMP"):
        read_header(b"GIF89a" + b"\0" * 40)
