"""Print a setup profile and plot its colour clusters (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from flakefinder.artifacts import atomic_open

if TYPE_CHECKING:
    from flakefinder.calibration.profile import SetupProfile

__all__ = ["plot_profile", "profile_lines"]


def profile_lines(profile: SetupProfile) -> list[str]:
    """Human-readable description of ``profile``, one line per item."""
    out = [
        f"profile {profile.profile_id}",
        f"  {profile.um_per_px:g} um/px, {profile.oxide_nm:g} nm SiO2, NA "
        + ("?" if profile.numerical_aperture is None else f"{profile.numerical_aperture:.2f}")
        + f", camera {_camera(profile)}",
    ]
    if profile.substrate_rgb is not None:
        out.append("  substrate RGB " + " ".join(f"{v:.1f}" for v in profile.substrate_rgb))
    if profile.optics_fit is not None:
        fit = profile.optics_fit
        params = ", ".join(f"{k} {v:.3g}" for k, v in fit.parameters)
        out.append(
            f"  optics fit on {', '.join(fit.fitted_on) or '-'}: rms {fit.rms_residual:.4f}, "
            f"max {fit.max_abs_residual:.4f}"
        )
        out.append(f"    {params}")
    if profile.notes:
        out.append(f"  notes: {profile.notes}")
    for t in profile.materials:
        out.append(f"  {t.material}: layers, contrast R G B (sd), source")
        for e in t.layers:
            sd = np.sqrt(np.diag(e.covariance))
            res = (
                ""
                if e.fit_residual_rgb is None
                else "  fit residual " + " ".join(f"{v:+.3f}" for v in e.fit_residual_rgb)
            )
            out.append(
                f"    {e.n_layers:>3}: "
                + " ".join(f"{m:+.3f} ({s:.3f})" for m, s in zip(e.contrast_rgb, sd, strict=True))
                + f"  {e.source}"
                + (f", {e.n_flakes} flakes" if e.n_flakes else "")
                + res
            )
    return out


def _camera(profile: SetupProfile) -> str:
    """``gamma 0.97`` for a gamma camera, else the encoding and its gamma (``srgb, gamma 2.20``)."""
    cam = profile.camera
    if cam.encoding == "gamma":
        return f"gamma {cam.gamma:.2f}"
    return f"{cam.encoding}, gamma {cam.gamma:.2f}"


def _ellipse(mean: np.ndarray, cov: np.ndarray, n_sigma: float = 2.0) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 64)
    circle = np.stack([np.cos(t), np.sin(t)])
    return cast("np.ndarray", (vecs @ (np.sqrt(np.maximum(vals, 0))[:, None] * circle) * n_sigma).T + mean)


def plot_profile(profile: SetupProfile, path: str | Path) -> Path:
    """Scatter the colour Gaussians (G vs R and G vs B, 2-sigma ellipses) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    pairs = ((0, 1, "R", "G"), (2, 1, "B", "G"))
    for ax, (i, j, xi, yj) in zip(axes, pairs, strict=True):
        for t in profile.materials:
            for e in t.layers:
                m = e.mean[[i, j]]
                c = e.covariance[np.ix_([i, j], [i, j])]
                pts = _ellipse(m, c)
                style = "-" if e.source == "measured" else "--"
                (line,) = ax.plot(pts[:, 0], pts[:, 1], style)
                ax.plot(m[0], m[1], "o" if e.source == "measured" else "x", color=line.get_color())
                ax.annotate(f"{t.material} {e.n_layers}", m, fontsize=8)
        ax.axhline(0, color="0.8", lw=0.5)
        ax.axvline(0, color="0.8", lw=0.5)
        ax.set_xlabel(f"contrast {xi}")
        ax.set_ylabel(f"contrast {yj}")
    fig.suptitle(f"{profile.profile_id}: solid = measured, dashed = predicted (2 sigma)")
    fig.tight_layout()
    p = Path(path)
    try:
        with atomic_open(p, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return p
