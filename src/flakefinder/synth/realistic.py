"""Realistic, randomised micrographs with exact ground truth (the ``realistic`` synth style).

Each image draws its own microscope (oxide 70-300 nm, NA 0.3-0.9, magnification 5-100x, lamp
colour temperature and camera channel responses), its own camera state
(:class:`~flakefinder.synth.realistic_camera.CameraSettings`: white balance on the substrate or on
white, auto-exposure, sRGB/gamma, JPEG quality, per-channel defocus, vignetting with flat-field,
noise) and a crowded scene: bulk crystals, thick flakes with interference colours, thin flakes
with terraces, folds, wrinkles, bubbles and cracks, overlapping flakes, residue films, glue
streaks, particle clusters, scratches and sometimes a chip edge.

Ground truth is exact: an instance is one connected region of one thickness of a 1-40-layer
flake (see :mod:`flakefinder.synth.realistic_scene`).

    from flakefinder.synth.realistic import render_realistic
    sample = render_realistic(512, 512, ["graphene"], seed=0)
    sample.image, sample.instances, sample.settings
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from flakefinder.synth import realistic_clutter as clutter
from flakefinder.synth import shapes
from flakefinder.synth.chip import check_materials
from flakefinder.synth.instances import GroundTruthInstance
from flakefinder.synth.realistic_camera import CameraSettings, decode_jpeg, expose, jpeg_bytes
from flakefinder.synth.realistic_scene import Scene

#: Camera pixel pitch behind a 1x tube (µm): 20x gives 0.3844 µm/px as on the 2DMatGMM setup.
SENSOR_PITCH_UM = 7.688


@dataclass(frozen=True)
class OpticsSettings:
    """The drawn microscope: oxide, objective, lamp and camera channel responses."""

    oxide_thickness_nm: float = 90.0
    numerical_aperture: float = 0.55
    magnification: float = 20.0
    lamp_temperature_k: float = 3200.0
    channel_shift_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def um_per_px(self) -> float:
        """Pixel size on the sample."""
        return SENSOR_PITCH_UM / self.magnification


@dataclass(frozen=True)
class RealisticStyle:
    """Ranges the realistic renderer draws from (defaults: the ranges of issue 10)."""

    oxide_range_nm: tuple[float, float] = (70.0, 300.0)
    na_range: tuple[float, float] = (0.3, 0.9)
    magnification_range: tuple[float, float] = (5.0, 100.0)
    lamp_range_k: tuple[float, float] = (2700.0, 6500.0)
    substrate_level_range: tuple[float, float] = (0.55, 0.85)
    jpeg_quality_range: tuple[int, int] = (60, 95)
    grey_balance_probability: float = 0.5
    srgb_probability: float = 0.4  # else a power-law gamma drawn from gamma_range
    gamma_range: tuple[float, float] = (1.0, 2.2)
    saturation_range: tuple[float, float] = (1.2, 3.2)  # colour correction, white-balanced images
    blur_range_px: tuple[float, float] = (0.4, 1.6)  # in-focus PSF sigma (defocus adds per channel)
    chip_edge_probability: float = 0.1
    clutter_scale: float = 1.0  # multiplies every clutter density


@dataclass(frozen=True)
class RealisticSample:
    """One rendered image (RGB uint8, as decoded from ``jpeg``) and its exact ground truth."""

    image: np.ndarray
    jpeg: bytes
    instances: list[GroundTruthInstance]
    optics: OpticsSettings
    camera: CameraSettings
    material: str

    def metadata(self) -> dict[str, Any]:
        """JSON-able description of the drawn optics and camera."""
        return {
            "material": self.material,
            "um_per_px": self.optics.um_per_px,
            "optics": asdict(self.optics),
            "camera": asdict(self.camera),
        }


def draw_optics(rng: np.random.Generator, style: RealisticStyle) -> OpticsSettings:
    """A random microscope within ``style``'s ranges (common oxides 90/285 nm drawn more often)."""
    lo, hi = style.oxide_range_nm
    pick = rng.random()
    if pick < 0.35 and lo <= 90.0 <= hi:
        oxide = 90.0 + float(rng.normal(0, 3))
    elif pick < 0.55 and lo <= 285.0 <= hi:
        oxide = 285.0 + float(rng.normal(0, 5))
    else:
        oxide = float(rng.uniform(lo, hi))
    mag_lo, mag_hi = style.magnification_range
    return OpticsSettings(
        oxide_thickness_nm=float(np.clip(oxide, lo, hi)),
        numerical_aperture=float(rng.uniform(*style.na_range)),
        magnification=float(np.exp(rng.uniform(np.log(mag_lo), np.log(mag_hi)))),
        lamp_temperature_k=float(rng.uniform(*style.lamp_range_k)),
        channel_shift_nm=tuple(float(v) for v in rng.normal(0, 8, 3)),  # type: ignore[arg-type]
    )


