"""Typed values that cross module boundaries. numpy only: no torch, SQLAlchemy or FastAPI here.

Conventions
-----------
* Images are ``numpy.ndarray`` of shape (H, W, 3), dtype uint8, RGB order.
* Pixel coordinates are (x, y) = (column, row), origin at the top-left pixel corner.
* Chip coordinates are micrometres; x grows with image columns and y with image rows.
  A stage position names the chip point at the *centre* of the field of view.
* Flakes are stored in *stage* micrometres. A :class:`ChipFrame` (stored per scan) maps them to
  chip micrometres: origin at chip corner A, x along the chip edge from A towards corner B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from flakefinder.errors import ImageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


class LayerClass(str, Enum):
    """Thickness class used as part of the detection category (the paper's classes)."""

    MONO = "mono"  # 1 layer
    FEW = "few"  # 2-10 layers
    THICK = "thick"  # 11-40 layers

    @classmethod
    def from_layers(cls, n_layers: int) -> LayerClass | None:
        """Class of a flake with ``n_layers`` layers, or None for bulk (> 40) and for n < 1."""
        if n_layers < 1:
            return None
        if n_layers == 1:
            return cls.MONO
        if n_layers <= 10:
            return cls.FEW
        if n_layers <= 40:
            return cls.THICK
        return None


LAYER_CLASSES: tuple[LayerClass, ...] = (LayerClass.MONO, LayerClass.FEW, LayerClass.THICK)


def category_name(material: str, layer_class: LayerClass) -> str:
    """Detection category name, e.g. ``graphene_mono``."""
    return f"{material}_{layer_class.value}"


def parse_category_name(name: str) -> tuple[str, LayerClass]:
    """Inverse of :func:`category_name`."""
    material, sep, cls = name.rpartition("_")
    if not sep or not material:
        raise ValueError(f"category name {name!r} is not of the form <material>_<mono|few|thick>")
    try:
        return material, LayerClass(cls)
    except ValueError:
        raise ValueError(
            f"category name {name!r}: thickness class {cls!r} is not one of mono, few, thick"
        ) from None


@dataclass(frozen=True)
class ClassMap:
    """Ordered detection categories; category id i+1 is ``names[i]`` (0 is background)."""

    names: tuple[str, ...]

    @classmethod
    def for_materials(cls, materials: Sequence[str]) -> ClassMap:
        return cls(tuple(category_name(m, lc) for m in materials for lc in LAYER_CLASSES))

    def id_of(self, material: str, layer_class: LayerClass) -> int:
        name = category_name(material, layer_class)
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise KeyError(
                f"category {name!r} is not in the class map {list(self.names)}"
            ) from None

    def name_of(self, category_id: int) -> str:
        if not 1 <= category_id <= len(self.names):
            raise KeyError(f"category id {category_id} outside 1..{len(self.names)}")
        return self.names[category_id - 1]

    @property
    def materials(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for n in self.names:
            seen[parse_category_name(n)[0]] = None
        return tuple(seen)


@dataclass(frozen=True)
class ImagingContext:
    """What a detector needs to know about the chip besides the pixels.

    The microscope itself (camera gamma, objective NA, colour tables) is described by a setup
    profile (:class:`flakefinder.calibration.profile.SetupProfile`) or by detector options;
    only the profile's hashable id travels here, so a server holding several setups can pick
    the right one. :meth:`to_query` / :meth:`from_query` are the one wire format (HTTP query
    parameters) used by the inference client and server.
    """

    um_per_px: float = 0.2
    oxide_thickness_nm: float = 90.0
    materials: tuple[str, ...] = ("graphene",)
    profile_id: str | None = None

    def to_query(self) -> dict[str, str]:
        """Query parameters that :meth:`from_query` turns back into an equal context."""
        query = {
            "um_per_px": repr(float(self.um_per_px)),
            "oxide_nm": repr(float(self.oxide_thickness_nm)),
            "materials": ",".join(self.materials),
        }
        if self.profile_id is not None:
            query["profile_id"] = self.profile_id
        return query

    @classmethod
    def from_query(
        cls,
        params: Mapping[str, str | None],
        *,
        defaults: ImagingContext | None = None,
        material_name: Callable[[str], str] | None = None,
    ) -> ImagingContext:
        """Parse :meth:`to_query` parameters; missing or empty ones come from ``defaults``.

        ``material_name`` canonicalises each material name (and raises for unknown ones).
        Raises ValueError for a number that is not finite and positive, or an empty material
        list.
        """
        base = defaults or cls()

        def number(key: str, default: float) -> float:
            text = params.get(key)
            if text is None or str(text).strip() == "":
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {text!r}") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a finite number > 0, got {text!r}")
            return value

        materials = base.materials
        text = params.get("materials")
        if text is not None and text.strip():
            names = [m.strip() for m in text.split(",") if m.strip()]
            if material_name is not None:
                names = [material_name(m) for m in names]
            materials = tuple(dict.fromkeys(names))
            if not materials:
                raise ValueError(f"materials must name at least one material, got {text!r}")
        profile = params.get("profile_id")
        return cls(
            um_per_px=number("um_per_px", base.um_per_px),
            oxide_thickness_nm=number("oxide_nm", base.oxide_thickness_nm),
            materials=materials,
            profile_id=profile.strip() if profile and profile.strip() else base.profile_id,
        )


@dataclass(frozen=True, eq=False)
class Detection:
    """One flake found in one image, in that image's pixel coordinates."""

    material: str
    layer_class: LayerClass
    confidence: float
    polygon_px: tuple[tuple[float, float], ...]
    bbox_px: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    area_px: float
    layer_count: int | None = None  # exact layer-number estimate from optical contrast
    # C = I/I_substrate - 1 per channel, the one convention of profiles, CSV, JSON and the UI
    # (negative for a flake darker than the substrate, e.g. graphene on 90 nm SiO2)
    contrast_rgb: tuple[float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)  # bool (H, W) of the whole image
    layer_confidence: float | None = None  # 0..1: how sure the layer number is (None: not rated)
    layer_alternative: int | None = None  # the next most likely layer number

    @property
    def category(self) -> str:
        return category_name(self.material, self.layer_class)


def keep_confident(detections: Sequence[Detection], min_score: float) -> list[Detection]:
    """The detections with ``confidence >= min_score`` (the commands' ``--score``), in order."""
    return [d for d in detections if d.confidence >= min_score]


@runtime_checkable
class Detector(Protocol):
    """Anything that finds flakes in an RGB uint8 image."""

    name: str
    version: str

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]: ...


