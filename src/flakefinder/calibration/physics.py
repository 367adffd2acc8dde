"""Fit a camera + optics model to measured flake contrasts and predict the missing layers.

Forward model (profile convention, ``C = I / I_bg - 1`` on stored camera values, RGB order):

1. spectral reflectance of an ``n``-layer flake and of the bare substrate from the transfer-matrix
   model (:class:`flakefinder.optics.ContrastModel`), averaged over the objective's aperture ``NA``,
   for an oxide of ``oxide_scale * oxide_nm`` (the nominal oxide is trusted to +-15 %);
2. effective channel responses: the default :class:`~flakefinder.optics.CameraModel` Gaussians with
   their three peak wavelengths shifted and their widths scaled by one common factor (this also
   absorbs the lamp spectrum, IR filter and white balance, which only rescale each channel);
3. the camera's tone curve as a power law: stored = linear ** (1 / gamma), so the stored-value
   contrast is ``(S_flake / S_substrate) ** (1 / gamma) - 1`` (white-balance gains cancel).

The parameters are found by regularised least squares (:func:`scipy.optimize.least_squares`):
residuals are (model - measured) / sigma per channel, plus prior terms that keep each parameter
near a typical microscope (a MAP fit). The priors matter when there are fewer measured numbers
than parameters (one layer of WSe2 gives three numbers for seven parameters); they are the same
for every material and oxide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy.optimize import least_squares

from flakefinder.calibration.profile import OpticsFit
from flakefinder.errors import CalibrationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "PARAMETERS",
    "CameraOpticsParams",
    "PhysicsFit",
    "fit_physics",
    "predict_contrast",
]

# name, default, lower bound, upper bound, prior sigma (in the parameter's own units)
_SPEC: tuple[tuple[str, float, float, float, float], ...] = (
    ("oxide_scale", 1.0, 0.85, 1.15, 0.05),
    ("numerical_aperture", 0.45, 0.0, 0.9, 0.2),
    ("log_gamma", 0.0, math.log(0.4), math.log(3.0), 0.6),
    ("red_shift_nm", 0.0, -60.0, 60.0, 20.0),
    ("green_shift_nm", 0.0, -60.0, 60.0, 20.0),
    ("blue_shift_nm", 0.0, -60.0, 60.0, 20.0),
    ("log_width", 0.0, math.log(0.5), math.log(2.0), 0.3),
    ("crosstalk", 0.0, 0.0, 0.6, 0.2),
    ("flare", 0.0, 0.0, 0.4, 0.1),
)
PARAMETERS: tuple[str, ...] = tuple(s[0] for s in _SPEC)
_DEFAULT = np.array([s[1] for s in _SPEC])
_LO = np.array([s[2] for s in _SPEC])
_HI = np.array([s[3] for s in _SPEC])
_PRIOR = np.array([s[4] for s in _SPEC])


@dataclass(frozen=True)
class CameraOpticsParams:
    """One point of the fitted parameter space (see the module docstring)."""

    oxide_scale: float = 1.0
    numerical_aperture: float = 0.45
    gamma: float = 1.0
    red_shift_nm: float = 0.0
    green_shift_nm: float = 0.0
    blue_shift_nm: float = 0.0
    width_scale: float = 1.0
    crosstalk: float = 0.0
    flare: float = 0.0

    @classmethod
    def from_vector(cls, x: np.ndarray) -> CameraOpticsParams:
        """Build from the internal parameter vector (log gamma, log width)."""
        return cls(
            oxide_scale=float(x[0]),
            numerical_aperture=float(x[1]),
            gamma=float(math.exp(x[2])),
            red_shift_nm=float(x[3]),
            green_shift_nm=float(x[4]),
            blue_shift_nm=float(x[5]),
            width_scale=float(math.exp(x[6])),
            crosstalk=float(x[7]),
            flare=float(x[8]),
        )

    def to_vector(self) -> np.ndarray:
        """The internal parameter vector (inverse of :meth:`from_vector`)."""
        return np.array(
            [
                self.oxide_scale,
                self.numerical_aperture,
                math.log(self.gamma),
                self.red_shift_nm,
                self.green_shift_nm,
                self.blue_shift_nm,
                math.log(self.width_scale),
                self.crosstalk,
                self.flare,
            ]
        )

    def as_pairs(self, oxide_nm: float) -> tuple[tuple[str, float], ...]:
        """Named values for :class:`~flakefinder.calibration.profile.OpticsFit`."""
        return (
            ("blue_shift_nm", self.blue_shift_nm),
            ("crosstalk", self.crosstalk),
            ("flare", self.flare),
            ("gamma", self.gamma),
            ("green_shift_nm", self.green_shift_nm),
            ("numerical_aperture", self.numerical_aperture),
            ("oxide_nm", self.oxide_scale * oxide_nm),
            ("oxide_scale", self.oxide_scale),
            ("red_shift_nm", self.red_shift_nm),
            ("width_scale", self.width_scale),
        )

    @classmethod
    def from_optics_fit(cls, fit: OpticsFit) -> CameraOpticsParams:
        """Read back the parameters stored in a profile's ``optics_fit``."""
        p = dict(fit.parameters)
        try:
            return cls(
                oxide_scale=p["oxide_scale"],
                numerical_aperture=p["numerical_aperture"],
                gamma=p["gamma"],
                red_shift_nm=p["red_shift_nm"],
                green_shift_nm=p["green_shift_nm"],
                blue_shift_nm=p["blue_shift_nm"],
                width_scale=p["width_scale"],
                crosstalk=p.get("crosstalk", 0.0),
                flare=p.get("flare", 0.0),
            )
        except KeyError as exc:
            raise CalibrationError(f"the profile's optics fit lacks {exc.args[0]!r}") from None


