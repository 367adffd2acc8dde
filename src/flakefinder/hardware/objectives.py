"""Objectives as first-class setup: pixel size, field of view, focus offset, NA, setup profile.

Calibration is per magnification: each :class:`Objective` names its own setup profile (the
colour table of that objective, from ``flakefinder calibrate``) and carries its pixel size on
the sample. An objective turret (:class:`flakefinder.hardware.protocols.ObjectiveTurret`)
holds several; :func:`switch_objective` changes objective and moves the focus by the
difference of the two focus offsets (parfocality), the way a lab's software does.

An objectives file (TOML or JSON) describes a microscope's objectives::

    [objectives.20x]
    um_per_px = 0.5           # pixel size on the sample with this objective
    numerical_aperture = 0.42
    focus_offset_um = 0.0     # focal plane of this objective relative to the others
    setup = "setup_20x.json"  # setup profile of this magnification (relative to this file)

An objective may lack ``um_per_px`` (Micro-Manager has no pixel-size configuration for it
yet): it can be listed, but using it raises :class:`ObjectiveError` with the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flakefinder import bounds
from flakefinder.errors import FlakefinderError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

#: Largest focus offset between two objectives that a file may state (µm).
MAX_FOCUS_OFFSET_UM = 10_000.0


class ObjectiveError(FlakefinderError, ValueError):
    """An objective that is unknown, not calibrated (no pixel size) or badly described."""


@dataclass(frozen=True)
class Objective:
    """One objective of a microscope.

    Parameters
    ----------
    name
        How the lab calls it (``"50x"``); the turret's state label.
    um_per_px
        Pixel size on the sample through this objective, or None when not calibrated.
    numerical_aperture
        NA (thin-film colours are averaged over it; depth of field).
    focus_offset_um
        Focal plane of this objective relative to the microscope's reference (parfocality):
        switching from A to B moves the focus by ``B.focus_offset_um - A.focus_offset_um``.
    magnification
        Nominal magnification (for display), or None.
    setup_profile
        Path of this objective's setup profile (calibration is per magnification), or None.
    """

    name: str
    um_per_px: float | None
    numerical_aperture: float = 0.55
    focus_offset_um: float = 0.0
    magnification: float | None = None
    setup_profile: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ObjectiveError("an objective needs a name (e.g. '50x')")
        where = f"objective {self.name!r}"
        if self.um_per_px is not None:
            try:
                bounds.UM_PER_PX.check(self.um_per_px, f"{where}: um_per_px")
            except ValueError as exc:
                raise ObjectiveError(str(exc)) from None
        if not (math.isfinite(self.numerical_aperture) and 0.0 < self.numerical_aperture <= 1.6):
            raise ObjectiveError(
                f"{where}: numerical_aperture must lie in (0, 1.6], got {self.numerical_aperture}"
            )
        if not (
            math.isfinite(self.focus_offset_um) and abs(self.focus_offset_um) <= MAX_FOCUS_OFFSET_UM
        ):
            raise ObjectiveError(
                f"{where}: focus_offset_um must be a finite number within ±{MAX_FOCUS_OFFSET_UM:g}"
                f" µm, got {self.focus_offset_um}"
            )
        if self.magnification is not None and not (
            math.isfinite(self.magnification) and self.magnification > 0
        ):
            raise ObjectiveError(f"{where}: magnification must be > 0, got {self.magnification}")

    def pixel_size(self) -> float:
        """``um_per_px``; :class:`ObjectiveError` with the fix when the objective has none."""
        if self.um_per_px is None:
            raise ObjectiveError(
                f"objective {self.name!r} has no pixel size: define a Micro-Manager pixel-size"
                " configuration for it, or give um_per_px in the objectives file"
            )
        return self.um_per_px

    def fov_um(self, shape_px: tuple[int, int]) -> tuple[float, float]:
        """(width_um, height_um) of the field of view for a camera of (height_px, width_px)."""
        size = self.pixel_size()
        return (shape_px[1] * size, shape_px[0] * size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "um_per_px": self.um_per_px,
            "numerical_aperture": self.numerical_aperture,
            "focus_offset_um": self.focus_offset_um,
            "magnification": self.magnification,
            "setup_profile": self.setup_profile,
        }


@runtime_checkable
class ObjectiveTurret(Protocol):
    """A nosepiece holding several objectives; the camera's pixel size follows the current one
    (a device of :class:`flakefinder.hardware.protocols.Microscope`).

    :func:`switch_objective` is how scans change objective (it also applies the focus offsets)."""

    @property
    def objectives(self) -> tuple[Objective, ...]: ...

    def current(self) -> Objective:
        """The objective in the light path."""

    def select(self, name: str) -> None:
        """Turn to objective ``name`` (one of ``objectives``); blocks until it is in place."""


class _Focus(Protocol):
    def get_z_um(self) -> float: ...

    def move_z_um(self, z_um: float) -> None: ...


class _Camera(Protocol):
    @property
    def um_per_px(self) -> float: ...


class _Scope(Protocol):
    """What :func:`switch_objective` uses of a :class:`~flakefinder.hardware.protocols.Microscope`."""

    turret: ObjectiveTurret | None
    objective: str

    @property
    def focus(self) -> _Focus: ...

    @property
    def camera(self) -> _Camera: ...


def _mag(name: str) -> float | None:
    text = name.strip().lower().rstrip("x×").strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


#: The simulated microscope's objectives (1024 px camera: 2048, 512, 205 and 102 µm fields),
#: NA of common long-working-distance objectives (5x 0.14, 20x 0.42, 50x 0.55, 100x 0.70).
DEFAULT_OBJECTIVES: tuple[Objective, ...] = (
    Objective("5x", 2.0, 0.14, magnification=5.0),
    Objective("20x", 0.5, 0.42, magnification=20.0),
    Objective("50x", 0.2, 0.55, magnification=50.0),
    Objective("100x", 0.1, 0.70, magnification=100.0),
)


def find_objective(objectives: Iterable[Objective], name: str) -> Objective:
    """The objective called ``name`` (case-insensitive); the error lists the known ones."""
    objs = tuple(objectives)
    for obj in objs:
        if obj.name == name:
            return obj
    for obj in objs:
        if obj.name.lower() == name.strip().lower():
            return obj
    known = ", ".join(o.name for o in objs) or "none"
    raise ObjectiveError(f"unknown objective {name!r}; this microscope has: {known}")


def merge_objectives(
    base: Sequence[Objective], overrides: Sequence[Objective]
) -> tuple[Objective, ...]:
    """``base`` (e.g. read from Micro-Manager) completed by ``overrides`` of the same name:
    NA, focus offset, magnification and setup profile come from the override; the pixel size
    from ``base`` when it has one, else from the override. Overrides with new names are added."""
    by_name = {o.name: o for o in overrides}
    out: list[Objective] = []
    for obj in base:
        extra = by_name.pop(obj.name, None)
        if extra is None:
            out.append(obj)
            continue
        out.append(
            replace(
                extra,
                um_per_px=obj.um_per_px if obj.um_per_px is not None else extra.um_per_px,
                magnification=extra.magnification or obj.magnification,
            )
        )
    out.extend(by_name.values())
    return tuple(out)


def objectives_from_mapping(data: Mapping[str, Any], base_dir: Path) -> tuple[Objective, ...]:
    """Objectives from the parsed file ``{"objectives": {name: {...}}}``."""
    table = data.get("objectives")
    if not isinstance(table, dict) or not table:
        raise ObjectiveError("an objectives file needs an [objectives.NAME] table per objective")
    allowed = {"um_per_px", "numerical_aperture", "focus_offset_um", "magnification", "setup"}
    out: list[Objective] = []
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ObjectiveError(f"objective {name!r}: expected a table of settings")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ObjectiveError(
                f"objective {name!r}: unknown setting(s) {', '.join(unknown)}; use"
                f" {', '.join(sorted(allowed))}"
            )

        def number(
            key: str, default: float | None, entry: dict[str, Any] = entry, name: str = name
        ) -> Any:
            value = entry.get(key, default)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ObjectiveError(f"objective {name!r}: {key} must be a number, got {value!r}")
            return float(value)

        setup = entry.get("setup")
        if setup is not None and not isinstance(setup, str):
            raise ObjectiveError(f"objective {name!r}: setup must be a file path")
        out.append(
            Objective(
                name=str(name),
                um_per_px=number("um_per_px", None),
                numerical_aperture=number("numerical_aperture", 0.55),
                focus_offset_um=number("focus_offset_um", 0.0),
                magnification=number("magnification", None) or _mag(str(name)),
                setup_profile=None if setup is None else str((base_dir / setup).resolve()),
            )
        )
    return tuple(out)


#: Largest objectives file read (bytes): a few objectives take well under a kilobyte.
MAX_OBJECTIVES_FILE_BYTES = 2**20


def load_objectives(path: str | Path) -> tuple[Objective, ...]:
    """Read an objectives file (``.toml`` or ``.json``); :class:`ObjectiveError` when bad.

    JSON goes through the bounded strict loader (:func:`flakefinder.artifacts.load_json_file`:
    size, nesting depth and number length checked, NaN and Infinity refused); TOML is size
    checked before it is read and must be UTF-8.
    """
    from flakefinder.artifacts import FILE_JSON_LIMITS, load_json_file

    p = Path(path)
    if not p.is_file():
        raise ObjectiveError(f"objectives file not found: {p}")
    limits = replace(FILE_JSON_LIMITS, max_bytes=MAX_OBJECTIVES_FILE_BYTES)
    data: Any
    if p.suffix.lower() == ".json":
        data = load_json_file(p, error=ObjectiveError, what=f"objectives file {p}", limits=limits)
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            size = p.stat().st_size
            if size > MAX_OBJECTIVES_FILE_BYTES:
                raise ObjectiveError(
                    f"objectives file {p}: {size} bytes is larger than the"
                    f" {MAX_OBJECTIVES_FILE_BYTES} allowed"
                )
            data = tomllib.loads(p.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise ObjectiveError(f"cannot read objectives file {p}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ObjectiveError(
                f"objectives file {p}: not UTF-8 text (byte {exc.start})"
            ) from None
        except RecursionError:  # arrays nested thousands deep
            raise ObjectiveError(f"objectives file {p}: nested too deeply") from None
        except tomllib.TOMLDecodeError as exc:
            raise ObjectiveError(f"cannot read objectives file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ObjectiveError(f"objectives file {p} must hold a table of objectives")
    return objectives_from_mapping(data, p.parent)


def switch_objective(microscope: _Scope, name: str) -> Objective:
    """Turn ``microscope``'s turret to objective ``name`` and move the focus by the difference
    of the focus offsets. Returns the objective. Refuses (before anything moves) an unknown
    objective or one without a pixel size; a microscope without a turret accepts only its one
    objective."""
    turret = microscope.turret
    if turret is None:
        if name.strip().lower() == microscope.objective.strip().lower():
            return Objective(microscope.objective, microscope.camera.um_per_px)
        raise ObjectiveError(
            f"this microscope has no objective turret; it cannot switch from"
            f" {microscope.objective!r} to {name!r}"
        )
    target = find_objective(turret.objectives, name)
    target.pixel_size()  # refuse an uncalibrated objective before anything moves
    current = turret.current()
    if current.name != target.name:
        z = microscope.focus.get_z_um()
        turret.select(target.name)
        microscope.focus.move_z_um(z - current.focus_offset_um + target.focus_offset_um)
    microscope.objective = target.name
    return target
