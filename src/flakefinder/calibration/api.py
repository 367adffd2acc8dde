"""``calibrate()``: a setup profile from a few micrographs with labels, masks or nothing at all.

Three modes, chosen by what ``regions`` holds:

* **labels** (regions with ``n_layers``): one robust Gaussian per labelled layer number from the
  eroded interiors; the optics model is fitted to the measured means and predicts the rest;
* **masks** (regions with ``n_layers=None``): the outlined flakes are clustered by colour and the
  clusters get layer numbers from the optics fit (:mod:`flakefinder.calibration.assign`);
* **no labels** (``regions=None``): thin, flat regions are mined from the images
  (:mod:`flakefinder.calibration.mining`) and treated like masks; the call refuses
  (:class:`~flakefinder.errors.CalibrationError`) when they cannot determine a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

import numpy as np

from flakefinder.calibration.profile import (
    CameraSettings,
    LayerColour,
    MaterialTable,
    SetupProfile,
)
from flakefinder.errors import CalibrationError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CalibrationReport", "ClusterReport", "LabelledRegion", "calibrate"]

Mode = Literal["labels", "masks", "none"]
MIN_INTERIOR_PX = 12
MIN_CONFIDENCE_NO_LABELS = 0.5
SUBSTRATE_LOG_TOLERANCE = 0.12
CLIPPED_SUBSTRATE = 247.0  # a substrate level at or above this (stored units) clipped  # max spread of log substrate chromaticity within one setup


@dataclass(frozen=True, eq=False)
class LabelledRegion:
    """One outlined region of one image: a flake (or terrace) of one thickness.

    Parameters
    ----------
    image_index
        Index into the ``images`` passed to :func:`calibrate`.
    mask
        Boolean (H, W) mask of the region, the image's size; or, with ``offset_yx``, a crop of
        it whose top-left pixel is at ``offset_yx`` (row, column) of the image.
    n_layers
        Layer number when known (labels mode); None when only the outline is known.
    offset_yx
        Where a cropped ``mask`` lies in the image; None: ``mask`` is the image's size.
    """

    image_index: int
    mask: np.ndarray
    n_layers: int | None = None
    offset_yx: tuple[int, int] | None = None


@dataclass(frozen=True)
class ClusterReport:
    """One colour cluster (or labelled layer) and the layer number it was given."""

    n_layers: int | None  # None: not given a layer (thick, bulk, residue, outlier)
    contrast_rgb: tuple[float, float, float]
    n_flakes: int
    n_pixels: int
    residual_rgb: tuple[float, float, float] | None  # optics prediction - measured
    regions: tuple[int, ...]  # indices into the regions (or mined regions) in this cluster


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`calibrate` found: the profile plus how it got there."""

    profile: SetupProfile
    material: str
    mode: Mode
    clusters: tuple[ClusterReport, ...]
    region_layers: tuple[int | None, ...]  # per input region (mined regions in no-label mode)
    rms_residual: float
    max_abs_residual: float
    confidence: float  # 0..1: share of the evidence for the chosen layer assignment
    substrate_rgb: tuple[tuple[float, float, float], ...]  # per image
    warnings: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """Human-readable summary, one line per item."""
        t = self.profile.table(self.material)
        out = [
            f"setup {self.profile.name!r}: {self.material} on {self.profile.oxide_nm:g} nm SiO2, "
            f"{self.profile.um_per_px:g} um/px, mode: {self.mode}",
            "substrate (stored RGB): "
            + ", ".join("(" + ", ".join(f"{v:.0f}" for v in s) + ")" for s in self.substrate_rgb),
        ]
        fit = self.profile.optics_fit
        if fit is not None:
            p = dict(fit.parameters)
            out.append(
                f"optics fit: oxide {p.get('oxide_nm', float('nan')):.1f} nm, "
                f"NA {p.get('numerical_aperture', float('nan')):.2f}, "
                f"gamma {p.get('gamma', float('nan')):.2f}, "
                f"residual rms {self.rms_residual:.4f} max {self.max_abs_residual:.4f}"
            )
        out.append(f"layer assignment (confidence {self.confidence:.2f}):")
        for c in self.clusters:
            name = "unassigned" if c.n_layers is None else f"{c.n_layers} L"
            res = (
                ""
                if c.residual_rgb is None
                else ("  residual " + " ".join(f"{v:+.3f}" for v in c.residual_rgb))
            )
            out.append(
                f"  {name:>10}: C = "
                + " ".join(f"{v:+.3f}" for v in c.contrast_rgb)
                + f"  ({c.n_flakes} flakes, {c.n_pixels} px){res}"
            )
        out.append("colour table (R G B contrast, source):")
        for e in t.layers:
            sd = np.sqrt(np.diag(e.covariance))
            out.append(
                f"  {e.n_layers:>3} L: "
                + " ".join(f"{v:+.3f}" for v in e.contrast_rgb)
                + "  sd "
                + " ".join(f"{v:.3f}" for v in sd)
                + f"  {e.source}"
            )
        out.extend(f"alternative: {a}" for a in self.alternatives)
        out.extend(f"warning: {w}" for w in self.warnings)
        return out