def draw_camera(rng: np.random.Generator, style: RealisticStyle) -> CameraSettings:
    """A random camera state within ``style``'s ranges."""
    base_blur = float(rng.uniform(*style.blur_range_px))
    defocus = rng.uniform(0.0, 0.8, 3)
    chroma = 1.0 + rng.normal(0.0, 0.0015, 3)
    chroma[1] = 1.0
    srgb = rng.random() < style.srgb_probability
    grey = rng.random() < style.grey_balance_probability
    return CameraSettings(
        white_balance="substrate" if grey else "white",
        saturation=float(rng.uniform(1.0, 1.4) if grey else rng.uniform(*style.saturation_range)),
        white_balance_jitter_rgb=tuple(float(v) for v in 1.0 + rng.normal(0, 0.04, 3)),  # type: ignore[arg-type]
        substrate_level=float(rng.uniform(*style.substrate_level_range)),
        encoding="srgb" if srgb else "gamma",
        gamma=2.2 if srgb else float(rng.uniform(*style.gamma_range)),
        jpeg_quality=int(
            rng.integers(style.jpeg_quality_range[0], style.jpeg_quality_range[1] + 1)
        ),
        blur_sigma_px_rgb=tuple(float(base_blur + d) for d in defocus),  # type: ignore[arg-type]
        chromatic_scale_rgb=tuple(float(v) for v in chroma),  # type: ignore[arg-type]
        vignetting=float(rng.uniform(0.0, 0.4)),
        flat_field_efficacy=float(rng.uniform(0.6, 1.0)),
        gradient_xy=(float(rng.normal(0, 0.02)), float(rng.normal(0, 0.02))),
        read_noise=float(rng.uniform(0.001, 0.006)),
        full_well_e=float(rng.uniform(3000.0, 20000.0)),
    )


def _colour_model(optics: OpticsSettings) -> Any:
    from flakefinder.optics import ContrastModel
    from flakefinder.optics.camera import CameraModel

    d = optics.channel_shift_nm
    camera = CameraModel(
        red_peak_nm=600.0 + d[0],
        green_peak_nm=535.0 + d[1],
        blue_peak_nm=460.0 + d[2],
        illuminant_temperature_k=optics.lamp_temperature_k,
    )
    return ContrastModel(optics.oxide_thickness_nm, optics.numerical_aperture, camera, n_angles=4)


def _layers(rng: np.random.Generator, kind: str) -> int:
    if kind == "thin":
        n = np.arange(1, 11)
        p = n**-0.8
        return int(rng.choice(n, p=p / p.sum()))
    if kind == "thick":
        return int(rng.integers(11, 41))
    # bulk: mostly thick graphite-like pieces (>= 200 layers, near-neutral mirrors), some
    # thinner ones with interference colours; a log grid of 24 values keeps the colours cached
    lo, hi = (200.0, 3000.0) if rng.random() < 0.7 else (41.0, 200.0)
    grid = np.unique(np.rint(np.geomspace(41, 3000, 24)))
    pick = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return int(grid[int(np.argmin(np.abs(np.log(grid) - np.log(pick))))])


def _flake_polygon(rng: np.random.Generator, center: np.ndarray, size_px: float) -> np.ndarray:
    orient = float(rng.uniform(0, np.pi / 3))
    poly = shapes.crystal_polygon(
        rng,
        (float(center[0]), float(center[1])),
        size_px,
        orient,
        step_deg=30 if rng.random() < 0.4 else 60,
    )
    if rng.random() < 0.3:
        poly = shapes.add_notch(rng, poly)
    if rng.random() < 0.4:
        stretch = float(rng.uniform(1.5, 4.0))  # elongated slivers, as exfoliation gives
        axis = float(rng.uniform(0, np.pi))
        c, s = np.cos(axis), np.sin(axis)
        rot = np.array([[c, -s], [s, c]])
        poly = (poly - center) @ rot @ np.diag([stretch, 1.0 / np.sqrt(stretch)]) @ rot.T + center
    return shapes.tear_edges(rng, poly, 0.2)


