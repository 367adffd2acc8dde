"""Read and write micrographs as (H, W, 3) uint8 RGB arrays, with documented conversions.

Conversions applied by :func:`to_rgb8`:
* grey (H, W) or (H, W, 1) -> the grey value copied into R, G and B;
* RGBA (H, W, 4) -> alpha dropped (micrographs carry no transparency);
* 16-bit integers -> scaled by 255 / 65535 (full-range), or by the image maximum when the
  data only use the low 12 bits (``max <= 4095``), as 12-bit cameras store them;
* float images -> taken as 0..1 when their maximum is <= 1, else as 0..255; clipped.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flakefinder.errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def to_rgb8(array: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Convert a grey/RGB/RGBA array of integer or float type to (H, W, 3) uint8."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ImageError(
            f"{what}: expected a grey, RGB or RGBA image, got an array of shape {a.shape}"
        )
    a = a[:, :, :3]
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{what}: image is empty ({a.shape})")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return (a.astype(np.uint8) * 255).copy()
    if np.issubdtype(a.dtype, np.integer):
        hi = int(a.max()) if a.size else 0
        if a.min() < 0:
            raise ImageError(f"{what}: negative pixel values in an integer image")
        scale = 4095.0 if hi <= 4095 and a.dtype.itemsize >= 2 and hi > 255 else 65535.0
        if a.dtype.itemsize == 1:
            scale = 255.0
        return np.clip(np.rint(a.astype(np.float64) * (255.0 / scale)), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ImageError(f"{what}: image holds NaN or infinite values")
        scale = 255.0 if float(a.max()) <= 1.0 else 1.0
        return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    raise ImageError(f"{what}: unsupported pixel type {a.dtype}")


@dataclass(frozen=True)
class ImageLimits:
    """Largest image any decoder here accepts, checked from the header before decoding.

    ``max_pixels`` bounds width x height (per page of a TIFF); ``max_decoded_bytes`` bounds the
    memory of the decoded pixels (all pages and samples at their stored bit depth), so a small
    compressed file that declares a huge image (a decompression bomb) is refused unread.
    """

    max_pixels: int = 50_000_000
    max_decoded_bytes: int = 512 * 1024 * 1024

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


DEFAULT_LIMITS = ImageLimits()
_ADDRESS_RE = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")
# PIL formats accepted for non-TIFF data (anything else PIL could open is refused)
PIL_FORMATS = ("PNG", "JPEG", "BMP")
# bytes per pixel of PIL modes, as decoded
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3}


def _clean(exc: BaseException) -> str:
    """A decoder's error message without Python object reprs (memory addresses)."""
    text = _ADDRESS_RE.sub("the data", str(exc)).strip()
    return text or type(exc).__name__


def _read_tiff(data: bytes, what: str, limits: ImageLimits) -> np.ndarray:
    """Pixels of a TIFF's first series: tifffile, else OpenCV (compressed TIFFs, e.g. LZW as
    OpenCV and many cameras write them, need the optional imagecodecs package in tifffile).
    The header is read first and the size checked against ``limits`` before any decoding."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            shape = tuple(int(v) for v in series.shape)
            itemsize = np.dtype(series.dtype).itemsize
            page = tif.pages.first
            height, width = int(page.imagelength), int(page.imagewidth)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{what}: cannot read the TIFF header: {_clean(exc)}") from None
    limits.check(width, height, int(np.prod(shape, dtype=np.float64)) * itemsize, what)
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return np.asarray(tif.series[0].asarray())
    except Exception as exc:
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ImageError(f"{what}: cannot decode TIFF: {_clean(exc)}") from None
        if arr.ndim == 3 and arr.shape[2] in (3, 4):  # OpenCV gives BGR(A)
            arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
        return np.ascontiguousarray(arr)


def _pil_bytes_per_pixel(mode: str) -> int:
    if mode.startswith("I;16"):
        return 2
    if mode in ("I", "F"):
        return 8  # kept as 64-bit integers (I) for to_rgb8
    return max(3, _MODE_BYTES.get(mode, 4))  # other modes are converted to RGB


def _read_pil(source: Path | io.BytesIO, what: str, limits: ImageLimits) -> np.ndarray:
    """Pixels of a PNG/JPEG/BMP as PIL decodes them: 16- and 32-bit grey kept as integers
    (for :func:`to_rgb8` to scale), grey/RGB/RGBA as they are, other modes as RGB. The size
    in the header is checked against ``limits`` before the pixels are decoded."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(source, formats=PIL_FORMATS)
        except UnidentifiedImageError:
            raise ImageError(
                f"{what}: cannot decode image: not a PNG, JPEG, TIFF or BMP file"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{what}: {_clean(exc)}") from None
    with im:
        width, height = im.size
        limits.check(width, height, width * height * _pil_bytes_per_pixel(im.mode), what)
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
        if im.mode in ("RGB", "RGBA", "L"):
            return np.asarray(im)
        return np.asarray(im.convert("RGB"))


def _is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _decode(data: bytes, what: str, limits: ImageLimits) -> np.ndarray:
    if not data:
        raise ImageError(f"{what}: empty image data")
    try:
        if _is_tiff(data):
            arr = _read_tiff(data, what, limits)
        else:
            arr = _read_pil(io.BytesIO(data), what, limits)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{what}: not enough memory to decode the image") from None
    except Exception as exc:  # PIL, tifffile and OpenCV raise many types for corrupt data
        raise ImageError(f"{what}: cannot decode image: {_clean(exc)}") from None
    return to_rgb8(arr, what=what)


def load_image(path: str | Path, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read PNG/JPEG/TIFF/BMP at ``path`` as (H, W, 3) uint8 RGB; raise ImageError on failure.

    The format is taken from the file's content, not its name; the size declared in the
    header is checked against ``limits`` before decoding.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image file not found: {p}")
    try:
        size = p.stat().st_size
        if size > limits.max_decoded_bytes:
            raise ImageError(f"{p}: file of {size / 2**20:.0f} MiB is over the decoding limit")
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {p}: {exc.strerror or _clean(exc)}") from None
    return _decode(data, str(p), limits)


def decode_image(
    data: bytes, *, what: str = "upload", limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode PNG/JPEG/TIFF/BMP bytes into (H, W, 3) uint8 RGB (limits checked first)."""
    return _decode(data, what, limits)


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (or TIFF by suffix); returns the path."""
    from PIL import Image

    from flakefinder.artifacts import atomic_open

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    with atomic_open(p, "wb") as f:  # a full disk never leaves half an image (OutputError)
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(f, image)
        else:
            fmt = Image.registered_extensions().get(suffix, "PNG")
            # compress_level 1: ~5x faster than the default 6 for ~20% larger files; scans
            # save every tile, so encoding time matters more than disk
            Image.fromarray(to_rgb8(image)).save(f, format=fmt, compress_level=1)
    return p


def iter_image_files(paths: list[Path]) -> list[Path]:
    """Expand files and folders into a sorted list of image files."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"no such file or folder: {p}")
    return out