def _image_label(names: Sequence[str] | None, i: int) -> str:
    """How messages name image ``i``: its file name when known, else ``image i``."""
    return names[i] if names is not None and i < len(names) else f"image {i}"


def _check_inputs(
    images: Sequence[np.ndarray],
    regions: Sequence[LabelledRegion] | None,
    names: Sequence[str] | None = None,
) -> list[np.ndarray]:
    if len(images) == 0:
        raise CalibrationError("calibration needs at least one image")
    out = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise CalibrationError(
                f"{_image_label(names, i)}: expected an (H, W, 3) uint8 RGB array, "
                f"got {a.shape} {a.dtype}"
            )
        out.append(a)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise CalibrationError(
            "the images have different sizes "
            f"({', '.join(f'{s[1]}x{s[0]}' for s in sorted(shapes))}): one calibration takes "
            "images of one camera setup"
        )
    for k, r in enumerate(regions or ()):
        if not 0 <= r.image_index < len(out):
            raise CalibrationError(f"region {k}: image_index {r.image_index} is out of range")
        m = np.asarray(r.mask)
        ih, iw = out[r.image_index].shape[:2]
        if r.offset_yx is None and m.shape != (ih, iw):
            raise CalibrationError(
                f"region {k}: mask size {m.shape[-1]}x{m.shape[0]} differs from "
                f"{_image_label(names, r.image_index)} ({iw}x{ih})"
            )
        oy, ox = r.offset_yx or (0, 0)
        if m.ndim != 2 or oy < 0 or ox < 0 or oy + m.shape[0] > ih or ox + m.shape[1] > iw:
            raise CalibrationError(
                f"region {k}: a {m.shape[-1]}x{m.shape[0]} mask at (row {oy}, column {ox})"
                f" does not fit in {_image_label(names, r.image_index)} ({iw}x{ih})"
            )
        if not m.any():
            raise CalibrationError(
                f"region {k} ({_image_label(names, r.image_index)}): the mask is empty"
            )
        if r.n_layers is not None and (
            isinstance(r.n_layers, bool) or not isinstance(r.n_layers, int) or r.n_layers < 1
        ):
            raise CalibrationError(f"region {k}: n_layers must be a positive integer")
    return out


def _check_one_setup(
    levels: list[np.ndarray], names: Sequence[str] | None = None
) -> str | None:
    """A warning when the substrate hues differ (several camera settings); not a refusal:
    contrast is per image, so exposure changes cost nothing, and a white-balance change only
    widens the table's spreads."""
    chroma = np.array([np.log(np.maximum(v, 1.0) / np.mean(np.maximum(v, 1.0))) for v in levels])
    spread = chroma.max(axis=0) - chroma.min(axis=0)
    if float(spread.max()) > SUBSTRATE_LOG_TOLERANCE:
        cols = "; ".join(
            f"{_image_label(names, i)}: (" + ", ".join(f"{x:.0f}" for x in v) + ")"
            for i, v in enumerate(levels)
        )
        return (
            "the images' substrate colours differ (several camera settings): one table covers "
            f"them all, with wider spreads: {cols}. Calibrate each setting on its own images "
            "for sharper tables"
        )
    return None


def _material_name(material: str) -> str:
    """A material name outside the optics database, checked (letters, digits, - and _)."""
    name = material.strip()
    if not (1 <= len(name) <= 40) or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise CalibrationError(
            f"material name {material!r} must be 1-40 letters, digits, '-' or '_'"
        )
    return name


def _predicted_cov(
    n: int, measured: dict[int, LayerColour], rms: float
) -> tuple[tuple[float, ...], ...]:
    nearest = min(measured, key=lambda m: (abs(m - n), m))
    cov = measured[nearest].covariance.copy()
    extra = rms**2 + (0.01 * abs(n - nearest)) ** 2
    cov = cov + np.eye(3) * extra
    return tuple(tuple(float(v) for v in row) for row in cov)


