"""Layer numbers for flakes without labels: cluster their colours, fit the thin-film model.

1. The flakes' median contrasts are clustered (average linkage, cut at a distance that follows
   the measured colour noise), so each cluster is one candidate thickness.
2. Hypotheses: starting from several camera tone curves (the one degeneracy that matters: a
   steeper tone curve makes 1 layer look like 2), each cluster goes to the layer number whose
   predicted colour is nearest, or to *unassigned* (thick, bulk, residue) when none is within
   tolerance. Several clusters may share a layer number (flakes of one thickness in pictures of
   slightly different exposure can form separate clusters). The optics model is refitted on the
   assigned clusters (merged per layer number), and the two steps repeat until the assignment is
   stable.
3. Every distinct assignment gets a score: the fit's chi-square (with the parameter priors),
   the spread of clusters that share a layer number about their merged colour, and a price per
   unassigned cluster (smaller for clusters of few pixels, whose colour is dominated by blurred
   edges). The best wins; its confidence is its share of
   ``exp(-score)`` among the distinct assignments found.

The model predicts a monotone colour sequence, so the assignment is physically consistent by
construction; a mapping the optics cannot reproduce costs more than leaving clusters unassigned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.calibration.physics import CameraOpticsParams, PhysicsFit, fit_physics

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flakefinder.calibration.gaussians import FlakeStat

__all__ = ["Assignment", "Cluster", "assign_layers", "cluster_flakes"]

# score per unassigned cluster (+ 0.5 per further flake in it); at 3.0, explaining one cluster
# with the optics fit and leaving the 3 and 4 layer clusters of the real pictures a and b
# unassigned scored better than the right assignment (benchmarks/bench_setup_proposals.py)
_UNASSIGNED_PRICE = 4.5
_TRUSTED_PX = 400  # clusters with fewer interior pixels get a larger uncertainty
# how far the optics model may miss a real camera's colours (per channel): the fit's residual on
# the shipped real graphene micrographs (2DMatGMM, 1-4 layers) is about 0.015 rms; with 0.01 the
# score preferred leaving well-measured 3 and 4 layer clusters unassigned and called 1 L "2 L"
_MODEL_SD = 0.015
# how far clusters of one layer number in different pictures of one setup may differ (exposure,
# white balance, background fit): up to 0.03 in blue for the monolayers of the real pictures
_SCATTER_SD = 0.015
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
        # small regions are dominated by blurred edges: their colour is trusted less
        floor = 0.006 * math.sqrt(max(1.0, _TRUSTED_PX / float(w.sum())))
        sem = np.sqrt(between**2 + floor**2)
        out.append(Cluster(len(out), members, mean, sem, int(w.sum())))
    out.sort(key=lambda c: float(np.linalg.norm(c.mean_rgb)))
    return [Cluster(i, c.members, c.mean_rgb, c.sem_rgb, c.n_pixels) for i, c in enumerate(out)]


def _nearest(
    clusters: Sequence[Cluster], table: np.ndarray, max_distance: float
) -> tuple[int | None, ...]:
    """Each cluster to its nearest predicted layer, when it is near enough.

    A cluster is accepted within half the distance from that layer's colour to its neighbours'
    (so the tolerance follows the layer spacing, wide for strongly absorbing materials and
    tight for faint ones), never beyond ``max_distance``; clusters off the thin-layer colour
    trajectory (bulk, residue) or beyond the last layer stay unassigned. Several clusters may
    get one layer number (flakes of one thickness in pictures of slightly different exposure
    form separate clusters); :func:`_score` charges for their spread.
    """
    k = len(table)
    gaps = np.full(k, np.inf)
    if k > 1:
        step = np.linalg.norm(np.diff(table, axis=0), axis=1)
        gaps[:-1] = np.minimum(gaps[:-1], step)
        gaps[1:] = np.minimum(gaps[1:], step)
        gaps[-1] = step[-1]
    tol = np.minimum(0.5 * gaps + 0.01, max_distance)
    out: list[int | None] = []
    for c in clusters:
        d = np.linalg.norm(table - c.mean_rgb[None, :], axis=1)
        li = int(np.argmin(d))
        out.append(li + 1 if d[li] <= tol[li] else None)
    return tuple(out)


def _by_layer(
    clusters: Sequence[Cluster], layers: tuple[int | None, ...]
) -> dict[int, list[Cluster]]:
    acc: dict[int, list[Cluster]] = {}
    for c, n in zip(clusters, layers, strict=True):
        if n is not None:
            acc.setdefault(n, []).append(c)
    return acc


def _merged(cs: Sequence[Cluster]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of clusters of one layer number, weighted by their inverse variance (with the
    scatter between pictures), and each cluster's weight (K, 3)."""
    w = 1.0 / (np.array([c.sem_rgb for c in cs]) ** 2 + _SCATTER_SD**2)
    mean = (np.array([c.mean_rgb for c in cs]) * w).sum(axis=0) / w.sum(axis=0)
    return mean, w