_OX_STEP_NM = 0.3  # oxide grid step
_NA_STEP = 0.02  # aperture grid step
_MAX_NODES = 4096
_nodes: dict[tuple[str, float, float], dict[int, np.ndarray]] = {}


def _node_spectra(material: str, oxide_nm: float, na: float, layers: tuple[int, ...]) -> np.ndarray:
    """Reflectance (K + 1, W): the substrate (row 0) and ``layers``, at one grid node (cached)."""
    from flakefinder.optics import get_material, oxide_nk, silicon_nk
    from flakefinder.optics.tmm import reflectance_na

    key = (material, oxide_nm, na)
    cache = _nodes.get(key)
    if cache is None:
        if len(_nodes) >= _MAX_NODES:
            _nodes.clear()
        cache = _nodes[key] = {}
    missing = [n for n in (0, *layers) if n not in cache]
    if missing:
        wl = _wavelengths()
        ox, si = oxide_nk(wl), silicon_nk(wl)
        mat = get_material(material)
        if 0 in missing:
            cache[0] = np.asarray(reflectance_na(wl, [(ox, oxide_nm)], si, numerical_aperture=na))
        groups: dict[bool, list[int]] = {}
        for n in missing:
            if n > 0:
                groups.setdefault(n == 1 and mat.monolayer_nk_file is not None, []).append(n)
        for mono, ns in groups.items():
            film = mat.nk(wl, n_layers=1 if mono else None)
            thick = np.array([mat.thickness_nm(n) for n in ns])[:, None]
            r = reflectance_na(wl, [(film, thick), (ox, oxide_nm)], si, numerical_aperture=na)
            for n, row in zip(ns, np.broadcast_to(r, (len(ns), wl.size)), strict=True):
                cache[n] = np.array(row)
    return np.stack([cache[n] for n in (0, *layers)])