def _table_entries(
    material: str,
    groups: dict[int, list[np.ndarray]],
    counts: dict[int, tuple[int, int]],
    fit_layers_max: int,
    start_params: object,
    oxide_nm: float,
    predict_up_to: int,
    physics: bool = True,
) -> tuple[list[LayerColour], object]:
    from flakefinder.calibration.gaussians import robust_gaussian
    from flakefinder.calibration.physics import CameraOpticsParams, fit_physics

    means: dict[int, np.ndarray] = {}
    covs: dict[int, np.ndarray] = {}
    for n, pix in groups.items():
        mean, cov = robust_gaussian(np.concatenate(pix))
        means[n], covs[n] = mean, cov
    fit_on = {n: means[n] for n in means if n <= fit_layers_max}
    sigma = {n: np.sqrt(np.diag(covs[n]) / max(1, counts[n][1]) + 0.01**2) for n in fit_on}
    start = start_params if isinstance(start_params, CameraOpticsParams) else None
    fit = (
        fit_physics(material, oxide_nm, fit_on, sigma=sigma, start=start)
        if fit_on and physics
        else None
    )
    entries: dict[int, LayerColour] = {}
    pred_measured = fit.predict(sorted(means)) if fit is not None else None
    for i, n in enumerate(sorted(means)):
        res = None
        if pred_measured is not None:
            r = pred_measured[i] - means[n]
            res = (float(r[0]), float(r[1]), float(r[2]))
        entries[n] = LayerColour(
            n_layers=n,
            contrast_rgb=(float(means[n][0]), float(means[n][1]), float(means[n][2])),
            covariance_rgb=tuple(tuple(float(v) for v in row) for row in covs[n]),  # type: ignore[arg-type]
            source="measured",
            n_pixels=counts[n][0],
            n_flakes=counts[n][1],
            fit_residual_rgb=res,
        )
    if fit is not None:
        missing = [n for n in range(1, predict_up_to + 1) if n not in entries]
        if missing:
            pred = fit.predict(missing)
            measured_entries = dict(entries)
            for n, mu in zip(missing, pred, strict=True):
                if mu.min() <= -1.0:
                    continue
                entries[n] = LayerColour(
                    n_layers=n,
                    contrast_rgb=(float(mu[0]), float(mu[1]), float(mu[2])),
                    covariance_rgb=_predicted_cov(n, measured_entries, fit.rms_residual),  # type: ignore[arg-type]
                    source="predicted",
                )
    return [entries[n] for n in sorted(entries)], fit