def _measured(
    clusters: Sequence[Cluster], layers: tuple[int | None, ...]
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Mean and uncertainty per assigned layer."""
    means, sems = {}, {}
    for n, cs in _by_layer(clusters, layers).items():
        means[n] = _merged(cs)[0]
        sems[n] = np.min(np.array([c.sem_rgb for c in cs]), axis=0)
    return means, sems


def _spread(clusters: Sequence[Cluster], layers: tuple[int | None, ...]) -> float:
    """Half the chi-square of clusters given one layer number about their merged mean: with the
    fit's chi-square of the merged means, this is the chi-square of every cluster."""
    total = 0.0
    for cs in _by_layer(clusters, layers).values():
        if len(cs) > 1:
            mean, w = _merged(cs)
            total += 0.5 * float((w * (np.array([c.mean_rgb for c in cs]) - mean) ** 2).sum())
    return total


def _score(
    clusters: Sequence[Cluster], layers: tuple[int | None, ...], fit: PhysicsFit | None
) -> float:
    unassigned = sum(
        _UNASSIGNED_PRICE * min(1.0, c.n_pixels / _TRUSTED_PX) + 0.5 * (len(c.members) - 1)
        for c, n in zip(clusters, layers, strict=True)
        if n is None
    )
    return (fit.cost if fit is not None else 0.0) + _spread(clusters, layers) + unassigned


def assign_layers(
    clusters: Sequence[Cluster],
    *,
    material: str,
    oxide_nm: float,
    max_layers: int = 10,
    tolerance: float = 0.25,
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

    def refit(layers: tuple[int | None, ...], p0: CameraOpticsParams) -> PhysicsFit | None:
        measured, sigma = _measured(clusters, layers)
        if not measured:
            return None
        return fit_physics(
            material,
            oxide_nm,
            measured,
            sigma={n: np.sqrt(v**2 + _MODEL_SD**2) for n, v in sigma.items()},
            start=p0,
            n_starts=1,
            max_nfev=60,
            loss="linear",
            prior=base,
        )

    base_table = PhysicsFit(material, oxide_nm, base, (), np.zeros((0, 3)), 0.0).predict([1])[0]
    seeds: list[tuple[CameraOpticsParams, tuple[int | None, ...] | None]] = [
        (p0, None) for p0 in starts
    ]
    # consecutive seed: well-measured clusters on the model's side of the substrate, faintest
    # first, get 1, 2, 3, ...
    same_side = [
        i for i, c in enumerate(clusters) if np.all(np.sign(c.mean_rgb) == np.sign(base_table))
    ]
    trusted = [i for i in same_side if clusters[i].n_pixels >= _TRUSTED_PX]
    same_side = trusted or same_side
    if same_side:
        seq: list[int | None] = [None] * len(clusters)
        for rank, i in enumerate(same_side[:max_layers]):
            seq[i] = rank + 1
        seeds.append((base, tuple(seq)))
    for p0, seed in seeds:
        if seed is None:
            table = PhysicsFit(material, oxide_nm, p0, (), np.zeros((0, 3)), 0.0).predict(
                layer_range
            )
            layers = _nearest(clusters, table, tolerance)
        else:
            layers = seed
        fit: PhysicsFit | None = None
        for _ in range(4):
            fit = refit(layers, p0)
            if fit is None:
                break
            new = _nearest(clusters, fit.predict(layer_range), tolerance)
            if new == layers:
                break
            layers = new
        if layers in results:
            continue
        if fit is not None and tuple(sorted({n for n in layers if n})) != fit.fitted_layers:
            fit = refit(layers, p0)
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
