"""Layer numbers for flakes without labels: cluster their colours, fit the thin-film model.

1. The flakes' median contrasts are clustered (average linkage, cut at a distance that follows
   the measured colour noise), so each cluster is one candidate thickness.
2. Hypotheses: starting from several camera tone curves (the one degeneracy that matters: a
   steeper tone curve makes 1 layer look like 2), each cluster goes to the layer number whose
   predicted colour is nearest, or to *unassigned* (thick, bulk, residue) when none is within
   tolerance; at most one cluster per layer number. The optics model is refitted on the assigned
   clusters, and the two steps repeat until the assignment is stable.
3. Every distinct assignment gets a score: the fit's chi-square (with the parameter priors) plus
   a fixed price per unassigned flake. The best wins; its confidence is its share of
   ``exp(-score)`` among the distinct assignments found.

The model predicts a monotone colour sequence, so the assignment is physically consistent by
construction; a mapping the optics cannot reproduce costs more than leaving clusters unassigned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flakefinder.calibration.gaussians import FlakeStat
from flakefinder.calibration.physics import CameraOpticsParams, PhysicsFit, fit_physics

__all__ = ["Assignment", "Cluster", "assign_layers", "cluster_flakes"]

_UNASSIGNED_PRICE = 3.0  # score per unassigned cluster (+ 0.5 per further flake in it)
_GAMMA_STARTS = (0.55, 0.8, 1.0, 1.4, 2.0, 2.8)


@dataclass(frozen=True)
class Cluster:
    """Flakes of one colour."""

    index: int
    members: tuple[int, ...]  # indices into the flake list
    mean_rgb: np.ndarray  # (3,) pixel-weighted mean of the members' medians
    sem_rgb: np.ndarray  # (3,) uncertainty of the mean (spread between flakes + floor)
    n_pixels: int


@dataclass(frozen=True)
class Assignment:
    """Best layer assignment of the clusters."""

    layers: tuple[int | None, ...]  # per cluster; None = unassigned (thick / not thin / outlier)
    fit: PhysicsFit | None
    score: float
    confidence: float
    alternatives: tuple[tuple[tuple[int | None, ...], float], ...]  # (layers, score), best first


def cluster_flakes(
    flakes: Sequence[FlakeStat], *, noise_rgb: np.ndarray | None = None
) -> list[Cluster]:
    """Group flakes whose median contrasts agree (see the module docstring)."""
    if not flakes:
        return []
    x = np.array([f.median_rgb for f in flakes])
    noise = np.full(3, 0.01) if noise_rgb is None else np.asarray(noise_rgb, dtype=float)
    cut = float(max(0.035, 2.5 * float(np.max(noise))))
    if len(flakes) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        from scipy.cluster.hierarchy import fcluster, linkage

        z = linkage(x, method="average", metric="euclidean")
        labels = fcluster(z, t=cut, criterion="distance") - 1
    out: list[Cluster] = []
    for k in range(int(labels.max()) + 1):
        members = tuple(int(i) for i in np.nonzero(labels == k)[0])
        w = np.array([flakes[i].n_pixels for i in members], dtype=float)
        mean = (x[list(members)] * w[:, None]).sum(axis=0) / w.sum()
        if len(members) > 1:
            between = np.sqrt(
                (w[:, None] * (x[list(members)] - mean) ** 2).sum(axis=0) / w.sum()
            ) / math.sqrt(len(members))
        else:
            between = np.zeros(3)
        sem = np.sqrt(between**2 + 0.01**2)
        out.append(Cluster(len(out), members, mean, sem, int(w.sum())))
    out.sort(key=lambda c: float(np.linalg.norm(c.mean_rgb)))
    return [Cluster(i, c.members, c.mean_rgb, c.sem_rgb, c.n_pixels) for i, c in enumerate(out)]


def _nearest(clusters: Sequence[Cluster], table: np.ndarray, tol: float) -> tuple[int | None, ...]:
    """Each cluster to its nearest layer (1-based) within ``tol``; one cluster per layer."""
    dist = np.array([np.linalg.norm(table - c.mean_rgb[None, :], axis=1) for c in clusters])
    chosen: list[int | None] = [None] * len(clusters)
    taken: set[int] = set()
    order = np.argsort(dist.min(axis=1))
    for ci in order:
        for li in np.argsort(dist[ci]):
            if dist[ci, li] > tol:
                break
            if int(li) not in taken:
                taken.add(int(li))
                chosen[int(ci)] = int(li) + 1
                break
    return tuple(chosen)


def _score(
    clusters: Sequence[Cluster], layers: tuple[int | None, ...], fit: PhysicsFit | None
) -> float:
    unassigned = sum(
        _UNASSIGNED_PRICE + 0.5 * (len(c.members) - 1)
        for c, n in zip(clusters, layers, strict=True)
        if n is None
    )
    return (fit.cost if fit is not None else 0.0) + unassigned


def assign_layers(
    clusters: Sequence[Cluster],
    *,
    material: str,
    oxide_nm: float,
    max_layers: int = 10,
    tolerance: float = 0.06,
    start: CameraOpticsParams | None = None,
) -> Assignment:
    """Assign layer numbers 1..``max_layers`` to ``clusters`` (see the module docstring)."""
    if not clusters:
        return Assignment((), None, 0.0, 0.0, ())
    base = start or CameraOpticsParams()
    starts = [base] if start is not None else []
    starts += [
        CameraOpticsParams(
            oxide_scale=base.oxide_scale,
            numerical_aperture=base.numerical_aperture,
            gamma=g,
        )
        for g in _GAMMA_STARTS
    ]
    results: dict[tuple[int | None, ...], tuple[float, PhysicsFit | None]] = {}
    layer_range = list(range(1, max_layers + 1))
    for p0 in starts:
        table = PhysicsFit(material, oxide_nm, p0, (), np.zeros((0, 3)), 0.0).predict(layer_range)
        layers = _nearest(clusters, table, tolerance * 1.5)
        fit: PhysicsFit | None = None
        for _ in range(4):
            measured = {n: c.mean_rgb for c, n in zip(clusters, layers, strict=True) if n}
            if not measured:
                fit = None
                break
            sigma = {n: c.sem_rgb for c, n in zip(clusters, layers, strict=True) if n}
            fit = fit_physics(
                material, oxide_nm, measured, sigma=sigma, start=p0, n_starts=1, max_nfev=60
            )
            new = _nearest(clusters, fit.predict(layer_range), tolerance)
            if new == layers:
                break
            layers = new
        if layers in results:
            continue
        if fit is not None and tuple(sorted(n for n in layers if n)) != fit.fitted_layers:
            measured = {n: c.mean_rgb for c, n in zip(clusters, layers, strict=True) if n}
            if measured:
                sigma = {n: c.sem_rgb for c, n in zip(clusters, layers, strict=True) if n}
                fit = fit_physics(
                    material, oxide_nm, measured, sigma=sigma, start=p0, n_starts=1, max_nfev=60
                )
            else:
                fit = None
        results[layers] = (_score(clusters, layers, fit), fit)
    ranked = sorted(results.items(), key=lambda kv: kv[1][0])
    best_layers, (best_score, best_fit) = ranked[0]
    weights = np.array([math.exp(-(s - best_score)) for _, (s, _f) in ranked])
    confidence = float(weights[0] / weights.sum())
    return Assignment(
        layers=best_layers,
        fit=best_fit,
        score=float(best_score),
        confidence=confidence,
        alternatives=tuple((lay, float(s)) for lay, (s, _f) in ranked),
    )
