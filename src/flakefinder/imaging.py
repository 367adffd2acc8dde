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


def _read_tiff(data: bytes) -> np.ndarray:
    """Pixels of a TIFF: tifffile, else OpenCV (compressed TIFFs, e.g. LZW as OpenCV and many
    cameras write them, need the optional imagecodecs package in tifffile)."""
    import tifffile

    try:
        return np.asarray(tifffile.imread(io.BytesIO(data)))
    except Exception as exc:
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise exc from None
        if arr.ndim == 3 and arr.shape[2] in (3, 4):  # OpenCV gives BGR(A)
            arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
        return np.ascontiguousarray(arr)


def _read_pil(source: Path | io.BytesIO) -> np.ndarray:
    """Pixels of a PNG/JPEG/BMP as PIL decodes them: 16- and 32-bit grey kept as integers
    (for :func:`to_rgb8` to scale), grey/RGB/RGBA as they are, other modes as RGB."""
    from PIL import Image

    with Image.open(source) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
        if im.mode in ("RGB", "RGBA", "L"):
            return np.asarray(im)
        return np.asarray(im.convert("RGB"))


def load_image(path: str | Path) -> np.ndarray:
    """Read PNG/JPEG/TIFF/BMP at ``path`` as (H, W, 3) uint8 RGB; raise ImageError on failure."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image file not found: {p}")
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            data = _read_tiff(p.read_bytes())
        else:
            data = _read_pil(p)
    except ImageError:
        raise
    except Exception as exc:  # PIL and tifffile raise many types for corrupt files
        raise ImageError(f"cannot read image {p}: {exc}") from exc
    return to_rgb8(data, what=str(p))


def decode_image(data: bytes, *, what: str = "upload") -> np.ndarray:
    """Decode PNG/JPEG/TIFF bytes into (H, W, 3) uint8 RGB."""
    if not data:
        raise ImageError(f"{what}: empty image data")
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        try:
            return to_rgb8(_read_tiff(data), what=what)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"{what}: cannot decode TIFF: {exc}") from exc
    try:
        arr = _read_pil(io.BytesIO(data))
    except Exception as exc:
        raise ImageError(f"{what}: cannot decode image: {exc}") from exc
    return to_rgb8(arr, what=what)


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (or TIFF by suffix); returns the path."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(p, image)
    else:
        # compress_level 1: ~5x faster than the default 6 for ~20% larger files; scans save
        # every tile, so encoding time matters more than disk
        Image.fromarray(to_rgb8(image)).save(p, compress_level=1)
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
