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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.errors import ImageError
from flakefinder.image_header import (
    PIL_SHRINK_MODES,
    ImageHeader,
    ImageLimits,
    jpeg_scans,
    working_size,
)

__all__ = [
    "DEFAULT_LIMITS",
    "IMAGE_SUFFIXES",
    "ImageHeader",
    "ImageLimits",
    "decode_image",
    "iter_image_files",
    "jpeg_scans",
    "load_image",
    "read_header",
    "save_image",
    "shrink",
    "to_rgb8",
    "working_size",
]

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _channels(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as (H, W) grey or (H, W, 3) colour: a single channel squeezed, alpha dropped."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[:, :, :3]
    elif a.ndim != 2:
        raise ImageError(
            f"{what}: expected a grey, RGB or RGBA image, got an array of shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{what}: image is empty ({a.shape})")
    return a


def _row_slices(a: np.ndarray) -> list[slice]:
    """Slices of rows of ``a`` of about 256 Ki values each: the temporaries of a conversion
    (float64 or index copies of one slice) stay near 2 MiB, whatever the image size."""
    step = max(1, (1 << 18) // max(1, a[:1].size))
    return [slice(r, r + step) for r in range(0, a.shape[0], step)]


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """Grey or RGB ``a`` (from :func:`_channels`) as uint8 of the same shape.

    Converted in row slices (integers up to 16 bits through a lookup table), so no full-size
    float copy is ever made: a 49-megapixel 16-bit image costs its uint8 result only.
    """
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    out = np.empty(a.shape, np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        hi = int(a.max())
        if int(a.min()) < 0:
            raise ImageError(f"{what}: negative pixel values in an integer image")
        scale = 4095.0 if hi <= 4095 and a.dtype.itemsize >= 2 and hi > 255 else 65535.0
        if a.dtype.itemsize == 1:
            scale = 255.0
        factor = 255.0 / scale
        if hi <= 65535:  # the same formula, evaluated once per value
            lut = np.clip(np.rint(np.arange(hi + 1) * factor), 0, 255).astype(np.uint8)
            for rows in _row_slices(a):
                np.take(lut, a[rows], out=out[rows])
            return out
        for rows in _row_slices(a):
            out[rows] = np.clip(np.rint(a[rows].astype(np.float64) * factor), 0, 255)
        return out
    if np.issubdtype(a.dtype, np.floating):
        top = -np.inf
        for rows in _row_slices(a):
            if not np.isfinite(a[rows]).all():
                raise ImageError(f"{what}: image holds NaN or infinite values")
            top = max(top, float(a[rows].max()))
        scale = 255.0 if top <= 1.0 else 1.0
        for rows in _row_slices(a):
            out[rows] = np.clip(np.rint(a[rows] * scale), 0, 255)
        return out
    raise ImageError(f"{what}: unsupported pixel type {a.dtype}")


def _rgb(a: np.ndarray) -> np.ndarray:
    """uint8 grey (H, W) or RGB (H, W, 3) as contiguous (H, W, 3)."""
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


def to_rgb8(array: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Convert a grey/RGB/RGBA array of integer or float type to (H, W, 3) uint8."""
    return _rgb(_to_uint8(_channels(array, what), what))


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (uint8, grey or colour) area-averaged down to ``size`` = (width, height)."""
    import cv2

    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


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


def _tiff_header(data: bytes, what: str, limits: ImageLimits) -> ImageHeader:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            shape = tuple(int(v) for v in series.shape)
            dtype = np.dtype(series.dtype)
            page = tif.pages.first
            height, width = int(page.imagelength), int(page.imagewidth)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{what}: cannot read the TIFF header: {_clean(exc)}") from None
    n_bytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    limits.check(width, height, n_bytes, what)
    return ImageHeader("TIFF", width, height, dtype.name, n_bytes)


def _read_tiff(data: bytes, what: str) -> np.ndarray:
    """Pixels of a TIFF's first series: tifffile, else OpenCV (compressed TIFFs, e.g. LZW as
    OpenCV and many cameras write them, need the optional imagecodecs package in tifffile).
    The caller has checked the header (:func:`_tiff_header`)."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return np.asarray(tif.series[0].asarray())
    except Exception as exc:
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ImageError(f"{what}: cannot decode TIFF: {_clean(exc)}") from None
        if arr.ndim == 3 and arr.shape[2] in (3, 4):  # OpenCV gives BGR(A): swap in place
            code = cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
            cv2.cvtColor(arr, code, dst=arr)
        return np.ascontiguousarray(arr)


def _pil_bytes_per_pixel(mode: str) -> int:
    if mode.startswith("I;16"):
        return 2
    if mode in ("I", "F"):
        return 8  # kept as 64-bit integers (I) for to_rgb8
    return max(3, _MODE_BYTES.get(mode, 4))  # other modes are converted to RGB


def _open_pil(data: bytes, what: str) -> PILImage:
    import warnings

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=PIL_FORMATS)
        except UnidentifiedImageError:
            raise ImageError(
                f"{what}: cannot decode image: not a PNG, JPEG, TIFF or BMP file"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{what}: {_clean(exc)}") from None


def _pil_header(im: PILImage, data: bytes, what: str, limits: ImageLimits) -> ImageHeader:
    width, height = im.size
    limits.check(width, height, width * height * _pil_bytes_per_pixel(im.mode), what)
    scans, progressive = 0, False
    if im.format == "JPEG":
        scans = jpeg_scans(data)
        limits.check_scans(scans, what)
        progressive = bool(im.info.get("progressive") or im.info.get("progression"))
    n_bytes = width * height * _pil_bytes_per_pixel(im.mode)
    return ImageHeader(str(im.format), width, height, im.mode, n_bytes, scans, progressive)


def _read_pil(im: PILImage, size: tuple[int, int]) -> np.ndarray:
    """Pixels of an opened PNG/JPEG/BMP at ``size`` (width, height), as uint8 grey or RGB.

    A JPEG larger than ``size`` is decoded at 1/2, 1/4 or 1/8 scale (DCT scaling, PIL's draft
    mode) when that is still at least ``size``; 8-bit grey/RGB/RGBA images are shrunk inside
    PIL (no full-size numpy copy); 16- and 32-bit grey keep their values for the conversion
    (:func:`to_rgb8`'s rules) before shrinking; other modes are converted to RGB.
    """
    from PIL import Image

    if size != im.size and im.format == "JPEG":
        im.draft(im.mode, size)
    im.load()
    if im.mode in PIL_SHRINK_MODES:
        if im.size != size:
            im = im.resize(size, Image.Resampling.BOX)
        return np.asarray(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im)
        if im.mode.startswith("I;16"):
            arr = arr.astype(np.uint16, copy=False)
    else:
        arr = np.asarray(im.convert("RGB"))
    return arr


def read_header(
    data: bytes, *, what: str = "upload", limits: ImageLimits = DEFAULT_LIMITS
) -> ImageHeader:
    """The header of PNG/JPEG/TIFF/BMP ``data``, checked against ``limits``; no pixel decoded.

    Raises :class:`ImageError` for data that is no such image or that ``limits`` refuse.
    """
    if not data:
        raise ImageError(f"{what}: empty image data")
    try:
        if _is_tiff(data):
            return _tiff_header(data, what, limits)
        with _open_pil(data, what) as im:
            return _pil_header(im, data, what, limits)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{what}: cannot read the image header: {_clean(exc)}") from None


def _is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _decode(data: bytes, what: str, limits: ImageLimits, max_pixels: int | None) -> np.ndarray:
    if not data:
        raise ImageError(f"{what}: empty image data")
    try:
        if _is_tiff(data):
            header = _tiff_header(data, what, limits)
            arr = _read_tiff(data, what)
        else:
            with _open_pil(data, what) as im:
                header = _pil_header(im, data, what, limits)
                arr = _read_pil(im, header.work_size(max_pixels))
        small = _to_uint8(_channels(arr, what), what)
        del arr
        return _rgb(shrink(small, header.work_size(max_pixels)))
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{what}: not enough memory to decode the image") from None
    except Exception as exc:  # PIL, tifffile and OpenCV raise many types for corrupt data
        raise ImageError(f"{what}: cannot decode image: {_clean(exc)}") from None


def load_image(
    path: str | Path, *, limits: ImageLimits = DEFAULT_LIMITS, max_pixels: int | None = None
) -> np.ndarray:
    """Read PNG/JPEG/TIFF/BMP at ``path`` as (H, W, 3) uint8 RGB; raise ImageError on failure.

    The format is taken from the file's content, not its name; the size declared in the
    header is checked against ``limits`` before decoding. With ``max_pixels``, a larger image
    comes back shrunk to :func:`working_size` (area average; JPEGs decoded at reduced scale).
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
    return _decode(data, str(p), limits, max_pixels)


def decode_image(
    data: bytes,
    *,
    what: str = "upload",
    limits: ImageLimits = DEFAULT_LIMITS,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode PNG/JPEG/TIFF/BMP bytes into (H, W, 3) uint8 RGB (limits checked first).

    With ``max_pixels``, an image of more pixels is shrunk to :func:`working_size` on the way
    (see :func:`_read_pil`), holding at most :meth:`ImageHeader.decode_peak_bytes` at once.
    """
    return _decode(data, what, limits, max_pixels)


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
