"""Where self-training finds real pictures, and which of them it may train on.

A *source set* is one shared real set (``../shared/data/real``, loaded by
:mod:`flakefinder.evaluate.real_sets` with its material and pixel sizes) or one folder of the
user's micrographs. Each set is split by file name: a fixed, seeded share is held out for
checking and never labelled or trained on (:func:`holdout_split`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flakefinder.errors import DatasetError

REAL_DATA_ENV = "FLAKEFINDER_REAL_DATA"


@dataclass(frozen=True)
class SourceImage:
    """One real picture and its pixel size."""

    path: Path
    um_per_px: float

    @property
    def name(self) -> str:
        """The file name (what held-out lists and the benchmark compare)."""
        return self.path.name


@dataclass(frozen=True)
class SourceSet:
    """Pictures of one setup to pseudo-label (see the module docstring)."""

    name: str
    origin: str
    material: str
    oxide_nm: float
    images: tuple[SourceImage, ...]
    assumed: tuple[str, ...] = ()

    @property
    def um_per_px(self) -> float:
        """Median pixel size of the set's pictures."""
        return float(np.median([im.um_per_px for im in self.images]))


def shared_real_root() -> Path | None:
    """``$FLAKEFINDER_REAL_DATA``, else ``../shared/data/real`` beside this checkout (None when
    neither exists)."""
    env = os.environ.get(REAL_DATA_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    checkout = Path(__file__).resolve().parents[4]
    cand = checkout.parent / "shared" / "data" / "real"
    return cand if (checkout / "pyproject.toml").is_file() and cand.is_dir() else None


def shared_sets(
    root: Path, names: tuple[str, ...], *, cache_dir: Path, max_images: int | None
) -> list[SourceSet]:
    """The shared real sets ``names`` under ``root`` (their pictures only; labels unused)."""
    from flakefinder.evaluate.real_bench import setup_of
    from flakefinder.evaluate.real_sets import load_real_set

    out: list[SourceSet] = []
    for name in names:
        rs = load_real_set(name, root, cache_dir=cache_dir / name, max_images=max_images)
        su = setup_of(rs)
        per_image = rs.um_per_px_images or (None,) * len(rs.images)
        images = tuple(
            SourceImage(p, float(um) if um is not None else su.um_per_px)
            for p, um in zip(rs.images, per_image, strict=True)
        )
        out.append(SourceSet(name, f"shared real set {name} ({rs.source})", su.material,
                             su.oxide_nm, images, su.assumed))  # fmt: skip
    return out


def folder_sets(
    folders: list[Path], *, um_per_px: float, oxide_nm: float, material: str,
    max_images: int | None, assumed: tuple[str, ...] = (),
) -> list[SourceSet]:  # fmt: skip
    """One set per folder of the user's micrographs (every image file in it, sorted).

    Raises
    ------
    DatasetError
        A folder that does not exist or holds no image, or two folders of one name.
    """
    from flakefinder.imaging import iter_image_files

    out: list[SourceSet] = []
    for folder in folders:
        if not folder.is_dir():
            raise DatasetError(f"not a folder of images: {folder}")
        files = sorted(iter_image_files([folder]), key=lambda p: p.name)
        if not files:
            raise DatasetError(f"{folder}: no image files")
        if max_images is not None:
            files = files[:max_images]
        name = folder.resolve().name or "images"
        if any(s.name == name for s in out):
            raise DatasetError(f"two folders named {name!r}: give folders with distinct names")
        out.append(SourceSet(name, f"folder {folder}", material, oxide_nm,
                             tuple(SourceImage(p, um_per_px) for p in files), assumed))  # fmt: skip
    return out


def holdout_split(
    names: list[str], fraction: float, seed: int, set_name: str
) -> tuple[list[str], list[str]]:
    """(training names, held-out names) of one set: a seeded ``fraction`` held out.

    Depends only on the set of names, the fraction, the seed and the set's name. With two or
    more pictures and a fraction > 0 at least one is held out and at least one trained on.
    """
    ordered = sorted(set(names))
    n = len(ordered)
    n_hold = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        n_hold = min(max(n_hold, 1), n - 1)
    rng = np.random.default_rng([seed, zlib.crc32(set_name.encode())])
    held = {ordered[i] for i in rng.permutation(n)[:n_hold]}
    return [x for x in ordered if x not in held], [x for x in ordered if x in held]
