"""Typed values of the real sets (:mod:`flakefinder.evaluate.real_sets`) and their label parsing.

:class:`LabelledImage` is a :class:`~flakefinder.evaluate.real.TruthImage` that can mark terraces
thicker than the numbered layers; :class:`RealSet` is one loaded set. :func:`layer_of_category`
reads layer categories (``3L``, ``>5L``, ``2-Layer``); :func:`parse_segmentation` reads COCO
segmentations stored as Python literals (never evaluated).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flakefinder.errors import DatasetError
from flakefinder.evaluate.real import TruthImage

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "LabelledImage",
    "RealSet",
    "image_size",
    "int_field",
    "layer_of_category",
    "licence_note",
    "parse_segmentation",
    "set_folder",
]

MAX_LITERAL_CHARS = 8 * 2**20  # a string-encoded segmentation longer than this is refused


@dataclass(frozen=True, eq=False)
class LabelledImage(TruthImage):
    """A :class:`TruthImage` whose terraces may be marked thicker than the numbered layers.

    ``thick[k]`` is True for a terrace labelled ``>5L``/``>=5L`` (its layer is None): a match
    to it is a correct detection, but it is not among the terraces that recall counts.
    """

    thick: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.masks) or len(self.thick) not in (0, len(self.masks)):
            raise DatasetError(f"{self.path.name}: truth lists of different lengths")

    def is_thick(self, k: int) -> bool:
        """Whether terrace ``k`` is thicker than the numbered layers."""
        return bool(self.thick[k]) if self.thick else False


@dataclass(frozen=True, eq=False)
class RealSet:
    """One real set: pictures, truth and what is known about the setup.

    Attributes
    ----------
    name, material, objective
        Set name (:data:`SET_NAMES`), flake material and objective magnification (``"150x"``).
    images
        Image files, sorted by name.
    truth
        One :class:`LabelledImage` per image, or None for a set without labels.
    layers_known
        Whether the labels carry layer numbers.
    exhaustive
        Whether every flake of the pictures is outlined (precision is meaningful).
    oxide_nm, um_per_px
        Setup values where the source states or the pictures show them (None: unknown).
        ``um_per_px`` is the median of ``um_per_px_images`` where those are measured.
    um_per_px_images
        Per-image pixel size measured from a scale bar (None where not measured); empty when
        the set has no scale bars.
    lab_table
        The lab's own per-layer colour table (2DMatGMM JSON), where the set has one.
    licence, source
        Licence note and origin.
    """

    name: str
    material: str
    objective: str
    images: tuple[Path, ...]
    truth: tuple[LabelledImage, ...] | None
    layers_known: bool
    exhaustive: bool
    oxide_nm: float | None
    um_per_px: float | None
    licence: str
    source: str
    um_per_px_images: tuple[float | None, ...] = ()
    lab_table: Path | None = None

    @property
    def n_instances(self) -> int:
        """Outlined terraces over all images (0 without labels)."""
        return sum(len(t.masks) for t in self.truth or ())


_CATEGORY_RE = re.compile(r"^\s*(>=|≥|>)?\s*(\d{1,3})\s*-?\s*(?:l|layers?)\s*$", re.IGNORECASE)


def layer_of_category(name: str) -> tuple[int | None, bool]:
    """(layer number, thick) of a category such as ``3L``, ``>5L``, ``>=5L`` or ``2-Layer``.

    ``>NL`` and ``>=NL`` give (None, True): a terrace thicker than the numbered ones.

    Raises
    ------
    DatasetError
        For a name that is not a layer category.
    """
    m = _CATEGORY_RE.match(str(name))
    if m is None:
        raise DatasetError(f"category {name!r} is not a layer category (e.g. 3L, >5L, 2-Layer)")
    if m.group(1):
        return None, True
    n = int(m.group(2))
    if n < 1:
        raise DatasetError(f"category {name!r}: layer numbers start at 1")
    return n, False


def parse_segmentation(value: Any, *, what: str = "segmentation") -> Any:
    """A COCO segmentation as stored: a list or dict as is, or one written as a Python literal.

    Some exports store ``"[[x0, y0, ...]]"`` or ``"{'size': [...], 'counts': '...'}"`` as a
    string; it is parsed with :func:`ast.literal_eval` (literals only, never evaluated code).

    Raises
    ------
    DatasetError
        For a string that is too long or not a list/dict literal.
    """
    if not isinstance(value, str):
        return value
    if len(value) > MAX_LITERAL_CHARS:
        raise DatasetError(f"{what}: {len(value)} characters is over {MAX_LITERAL_CHARS}")
    try:
        out = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise DatasetError(f"{what}: not a list or dict literal ({type(exc).__name__})") from None
    if not isinstance(out, (list, dict)):
        raise DatasetError(f"{what}: a string segmentation must hold a list or a dict")
    return out


def int_field(value: Any, what: str) -> int:
    try:
        out = int(str(value).strip())
    except ValueError:
        raise DatasetError(f"{what}: {value!r} is not an integer") from None
    return out


def set_folder(root: Path, rel: str, set_name: str) -> Path:
    if not root.is_dir():
        raise DatasetError(
            f"../shared/data/real not found: {root} (the real micrographs live beside the clone; "
            "see shared/data/real/README.md)"
        )
    p = root / rel
    if not p.exists():
        raise DatasetError(f"{set_name}: {p} not found under {root}")
    return p


def licence_note(folder: Path, name: str, spdx: str) -> str:
    lic = folder / name
    return f"{spdx} ({lic})" if lic.is_file() else f"{spdx} (licence file {lic} missing)"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"cannot read the image header of {path}: {exc}") from None