def calibrate(
    images: Sequence[np.ndarray],
    *,
    material: str,
    oxide_nm: float,
    um_per_px: float,
    regions: Sequence[LabelledRegion] | None = None,
    name: str = "setup",
    base: SetupProfile | None = None,
    image_names: Sequence[str] | None = None,
) -> CalibrationReport:
    """Build a setup profile's colour table for ``material`` from micrographs of one setup.

    Parameters
    ----------
    images
        (H, W, 3) uint8 RGB micrographs of one microscope setup (one oxide).
    material
        Flake material (an optics name or alias, e.g. ``"graphene"``, ``"WSe2"``).
    oxide_nm, um_per_px
        Nominal oxide thickness and pixel size.
    regions
        None: no-label mode; regions without ``n_layers``: masks mode; with: labels mode.
    name
        Profile name.
    base
        An existing profile to add this material's table to (same oxide and pixel size).
    image_names
        File names of ``images``, used in messages (default: ``image 0``, ``image 1``, ...).

    Returns
    -------
    CalibrationReport
        The profile and the evidence (assignment, residuals, confidence, printable lines).

    Raises
    ------
    CalibrationError
        Inputs that cannot determine a colour table (see the messages).
    """
    from flakefinder.calibration.assign import assign_layers, cluster_flakes
    from flakefinder.calibration.background import contrast_image, estimate_background
    from flakefinder.calibration.gaussians import FlakeStat, flake_stat
    from flakefinder.calibration.physics import CameraOpticsParams
    from flakefinder.errors import UnknownMaterialError
    from flakefinder.optics import get_material

    physics = True
    try:
        mat = get_material(material).name
    except UnknownMaterialError as exc:
        # no optical constants: a table can still be measured from labelled layer numbers
        if not any(r.n_layers is not None for r in regions or ()):
            raise CalibrationError(
                f"{exc}; without optical constants the layer numbers cannot be predicted: "
                f"calibrate {material} from labels with layer numbers (--labels)"
            ) from None
        mat = _material_name(material)
        physics = False
    if not (math.isfinite(oxide_nm) and 1.0 <= oxide_nm <= 2000.0):
        raise CalibrationError(f"oxide_nm must be in 1..2000 nm, got {oxide_nm}")
    if not (math.isfinite(um_per_px) and 1e-3 <= um_per_px <= 100.0):
        raise CalibrationError(f"um_per_px must be in 0.001..100, got {um_per_px}")
    if base is not None:
        if abs(base.oxide_nm - oxide_nm) > 5.0:
            raise CalibrationError(
                f"the base profile {base.name!r} is for {base.oxide_nm:g} nm SiO2, not {oxide_nm:g} nm"
            )
        if abs(base.um_per_px - um_per_px) > 1e-3 * um_per_px:
            raise CalibrationError(
                f"the base profile {base.name!r} has {base.um_per_px:g} um/px, not {um_per_px:g}"
            )
    imgs = _check_inputs(images, regions, image_names)
    backgrounds = [
        estimate_background(im, what=_image_label(image_names, i)) for i, im in enumerate(imgs)
    ]
    levels = [np.asarray(b.substrate_rgb) for b in backgrounds]
    mixed = _check_one_setup(levels, image_names)
    noise = np.median(np.array([b.noise_rgb for b in backgrounds]), axis=0)
    contrasts: dict[int, np.ndarray] = {}

    def contrast_of(i: int) -> np.ndarray:
        if i not in contrasts:
            c = contrast_image(imgs[i], backgrounds[i])
            if mode_labels:
                # a channel clipped on this image's substrate carries no contrast: missing
                clipped = np.asarray(backgrounds[i].substrate_rgb) >= CLIPPED_SUBSTRATE
                c[:, :, clipped] = np.nan
            contrasts[i] = c
        return contrasts[i]

    warnings: list[str] = [] if mixed is None else [mixed]
    mode_labels = regions is not None and any(r.n_layers is not None for r in regions)
    mined: list[tuple[int, int, int, np.ndarray]] = []
    if regions is None:
        from flakefinder.calibration.mining import mine_regions

        mode: Mode = "none"
        mined = [
            (i, y0, x0, m)
            for i in range(len(imgs))
            for y0, x0, m in mine_regions(contrast_of(i), backgrounds[i], um_per_px=um_per_px)
        ]
        work: list[LabelledRegion] = []
        if not mined:
            raise CalibrationError(
                "no thin flakes found in the images: without labels the colour table cannot be "
                "determined; outline a few flakes (--masks) or label them (--labels)"
            )
    else:
        labelled = [r for r in regions if r.n_layers is not None]
        mode = "labels" if labelled else "masks"
        if labelled and len(labelled) < len(regions):
            warnings.append(
                f"{len(regions) - len(labelled)} regions without a layer number were ignored"
            )
        work = list(regions)
        if not work:
            raise CalibrationError("no regions given: pass regions=None for no-label mode")
    stats: list[FlakeStat] = []
    region_of: list[int] = []
    skipped = 0
    crops: list[tuple[int, tuple[int, int], np.ndarray]] = (
        [(i, (y0, x0), m) for i, y0, x0, m in mined]
        if mode == "none"
        else [(r.image_index, r.offset_yx or (0, 0), np.asarray(r.mask, dtype=bool)) for r in work]
    )
    for k, (img_i, off, m) in enumerate(crops):
        if mode == "labels" and work[k].n_layers is None:
            continue
        s = flake_stat(contrast_of(img_i), m, image_index=img_i, region_index=k, offset=off)
        if s is None or s.n_pixels < MIN_INTERIOR_PX:
            skipped += 1
            continue
        stats.append(s)
        region_of.append(k)
    if skipped:
        warnings.append(f"{skipped} regions too small to measure (< {MIN_INTERIOR_PX} px inside)")
    if not stats:
        raise CalibrationError("no region has enough interior pixels to measure its colour")

    start = None
    if base is not None and base.optics_fit is not None:
        try:
            start = CameraOpticsParams.from_optics_fit(base.optics_fit)
        except CalibrationError:
            start = None
    region_layers: list[int | None] = [None] * len(crops)
    clusters_out: list[ClusterReport] = []
    confidence = 1.0
    alternatives: list[str] = []
    groups: dict[int, list[np.ndarray]] = {}
    counts: dict[int, tuple[int, int]] = {}
    if mode == "labels":
        for s, k in zip(stats, region_of, strict=True):
            n = work[k].n_layers
            assert n is not None
            groups.setdefault(n, []).append(s.pixels)
            px, fl = counts.get(n, (0, 0))
            counts[n] = (px + s.n_pixels, fl + 1)
            region_layers[k] = n
    else:
        clusters = cluster_flakes(stats, noise_rgb=noise)
        result = assign_layers(clusters, material=mat, oxide_nm=oxide_nm, start=start)
        confidence = result.confidence
        for c, n in zip(clusters, result.layers, strict=True):
            if n is None:
                continue
            for i in c.members:
                groups.setdefault(n, []).append(stats[i].pixels)
                region_layers[region_of[i]] = n
            px, fl = counts.get(n, (0, 0))
            counts[n] = (px + c.n_pixels, fl + len(c.members))
        for lay, score in result.alternatives[1:3]:
            alternatives.append(
                "layers "
                + ", ".join("-" if n is None else str(n) for n in lay)
                + f" (score {score:.1f} vs {result.score:.1f})"
            )
        if not groups:
            raise CalibrationError(
                f"none of the {len(clusters)} colour clusters matches the thin-film model of "
                f"{mat} on {oxide_nm:g} nm SiO2: the colour table cannot be determined from "
                "these images; label a few flakes with layer numbers (--labels)"
            )
        if mode == "none" and confidence < MIN_CONFIDENCE_NO_LABELS:
            raise CalibrationError(
                f"the images do not determine the layer numbers (confidence {confidence:.2f} "
                f"< {MIN_CONFIDENCE_NO_LABELS}); label a few flakes (--labels) or outline them "
                "(--masks)"
            )
    predict_up_to = max(4, max(groups))
    entries, fit = _table_entries(
        mat, groups, counts, 12, start, oxide_nm, predict_up_to, physics=physics
    )
    table = MaterialTable(mat, tuple(entries))
    measured_res = [e.fit_residual_rgb for e in entries if e.fit_residual_rgb is not None]
    res_arr = np.array(measured_res) if measured_res else np.zeros((0, 3))
    rms = float(np.sqrt(np.mean(res_arr**2))) if res_arr.size else 0.0
    mx = float(np.max(np.abs(res_arr))) if res_arr.size else 0.0
    # cluster reports, from the table's measured entries (labels mode: one per layer)
    if mode == "labels":
        for e in entries:
            if e.source != "measured":
                continue
            clusters_out.append(
                ClusterReport(
                    e.n_layers,
                    e.contrast_rgb,
                    e.n_flakes,
                    e.n_pixels,
                    e.fit_residual_rgb,
                    tuple(k for k, n in enumerate(region_layers) if n == e.n_layers),
                )
            )
    else:
        by_n = {e.n_layers: e for e in entries}
        for c, n in zip(clusters, result.layers, strict=True):
            entry = by_n.get(n) if n is not None else None
            clusters_out.append(
                ClusterReport(
                    n,
                    (float(c.mean_rgb[0]), float(c.mean_rgb[1]), float(c.mean_rgb[2])),
                    len(c.members),
                    c.n_pixels,
                    None if entry is None else entry.fit_residual_rgb,
                    tuple(region_of[i] for i in c.members),
                )
            )
    substrate = tuple((float(v[0]), float(v[1]), float(v[2])) for v in levels)
    med_level = np.median(np.array(levels), axis=0)
    optics = None if fit is None else fit.optics_fit()  # type: ignore[attr-defined]
    gamma = 1.0 if fit is None else fit.params.gamma  # type: ignore[attr-defined]
    na = None if fit is None else fit.params.numerical_aperture  # type: ignore[attr-defined]
    notes = f"calibrated from {len(imgs)} images, mode {mode}, confidence {confidence:.2f}"
    if base is None:
        profile = SetupProfile(
            name=name,
            um_per_px=float(um_per_px),
            oxide_nm=float(oxide_nm),
            materials=(table,),
            numerical_aperture=na,
            camera=CameraSettings(encoding="gamma", gamma=float(min(max(gamma, 0.2), 5.0))),
            substrate_rgb=(float(med_level[0]), float(med_level[1]), float(med_level[2])),
            optics_fit=optics,
            created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            notes=notes,
        )
    else:
        profile = replace(base.with_material(table), name=name, notes=notes)
    return CalibrationReport(
        profile=profile,
        material=mat,
        mode=mode,
        clusters=tuple(clusters_out),
        region_layers=tuple(region_layers),
        rms_residual=rms,
        max_abs_residual=mx,
        confidence=float(confidence),
        substrate_rgb=substrate,
        warnings=tuple(warnings),
        alternatives=tuple(alternatives),
    )