@runtime_checkable
class BatchDetector(Detector, Protocol):
    """A :class:`Detector` that also detects on several images in one call (GPU batching)."""

    def detect_batch(
        self, images: Sequence[np.ndarray], context: ImagingContext
    ) -> list[list[Detection]]: ...


@runtime_checkable
class SelfCalibrating(Protocol):
    """A :class:`Detector` that calibrates itself on the images it is given (no setup profile).

    Commands call :meth:`calibrate_on` with a sample of a batch before detecting, so the
    calibration sees more than one image; without that call the detector calibrates on the
    first images it detects on.
    """

    @property
    def needs_calibration(self) -> bool: ...

    def calibrate_on(
        self, images: Sequence[np.ndarray], context: ImagingContext, names: Sequence[str]
    ) -> list[str]: ...


@dataclass(frozen=True)
class StagePosition:
    x_um: float
    y_um: float
    z_um: float = 0.0


def pixel_to_chip_um(
    x_px: float, y_px: float, stage: StagePosition, width_px: int, height_px: int, um_per_px: float
) -> tuple[float, float]:
    """Chip coordinate of pixel coordinate (x_px, y_px) of an image taken at ``stage``."""
    return (
        stage.x_um + (x_px - width_px / 2.0) * um_per_px,
        stage.y_um + (y_px - height_px / 2.0) * um_per_px,
    )


def chip_to_pixel(
    x_um: float, y_um: float, stage: StagePosition, width_px: int, height_px: int, um_per_px: float
) -> tuple[float, float]:
    """Inverse of :func:`pixel_to_chip_um`."""
    return (
        (x_um - stage.x_um) / um_per_px + width_px / 2.0,
        (y_um - stage.y_um) / um_per_px + height_px / 2.0,
    )


