"""The setup profile: one self-describing JSON file per microscope setup.

Contrast convention (the same as 2DMatGMM): per channel, ``C = I / I_bg - 1`` on the camera's
stored (encoded, not linearised) values, where ``I_bg`` is the local substrate level. Channels
are in R, G, B order everywhere in flakefinder (2DMatGMM files store covariances in B, G, R
order; the importer reorders them).

The file carries ``schema`` and ``schema_version`` and its own ``sha256`` (over the canonical JSON
of everything else), so a changed or truncated file is refused, and ``profile_id`` (name plus the
first 12 hex digits of the sha) names the exact calibration a scan used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flakefinder.artifacts import load_json_file, sha256_json, write_json_atomic
from flakefinder.errors import ProfileError

SCHEMA = "flakefinder.setup-profile"
SCHEMA_VERSION = 1

Encoding = Literal["linear", "gamma", "srgb"]
Source = Literal["measured", "predicted"]
ENCODINGS: tuple[str, ...] = ("linear", "gamma", "srgb")
SOURCES: tuple[str, ...] = ("measured", "predicted")

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]


def _vec3(value: object, what: str, *, lo: float = -math.inf, hi: float = math.inf) -> Vec3:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ProfileError(f"{what} must be three numbers, got {value!r}") from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ProfileError(f"{what} must be three finite numbers, got {value!r}")
    if np.any(arr < lo) or np.any(arr > hi):
        raise ProfileError(f"{what} must lie in [{lo}, {hi}], got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _mat3(value: object, what: str) -> Mat3:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ProfileError(f"{what} must be a 3 x 3 matrix, got {value!r}") from None
    if arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
        raise ProfileError(f"{what} must be a 3 x 3 matrix of finite numbers")
    if not np.allclose(arr, arr.T, rtol=1e-6, atol=1e-12):
        raise ProfileError(f"{what} must be symmetric")
    sym = 0.5 * (arr + arr.T)
    if np.min(np.linalg.eigvalsh(sym)) <= 0.0:
        raise ProfileError(f"{what} must be positive definite (a covariance)")
    return (
        (float(sym[0, 0]), float(sym[0, 1]), float(sym[0, 2])),
        (float(sym[1, 0]), float(sym[1, 1]), float(sym[1, 2])),
        (float(sym[2, 0]), float(sym[2, 1]), float(sym[2, 2])),
    )


def _finite(value: object, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ProfileError(f"{what} must be a finite number in [{lo}, {hi}], got {value!r}")
    return v


@dataclass(frozen=True)
class LayerColour:
    """Contrast Gaussian of flakes with ``n_layers`` layers (RGB order).

    ``source`` says whether it was measured from labelled pixels or predicted by the fitted optics
    model. ``fit_residual_rgb`` is (optics prediction - measured mean) for measured entries.
    """

    n_layers: int
    contrast_rgb: Vec3
    covariance_rgb: Mat3
    source: Source = "measured"
    n_pixels: int = 0
    n_flakes: int = 0
    fit_residual_rgb: Vec3 | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_layers, bool) or not isinstance(self.n_layers, int):
            raise ProfileError(f"n_layers must be an integer, got {self.n_layers!r}")
        if not 1 <= self.n_layers <= 1000:
            raise ProfileError(f"n_layers must be in 1..1000, got {self.n_layers}")
        if self.source not in SOURCES:
            raise ProfileError(f"source must be one of {SOURCES}, got {self.source!r}")
        object.__setattr__(
            self, "contrast_rgb", _vec3(self.contrast_rgb, "contrast", lo=-1.0, hi=50.0)
        )
        object.__setattr__(self, "covariance_rgb", _mat3(self.covariance_rgb, "covariance"))
        if self.fit_residual_rgb is not None:
            object.__setattr__(
                self, "fit_residual_rgb", _vec3(self.fit_residual_rgb, "fit residual")
            )
        if self.n_pixels < 0 or self.n_flakes < 0:
            raise ProfileError("n_pixels and n_flakes must not be negative")

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.contrast_rgb, dtype=float)

    @property
    def covariance(self) -> np.ndarray:
        return np.asarray(self.covariance_rgb, dtype=float)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "n_layers": self.n_layers,
            "contrast_rgb": list(self.contrast_rgb),
            "covariance_rgb": [list(r) for r in self.covariance_rgb],
            "source": self.source,
            "n_pixels": self.n_pixels,
            "n_flakes": self.n_flakes,
        }
        if self.fit_residual_rgb is not None:
            d["fit_residual_rgb"] = list(self.fit_residual_rgb)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerColour:
        try:
            return cls(
                n_layers=d["n_layers"],
                contrast_rgb=d["contrast_rgb"],
                covariance_rgb=d["covariance_rgb"],
                source=d.get("source", "measured"),
                n_pixels=int(d.get("n_pixels", 0)),
                n_flakes=int(d.get("n_flakes", 0)),
                fit_residual_rgb=d.get("fit_residual_rgb"),
            )
        except KeyError as exc:
            raise ProfileError(f"layer entry lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"bad layer entry: {exc}") from None


@dataclass(frozen=True)
class MaterialTable:
    """Colour table of one material on the profile's substrate: one Gaussian per layer number."""

    material: str
    layers: tuple[LayerColour, ...]

    def __post_init__(self) -> None:
        if not self.material:
            raise ProfileError("material name must not be empty")
        ordered = tuple(sorted(self.layers, key=lambda e: e.n_layers))
        counts = [e.n_layers for e in ordered]
        if len(set(counts)) != len(counts):
            raise ProfileError(f"{self.material}: a layer number appears twice in {counts}")
        if not ordered:
            raise ProfileError(f"{self.material}: the colour table has no layers")
        object.__setattr__(self, "layers", ordered)

    @property
    def layer_counts(self) -> tuple[int, ...]:
        return tuple(e.n_layers for e in self.layers)

    def layer(self, n_layers: int) -> LayerColour:
        for e in self.layers:
            if e.n_layers == n_layers:
                return e
        raise ProfileError(f"{self.material}: no colour for {n_layers} layers in the profile")

    def means(self) -> np.ndarray:
        """(K, 3) mean contrasts in layer order."""
        return np.array([e.contrast_rgb for e in self.layers], dtype=float)

    def covariances(self) -> np.ndarray:
        """(K, 3, 3) covariances in layer order."""
        return np.array([e.covariance_rgb for e in self.layers], dtype=float)