def _spectra(
    material: str, oxide_nm: float, numerical_aperture: float, layers: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance spectra (K, W) of the flakes and (W,) of the bare substrate.

    Bilinear interpolation between cached transfer-matrix results on a fine (oxide, NA) grid, so
    the many small parameter steps of a least-squares fit reuse a few exact evaluations.
    """
    step = _OX_STEP_NM
    fo = oxide_nm / step
    io = math.floor(fo)
    to = fo - io
    fn = min(max(numerical_aperture, 0.0), 0.9) / _NA_STEP
    ina = min(math.floor(fn), round(0.9 / _NA_STEP) - 1)
    tn = fn - ina
    acc: np.ndarray | None = None
    for do, wo in ((0, 1.0 - to), (1, to)):
        for dn, wn in ((0, 1.0 - tn), (1, tn)):
            w = wo * wn
            if w == 0.0:
                continue
            node = _node_spectra(
                material, round((io + do) * step, 6), round((ina + dn) * _NA_STEP, 6), layers
            )
            acc = node * w if acc is None else acc + node * w
    assert acc is not None
    return acc[1:], acc[0]


@lru_cache(maxsize=64)
def _canonical(material: str) -> str:
    from flakefinder.optics import get_material

    return get_material(material).name


@lru_cache(maxsize=1)
def _wavelengths() -> np.ndarray:
    from flakefinder.optics import CameraModel

    return np.asarray(CameraModel().wavelengths_nm)


@lru_cache(maxsize=1)
def _camera_base() -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Wavelength grid, illuminant and the default peaks / widths of :class:`CameraModel`."""
    from flakefinder.optics import CameraModel

    cam = CameraModel()
    shape = (
        cam.red_peak_nm,
        cam.green_peak_nm,
        cam.blue_peak_nm,
        cam.red_fwhm_nm,
        cam.green_fwhm_nm,
        cam.blue_fwhm_nm,
    )
    return np.asarray(cam.wavelengths_nm), np.asarray(cam.illuminant), shape


def _weights(p: CameraOpticsParams) -> np.ndarray:
    """Normalised channel weights (3, W): CameraModel's Gaussians, shifted, widened, mixed."""
    wl, illum, (rp, gp, bp, rw, gw, bw) = _camera_base()
    peaks = np.array([rp + p.red_shift_nm, gp + p.green_shift_nm, bp + p.blue_shift_nm])
    sigma = np.array([rw, gw, bw]) * p.width_scale / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    w = illum[None, :] * np.exp(-0.5 * ((wl[None, :] - peaks[:, None]) / sigma[:, None]) ** 2)
    w = w / w.sum(axis=1, keepdims=True)
    return cast("np.ndarray", (1.0 - p.crosstalk) * w + p.crosstalk * w.mean(axis=0, keepdims=True))


def predict_contrast(
    material: str, oxide_nm: float, params: CameraOpticsParams, layers: Sequence[int]
) -> np.ndarray:
    """Stored-value contrast ``I / I_bg - 1`` (K, 3), RGB, of ``layers`` under ``params``."""
    if not layers:
        return np.zeros((0, 3))
    name = _canonical(material)
    ox = float(oxide_nm) * params.oxide_scale
    flakes, sub = _spectra(name, ox, params.numerical_aperture, tuple(int(n) for n in layers))
    w = _weights(params)
    rel = (flakes @ w.T) / (sub @ w.T)[None, :]
    rel = (rel + params.flare) / (1.0 + params.flare)
    return cast("np.ndarray", np.power(np.clip(rel, 1e-6, None), 1.0 / params.gamma) - 1.0)


@dataclass(frozen=True)
class PhysicsFit:
    """Result of :func:`fit_physics`."""

    material: str
    oxide_nm: float
    params: CameraOpticsParams
    fitted_layers: tuple[int, ...]
    residual_rgb: np.ndarray  # (K, 3) model - measured for the fitted layers
    cost: float  # half the sum of squared normalised residuals incl. priors

    @property
    def rms_residual(self) -> float:
        """Root mean square of the per-channel contrast residuals of the fitted layers."""
        return float(np.sqrt(np.mean(self.residual_rgb**2))) if self.residual_rgb.size else 0.0

    @property
    def max_abs_residual(self) -> float:
        """Largest absolute per-channel residual of the fitted layers."""
        return float(np.max(np.abs(self.residual_rgb))) if self.residual_rgb.size else 0.0

    def predict(self, layers: Sequence[int]) -> np.ndarray:
        """Contrast (K, 3) of any layer numbers under the fitted parameters."""
        return predict_contrast(self.material, self.oxide_nm, self.params, layers)

    def optics_fit(self) -> OpticsFit:
        """The profile's record of this fit."""
        return OpticsFit(
            parameters=self.params.as_pairs(self.oxide_nm),
            rms_residual=self.rms_residual,
            max_abs_residual=self.max_abs_residual,
            fitted_on=tuple(f"{self.material}:{n}" for n in self.fitted_layers),
        )


_STARTS: tuple[dict[str, float], ...] = (
    {},
    {"log_gamma": math.log(2.2)},
    {"log_gamma": math.log(0.6)},
    {"numerical_aperture": 0.1},
    {"numerical_aperture": 0.8},
)


def fit_physics(
    material: str,
    oxide_nm: float,
    measured: Mapping[int, np.ndarray],
    *,
    sigma: Mapping[int, np.ndarray] | None = None,
    start: CameraOpticsParams | None = None,
    fixed: Sequence[str] = (),
    n_starts: int = len(_STARTS),
    max_nfev: int = 200,
    loss: str = "linear",
    prior: CameraOpticsParams | None = None,
) -> PhysicsFit:
    """Fit :class:`CameraOpticsParams` to measured contrasts ``{n_layers: (3,) RGB}``.

    Parameters
    ----------
    material, oxide_nm
        The flake material (an optics name such as ``"graphene"``) and the nominal oxide.
    measured
        Mean stored-value contrast per layer number, RGB.
    sigma
        Uncertainty (3,) per layer; default 0.01 per channel.
    start
        Starting point, and prior centre unless ``prior`` is given (default: a typical
        microscope).
    fixed
        Names from :data:`PARAMETERS` held at the start value.
    n_starts
        How many starting points to try (1: only ``start``); the lowest cost wins.
    max_nfev
        Function evaluations per start.
    loss
        ``"linear"`` (least squares) or ``"soft_l1"`` (robust to a few badly matched layers).
    prior
        Centre of the parameter priors (default: ``start``); fixed parameters stay at ``start``.

    Returns
    -------
    PhysicsFit
        Fitted parameters with the residuals on the fitted layers.
    """
    if not measured:
        raise CalibrationError("the optics fit needs at least one measured layer")
    layers = tuple(sorted(int(n) for n in measured))
    y = np.array([np.asarray(measured[n], dtype=float) for n in layers])
    if y.shape != (len(layers), 3) or not np.all(np.isfinite(y)):
        raise CalibrationError("measured contrasts must be finite RGB triples")
    s = np.array(
        [
            np.asarray(sigma[n], dtype=float) if sigma and n in sigma else np.full(3, 0.01)
            for n in layers
        ]
    )
    s = np.clip(s, 0.003, None)
    x_start = _DEFAULT if start is None else start.to_vector()
    centre = x_start if prior is None else prior.to_vector()
    free = np.array([name not in fixed for name in PARAMETERS])

    def full(xf: np.ndarray) -> np.ndarray:
        x = x_start.copy()
        x[free] = xf
        return x

    def resid(xf: np.ndarray) -> np.ndarray:
        x = full(xf)
        pred = predict_contrast(material, oxide_nm, CameraOpticsParams.from_vector(x), layers)
        return np.concatenate([((pred - y) / s).ravel(), ((x - centre) / _PRIOR)[free]])

    best: tuple[float, np.ndarray] | None = None
    starts = [x_start] + [
        np.array([st.get(name, x_start[i]) for i, name in enumerate(PARAMETERS)])
        for st in _STARTS[1:]
    ]
    for x0 in starts[: max(1, n_starts)]:
        x0f = np.clip(x0, _LO + 1e-9, _HI - 1e-9)[free]
        res = least_squares(
            resid,
            x0f,
            bounds=(_LO[free], _HI[free]),
            x_scale=_PRIOR[free],
            max_nfev=max_nfev,
            diff_step=1e-3,
            loss=loss,
        )
        if best is None or res.cost < best[0]:
            best = (float(res.cost), res.x)
    assert best is not None
    params = CameraOpticsParams.from_vector(full(best[1]))
    pred = predict_contrast(material, oxide_nm, params, layers)
    return PhysicsFit(material, float(oxide_nm), params, layers, pred - y, best[0])