@dataclass(frozen=True)
class ChipFrame:
    """Where the chip lay on the stage: chip µm <-> stage µm.

    The chip origin (corner A) is at stage ``(origin_x_um, origin_y_um)``; the chip's +x edge
    points ``angle_deg`` from the stage +x axis, turning towards stage +y. Chip +y is chip +x
    turned by +90° the same way, so the frame is a rotation about the origin plus a shift.
    """

    origin_x_um: float = 0.0
    origin_y_um: float = 0.0
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.origin_x_um, self.origin_y_um, self.angle_deg)):
            raise ValueError(f"chip frame values must be finite numbers, got {self}")

    @classmethod
    def identity(cls) -> ChipFrame:
        """Chip coordinates equal stage coordinates (a simulated scan's virtual chip)."""
        return cls(0.0, 0.0, 0.0)

    @classmethod
    def from_corners(cls, a: Sequence[float], b: Sequence[float]) -> ChipFrame:
        """Frame whose origin is corner ``a`` (stage µm) and whose +x edge runs from ``a`` to ``b``."""
        ax, ay = float(a[0]), float(a[1])
        dx, dy = float(b[0]) - ax, float(b[1]) - ay
        if not math.isfinite(dx) or not math.isfinite(dy) or math.hypot(dx, dy) == 0.0:
            raise ValueError(f"chip corners A {tuple(a)} and B {tuple(b)} must be distinct points")
        return cls(ax, ay, math.degrees(math.atan2(dy, dx)))

    @property
    def is_identity(self) -> bool:
        return self.origin_x_um == 0.0 and self.origin_y_um == 0.0 and self.angle_deg == 0.0

    def _cos_sin(self) -> tuple[float, float]:
        if self.angle_deg == 0.0:
            return 1.0, 0.0
        theta = math.radians(self.angle_deg)
        return math.cos(theta), math.sin(theta)

    def to_chip(self, x_um: float, y_um: float) -> tuple[float, float]:
        """Chip µm of stage point (x_um, y_um)."""
        c, s = self._cos_sin()
        dx, dy = x_um - self.origin_x_um, y_um - self.origin_y_um
        return (c * dx + s * dy, -s * dx + c * dy)

    def to_stage(self, x_um: float, y_um: float) -> tuple[float, float]:
        """Stage µm of chip point (x_um, y_um); inverse of :meth:`to_chip`."""
        c, s = self._cos_sin()
        return (self.origin_x_um + c * x_um - s * y_um, self.origin_y_um + s * x_um + c * y_um)

    def to_dict(self) -> dict[str, float]:
        return {
            "origin_x_um": self.origin_x_um,
            "origin_y_um": self.origin_y_um,
            "angle_deg": self.angle_deg,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ChipFrame:
        """Inverse of :meth:`to_dict`; ValueError if a value is missing or not a number."""
        values: list[float] = []
        try:
            for key in ("origin_x_um", "origin_y_um", "angle_deg"):
                v = d[key]
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise TypeError(key)
                values.append(float(v))
        except (KeyError, TypeError, IndexError):
            raise ValueError(
                f"chip frame {d!r} needs numbers origin_x_um, origin_y_um and angle_deg"
            ) from None
        return cls(*values)


def check_rgb_image(image: object, *, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array, else raise :class:`ImageError`."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{what} must have shape (H, W, 3) RGB, got {image.shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"{what} must be uint8, got {image.dtype}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ImageError(f"{what} is too small ({image.shape[1]}x{image.shape[0]} px)")
    return image


@dataclass(frozen=True)
class TileRecord:
    """One acquired field of view of a scan."""

    tile_index: int  # position in the scan plan
    x_um: float  # stage position of the image centre
    y_um: float
    z_um: float
    width_px: int
    height_px: int
    um_per_px: float
    image_path: str | None = None  # where the pixels were saved, if they were


@dataclass(frozen=True)
class FlakeRecord:
    """A detected flake placed on the chip: what the database stores."""

    material: str
    layer_class: LayerClass
    confidence: float
    polygon_um: tuple[tuple[float, float], ...]
    bbox_um: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    area_um2: float
    polygon_px: tuple[tuple[float, float], ...]
    bbox_px: tuple[float, float, float, float]
    detector: str
    detector_version: str
    layer_count: int | None = None
    contrast_rgb: tuple[float, float, float] | None = None  # C = I/I_substrate - 1
    tile_index: int | None = None

    @property
    def centroid_um(self) -> tuple[float, float]:
        xs = [p[0] for p in self.polygon_um]
        ys = [p[1] for p in self.polygon_um]
        return (sum(xs) / len(xs), sum(ys) / len(ys))