@dataclass(frozen=True)
class CameraSettings:
    """How the camera stores light: encoding, gamma, white balance (gains applied, RGB)."""

    encoding: Encoding = "srgb"
    gamma: float = 2.2
    white_balance_rgb: Vec3 = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ProfileError(f"camera encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        _finite(self.gamma, "camera gamma", 0.2, 5.0)
        object.__setattr__(
            self,
            "white_balance_rgb",
            _vec3(self.white_balance_rgb, "white balance", lo=1e-3, hi=1e3),
        )


@dataclass(frozen=True)
class OpticsFit:
    """Result of fitting the thin-film + camera model to measured contrasts."""

    parameters: tuple[tuple[str, float], ...]
    rms_residual: float
    max_abs_residual: float
    fitted_on: tuple[str, ...] = ()  # e.g. ("graphene:1", "graphene:2")

    def param(self, name: str) -> float:
        return dict(self.parameters)[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": dict(self.parameters),
            "rms_residual": self.rms_residual,
            "max_abs_residual": self.max_abs_residual,
            "fitted_on": list(self.fitted_on),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OpticsFit:
        try:
            params = tuple(sorted((str(k), float(v)) for k, v in dict(d["parameters"]).items()))
            return cls(
                parameters=params,
                rms_residual=float(d["rms_residual"]),
                max_abs_residual=float(d["max_abs_residual"]),
                fitted_on=tuple(str(s) for s in d.get("fitted_on", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"bad optics_fit entry: {exc}") from None


@dataclass(frozen=True)
class SetupProfile:
    """One microscope setup's calibration. See the module docstring for conventions."""

    name: str
    um_per_px: float
    oxide_nm: float
    materials: tuple[MaterialTable, ...]
    numerical_aperture: float | None = None
    camera: CameraSettings = field(default_factory=CameraSettings)
    substrate_rgb: Vec3 | None = None  # mean substrate level in stored 8-bit units
    flatfield_path: str | None = None  # relative to the profile file
    optics_fit: OpticsFit | None = None
    created_utc: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        _finite(self.um_per_px, "um_per_px", 1e-3, 100.0)
        _finite(self.oxide_nm, "oxide_nm", 1.0, 2000.0)
        if self.numerical_aperture is not None:
            _finite(self.numerical_aperture, "numerical_aperture", 0.0, 1.0)
        if self.substrate_rgb is not None:
            object.__setattr__(
                self,
                "substrate_rgb",
                _vec3(self.substrate_rgb, "substrate_rgb", lo=0.0, hi=65535.0),
            )
        names = [t.material for t in self.materials]
        if len(set(names)) != len(names):
            raise ProfileError(f"a material appears twice in the profile: {names}")

    # -- lookups ------------------------------------------------------------------------------
    @property
    def material_names(self) -> tuple[str, ...]:
        return tuple(t.material for t in self.materials)

    def table(self, material: str) -> MaterialTable:
        for t in self.materials:
            if t.material.lower() == material.lower():
                return t
        raise ProfileError(
            f"the setup profile {self.name!r} has no colour table for {material!r}; "
            f"it has: {', '.join(self.material_names) or 'none'}"
        )

    def with_material(self, table: MaterialTable) -> SetupProfile:
        """A copy with ``table`` added, replacing a table of the same material."""
        kept = tuple(t for t in self.materials if t.material != table.material)
        return replace(self, materials=(*kept, table))

    # -- identity -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict without the ``sha256`` field."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "created_utc": self.created_utc,
            "notes": self.notes,
            "um_per_px": self.um_per_px,
            "numerical_aperture": self.numerical_aperture,
            "camera": {
                "encoding": self.camera.encoding,
                "gamma": self.camera.gamma,
                "white_balance_rgb": list(self.camera.white_balance_rgb),
            },
            "substrate": {
                "oxide_nm": self.oxide_nm,
                "substrate_rgb": None if self.substrate_rgb is None else list(self.substrate_rgb),
                "flatfield": self.flatfield_path,
            },
            "optics_fit": None if self.optics_fit is None else self.optics_fit.to_json(),
            "materials": {
                t.material: {"layers": [e.to_json() for e in t.layers]} for t in self.materials
            },
        }

    @property
    def sha256(self) -> str:
        return sha256_json(self.to_json())

    @property
    def profile_id(self) -> str:
        """Hashable id that names this exact calibration: ``name@<12 hex digits of sha256>``."""
        return f"{self.name}@{self.sha256[:12]}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SetupProfile:
        """Validate and build; checks schema, version and (when present) the ``sha256`` field."""
        if not isinstance(data, Mapping):
            raise ProfileError("a setup profile must be a JSON object")
        if data.get("schema") != SCHEMA:
            raise ProfileError(
                f"not a flakefinder setup profile (schema {data.get('schema')!r}, expected {SCHEMA!r})"
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ProfileError(
                f"setup profile schema version {version!r} is not supported "
                f"(this flakefinder reads version {SCHEMA_VERSION})"
            )
        try:
            cam = data.get("camera") or {}
            sub = data["substrate"]
            mats = data["materials"]
            if not isinstance(mats, Mapping):
                raise ProfileError("'materials' must map material names to tables")
            tables = tuple(
                MaterialTable(
                    material=str(name),
                    layers=tuple(LayerColour.from_json(e) for e in entry["layers"]),
                )
                for name, entry in mats.items()
            )
            fit = data.get("optics_fit")
            profile = cls(
                name=str(data["name"]),
                um_per_px=data["um_per_px"],
                oxide_nm=sub["oxide_nm"],
                materials=tables,
                numerical_aperture=data.get("numerical_aperture"),
                camera=CameraSettings(
                    encoding=cam.get("encoding", "srgb"),
                    gamma=cam.get("gamma", 2.2),
                    white_balance_rgb=tuple(cam.get("white_balance_rgb", (1.0, 1.0, 1.0))),
                ),
                substrate_rgb=sub.get("substrate_rgb"),
                flatfield_path=sub.get("flatfield"),
                optics_fit=None if fit is None else OpticsFit.from_json(fit),
                created_utc=str(data.get("created_utc", "")),
                notes=str(data.get("notes", "")),
            )
        except KeyError as exc:
            raise ProfileError(f"setup profile lacks the field {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ProfileError(f"setup profile is malformed: {exc}") from None
        stated = data.get("sha256")
        if stated is not None and stated != profile.sha256:
            raise ProfileError(
                "setup profile sha256 does not match its content: the file was changed or "
                "damaged after it was written"
            )
        return profile

    def save(self, path: str | Path) -> Path:
        """Write the profile (with its sha256) atomically; returns the path."""
        p = Path(path)
        data = self.to_json()
        data["sha256"] = sha256_json(data)
        write_json_atomic(p, data)
        return p

    @classmethod
    def load(cls, path: str | Path) -> SetupProfile:
        p = Path(path)
        if not p.is_file():
            raise ProfileError(f"setup profile not found: {p}")
        data = load_json_file(p, error=ProfileError, what=f"setup profile {p}")
        try:
            return cls.from_json(data)
        except ProfileError as exc:
            raise ProfileError(f"{p}: {exc}") from None

    def flatfield_file(self, profile_path: str | Path) -> Path | None:
        """Absolute path of the flat-field image, resolved against the profile file's folder."""
        if self.flatfield_path is None:
            return None
        return (Path(profile_path).parent / self.flatfield_path).resolve()


def check_compatible(
    profile: SetupProfile,
    *,
    materials: Sequence[str] | None = None,
    oxide_nm: float | None = None,
    oxide_tolerance_nm: float = 5.0,
) -> None:
    """Raise ProfileError if the profile lacks a material or was made for another oxide."""
    if oxide_nm is not None and abs(profile.oxide_nm - oxide_nm) > oxide_tolerance_nm:
        raise ProfileError(
            f"the setup profile {profile.name!r} was calibrated on {profile.oxide_nm:g} nm SiO2, "
            f"not {oxide_nm:g} nm; calibrate this substrate or pass the matching --oxide-nm"
        )
    for m in materials or ():
        profile.table(m)


def merge_tables(tables: Iterable[MaterialTable]) -> tuple[MaterialTable, ...]:
    """One table per material; later tables replace earlier ones of the same material."""
    out: dict[str, MaterialTable] = {}
    for t in tables:
        out[t.material] = t
    return tuple(out.values())