def build_scene(
    rng: np.random.Generator,
    height_px: int,
    width_px: int,
    um_per_px: float,
    material: str,
    model: Any,
    style: RealisticStyle,
) -> Scene:
    """A crowded scene of one material (flakes and clutter) in pixel space."""
    colours: dict[int, tuple[float, float, float]] = {}

    def colour(mat: str, n: int) -> tuple[float, float, float]:
        if n not in colours:
            rgb = np.asarray(model.relative_rgb(mat, n), dtype=float)
            colours[n] = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
        return colours[n]

    scene = Scene(height_px, width_px, colour)
    area_mm2 = height_px * width_px * um_per_px**2 * 1e-6
    k = style.clutter_scale
    clutter.scratches(scene, rng, int(rng.poisson(0.6 * k)))
    counts = {
        "bulk": int(rng.poisson(k * rng.uniform(30, 400) * area_mm2)),
        "thick": int(rng.poisson(k * rng.uniform(20, 200) * area_mm2)),
        "thin": max(int(rng.poisson(rng.uniform(10, 60) * area_mm2)), int(rng.integers(1, 4))),
    }
    order = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(order)
    edged: list[np.ndarray] = []
    pad = 0.1 * max(height_px, width_px)
    for flake_id, kind in enumerate(order):
        n0 = _layers(rng, kind)
        lo_um, hi_um = (3.0, 150.0) if kind == "bulk" else (1.5, 60.0 if kind == "thin" else 80.0)
        size_px = float(np.exp(rng.uniform(np.log(lo_um), np.log(hi_um)))) / um_per_px / 2.0
        size_px = min(size_px, 0.6 * max(height_px, width_px))
        center = rng.uniform((-pad, -pad), (width_px + pad, height_px + pad))
        poly = _flake_polygon(rng, center, max(size_px, 1.0))
        scene.paint_flake(poly, material, n0, flake_id)
        parent, n = poly, n0
        if rng.random() < 0.35:
            for _ in range(int(rng.integers(1, 3))):
                inner = shapes.terrace_inside(rng, parent, float(rng.uniform(0, np.pi / 3)))
                if len(inner) < 3 or shapes.polygon_area(inner) < 0.03 * shapes.polygon_area(poly):
                    break
                n = (
                    n + int(rng.choice([1, 1, 2, 3]))
                    if n <= 10
                    else n + 1 + int(n * rng.uniform(0.1, 0.6))
                )
                scene.paint_flake(inner, material, n, flake_id, stack=False)
                parent = inner
        if kind != "bulk" and rng.random() < 0.12:
            cap = clutter.fold_region(rng, poly)
            if len(cap) >= 3:
                scene.paint_flake(cap, material, 2 * n0, flake_id, stack=False)
        if rng.random() < 0.3:
            clutter.wrinkles_and_bubbles(scene, rng, poly, flake_id, um_per_px)
        if rng.random() < 0.1:
            clutter.crack(scene, rng, poly, flake_id)
        if n0 > 20:
            edged.append(poly)
    clutter.bright_edges(scene, rng, edged)
    clutter.particles(
        scene,
        rng,
        um_per_px,
        int(rng.poisson(k * rng.uniform(20, 400) * area_mm2)),
        int(rng.poisson(k * rng.uniform(1, 20) * area_mm2)),
    )
    clutter.residue_films(
        scene, rng, um_per_px, int(rng.poisson(k * rng.uniform(1, 12) * area_mm2 + 0.3))
    )
    clutter.glue_streaks(scene, rng, um_per_px, int(rng.poisson(0.4 * k)))
    if rng.random() < style.chip_edge_probability:
        clutter.chip_edge(scene, rng)
    return scene


def render_realistic(
    width_px: int,
    height_px: int,
    materials: Sequence[str],
    *,
    seed: int = 0,
    style: RealisticStyle = RealisticStyle(),
    min_area_px: int = 20,
    optics: OpticsSettings | None = None,
    camera: CameraSettings | None = None,
) -> RealisticSample:
    """One realistic random micrograph and its exact ground truth (deterministic for ``seed``).

    Parameters
    ----------
    width_px, height_px : int
        Image size in pixels.
    materials : sequence of str
        The image's material is drawn from these (flakes and bulk are of one material).
    seed : int
        Random seed; same inputs give identical bytes.
    style : RealisticStyle
        The ranges to draw from.
    min_area_px : int
        Smallest ground-truth instance.
    optics, camera : optional
        Fixed microscope and camera (one setup for a whole set, e.g. to calibrate a profile on
        some images and detect on others); drawn from ``style`` when None.

    Returns
    -------
    RealisticSample
        The decoded JPEG image, its bytes, the instances and the drawn settings.
    """
    if width_px < 8 or height_px < 8:
        raise ValueError(f"image must be at least 8x8 px, got {width_px}x{height_px}")
    mats = check_materials(materials)
    rng = np.random.default_rng(seed)
    material = mats[int(rng.integers(len(mats)))]
    drawn_optics, drawn_camera = draw_optics(rng, style), draw_camera(rng, style)
    optics = optics if optics is not None else drawn_optics
    camera = camera if camera is not None else drawn_camera
    model = _colour_model(optics)
    scene = build_scene(rng, height_px, width_px, optics.um_per_px, material, model, style)
    white = model.camera.signal(np.ones(len(model.camera.wavelengths_nm)))
    raw = expose(
        scene.f,
        np.asarray(model.substrate_rgb()),
        np.asarray(white),
        camera,
        int(rng.integers(2**31)),
    )
    data = jpeg_bytes(raw, camera.jpeg_quality)
    return RealisticSample(
        image=decode_jpeg(data),
        jpeg=data,
        instances=scene.instances(min_area_px),
        optics=optics,
        camera=camera,
        material=material,
    )
