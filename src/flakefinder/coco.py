"""COCO files: the one loader, and decoding/encoding of segmentations (torch-free).

:func:`load_coco` reads a COCO JSON file for every user (training, evaluation, statistics);
evaluation validates the result further with :func:`flakefinder.evaluate.cocodata.validate_coco`.

:func:`decode_segmentation` turns polygons, compressed or uncompressed RLE into boolean masks.
pycocotools is used for polygons when it is installed (it is the reference rasteriser);
otherwise a numpy/OpenCV implementation of the same format is used. RLE decoding is exact
(numpy); polygon rasterisation without pycocotools may differ by at most the boundary pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from flakefinder.artifacts import load_json_file
from flakefinder.errors import DatasetError


def load_coco(path: str | Path) -> tuple[dict[str, Any], Path]:
    r"""Read a COCO JSON file and check that it has ``images`` and ``categories`` lists.

    Parameters
    ----------
    path
        The annotation file, or a folder holding ``annotations.json``.

    Returns
    -------
    tuple[dict[str, Any], Path]
        The COCO dict (``annotations`` defaults to an empty list) and the folder that image
        ``file_name``\ s are relative to (the file's folder).

    Raises
    ------
    DatasetError
        When the file is missing, not JSON, or not shaped like a COCO file.
    """
    p = Path(path)
    file = p / "annotations.json" if p.is_dir() else p
    if not file.is_file():
        raise DatasetError(f"COCO annotation file not found: {file}")
    coco = load_json_file(file, error=DatasetError)
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "categories")
    ):
        raise DatasetError(f"{file}: not a COCO file (needs 'images' and 'categories' lists)")
    coco.setdefault("annotations", [])
    if not isinstance(coco["annotations"], list):
        raise DatasetError(f"{file}: 'annotations' must be a list")
    return coco, file.parent


def _have_pycocotools() -> bool:
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        return False
    return True


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (LEB128-like, 6 bits per character) into run lengths."""
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(data):
                raise DatasetError("corrupt compressed RLE string (truncated run length)")
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def counts_to_string(counts: list[int]) -> str:
    """Encode run lengths as COCO's compressed RLE string (inverse of rle_string_to_counts)."""
    out = bytearray()
    for i, c in enumerate(counts):
        x = int(c)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(ch + 48)
    return out.decode("ascii")


def _decode_counts(counts: list[int], height: int, width: int) -> np.ndarray:
    total = height * width
    if any(c < 0 for c in counts) or sum(counts) != total:
        raise DatasetError(
            f"RLE run lengths sum to {sum(counts)} but the mask has {height}x{width} = {total} pixels"
        )
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((width, height)).T.copy()  # COCO RLE is column-major


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a boolean (H, W) mask as compressed COCO RLE (numpy only)."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    flat = m.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    return {"size": [h, w], "counts": counts_to_string(runs)}


def _polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    if _have_pycocotools():
        from pycocotools import mask as mask_utils

        try:
            rles = mask_utils.frPyObjects(polygons, height, width)
            with warnings.catch_warnings():  # pycocotools vs numpy 2's `copy` keyword
                warnings.simplefilter("ignore", DeprecationWarning)
                return np.asarray(mask_utils.decode(mask_utils.merge(rles)), dtype=bool)
        except Exception as exc:  # pycocotools raises plain Exception/TypeError
            raise DatasetError(f"cannot rasterise polygon segmentation: {exc}") from exc
    import cv2

    out = np.zeros((height, width), dtype=np.uint8)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        # pixel-corner coordinates -> cv2 pixel-centre coordinates, 1/8 px fixed-point precision
        fixed = np.rint((pts - 0.5) * 8.0).astype(np.int32)
        cv2.fillPoly(out, [fixed], 1, lineType=cv2.LINE_8, shift=3)
    return out.astype(bool)


def decode_segmentation(
    segmentation: Any, height: int, width: int, *, what: str = "segmentation"
) -> np.ndarray:
    r"""Boolean (height, width) mask of a COCO ``segmentation`` (polygon list or RLE dict).

    Polygons with fewer than three vertices are skipped; an RLE's ``size`` must equal
    ``[height, width]``. Errors are :class:`DatasetError`\ s that start with ``what``.
    """
    if isinstance(segmentation, list):
        if not all(isinstance(p, (list, tuple)) for p in segmentation):
            raise DatasetError(f"{what}: a polygon segmentation must be a list of coordinate lists")
        try:
            polys = [list(map(float, p)) for p in segmentation if len(p) >= 6]
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{what}: polygon with a non-numeric coordinate: {exc}") from None
        if not polys:
            return np.zeros((height, width), dtype=bool)
        if any(len(p) % 2 for p in polys):
            raise DatasetError(f"{what}: polygon with an odd number of coordinates")
        return _polygons_to_mask(polys, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size", [height, width])
        if [int(size[0]), int(size[1])] != [height, width]:
            raise DatasetError(
                f"{what}: RLE size {list(size)} differs from the image size [{height}, {width}]"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            return _decode_counts([int(c) for c in counts], height, width)
        if isinstance(counts, (str, bytes)):
            return _decode_counts(rle_string_to_counts(counts), height, width)
    raise DatasetError(f"{what}: segmentation is neither a polygon list nor an RLE dict")
