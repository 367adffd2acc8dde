"""Illumination sweep: the paper's Fig. 2 (deep learning vs rule-based under dimmer light).

The same synthetic views (fixed seed, known flakes, same camera noise seed) are rendered at
each relative illumination intensity (1.0 = the nominal lamp setting, 0.4 = 40 % of it), every
detector runs on every rendering, and flake- and image-level precision/recall are computed
per (detector, intensity) with :mod:`flakefinder.evaluate.image_level`.

:func:`illumination_sweep` takes any :class:`~flakefinder.domain.Detector` and any
:class:`SweepView` s, so it is testable with fakes; :func:`synthetic_views` builds views with
:mod:`flakefinder.synth`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flakefinder.artifacts import atomic_open, write_atomic
from flakefinder.domain import Detection, Detector, ImagingContext, LayerClass, category_name
from flakefinder.errors import DatasetError
from flakefinder.evaluate.cocodata import Instance, detection_mask
from flakefinder.evaluate.image_level import image_level_metrics

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DEFAULT_ILLUMINATIONS: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


@dataclass(frozen=True, eq=False)
class SweepView:
    """One field of view: its ground truth and a renderer ``illumination -> RGB uint8 image``."""

    ground_truth: tuple[Instance, ...]
    render: Callable[[float], np.ndarray]


@dataclass(frozen=True)
class SweepRow:
    detector: str
    illumination: float
    n_images: int
    n_ground_truth: int
    n_detections: int
    n_correct: int
    flake_precision: float
    flake_recall: float
    tp: int
    fp: int
    fn: int
    tn: int
    image_precision: float
    image_recall: float


COLUMNS = tuple(SweepRow.__dataclass_fields__)


@dataclass(frozen=True)
class SweepResult:
    rows: tuple[SweepRow, ...]
    illuminations: tuple[float, ...] = field(default=DEFAULT_ILLUMINATIONS)

    def detectors(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.detector for r in self.rows))

    def row(self, detector: str, illumination: float) -> SweepRow:
        for r in self.rows:
            if r.detector == detector and math.isclose(r.illumination, illumination):
                return r
        raise KeyError(f"no sweep row for detector {detector!r} at illumination {illumination}")

    def to_csv(self) -> str:
        lines = [",".join(COLUMNS)]
        for r in self.rows:
            d = asdict(r)
            lines.append(",".join(_cell(d[c], csv=True) for c in COLUMNS))
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        cols = (
            "detector",
            "illumination",
            "n_ground_truth",
            "n_detections",
            "flake_recall",
            "flake_precision",
            "image_recall",
            "image_precision",
        )
        lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
        for r in self.rows:
            d = asdict(r)
            lines.append("| " + " | ".join(_cell(d[c]) for c in cols) + " |")
        return "\n".join(lines) + "\n"

    def save_png(self, path: str | Path) -> Path:
        """Recall and precision vs illumination, one colour per detector (matplotlib Agg);
        solid lines flake level, dashed lines image level."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        try:
            for k, name in enumerate(self.detectors()):
                rows = sorted(
                    (r for r in self.rows if r.detector == name), key=lambda r: r.illumination
                )
                x = [r.illumination for r in rows]
                colour = f"C{k}"
                axes[0].plot(
                    x, [r.flake_recall for r in rows], "o-", color=colour, label=f"{name} (flakes)"
                )
                axes[0].plot(
                    x, [r.image_recall for r in rows], "s--", color=colour, label=f"{name} (images)"
                )
                axes[1].plot(
                    x,
                    [r.flake_precision for r in rows],
                    "o-",
                    color=colour,
                    label=f"{name} (flakes)",
                )
                axes[1].plot(
                    x,
                    [r.image_precision for r in rows],
                    "s--",
                    color=colour,
                    label=f"{name} (images)",
                )
            for ax, what in zip(axes, ("recall", "precision"), strict=True):
                ax.set_xlabel("relative illumination intensity")
                ax.set_ylabel(what)
                ax.set_ylim(-0.05, 1.05)
                ax.invert_xaxis()
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=8)
            fig.suptitle("Detection vs illumination (cf. paper Fig. 2)")
            fig.tight_layout()
            with atomic_open(p, "wb") as f:
                fig.savefig(f, format="png", dpi=100)
        finally:
            plt.close(fig)
        return p

    def write(self, out_dir: str | Path, stem: str = "illumination") -> dict[str, Path]:
        """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / f"{stem}.csv"
        md_path = out / f"{stem}.md"
        write_atomic(csv_path, self.to_csv())
        write_atomic(md_path, self.to_markdown())
        return {"csv": csv_path, "markdown": md_path, "png": self.save_png(out / f"{stem}.png")}


def _cell(v: object, *, csv: bool = False) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "" if csv else "n/a"
        return repr(v) if csv else f"{v:.3f}"
    return str(v)


def instances_from_detections(
    image_id: int, detections: Sequence[Detection], height: int, width: int
) -> list[Instance]:
    """Detections -> :class:`Instance` (mask rasterised from the polygon if missing)."""
    return [
        Instance(
            image_id=image_id,
            category=d.category,
            mask=detection_mask(d, height, width),
            score=float(d.confidence),
            n_layers=d.layer_count,
        )
        for d in detections
    ]


def instances_from_synth(image_id: int, ground_truth: Sequence[object]) -> list[Instance]:
    """``synth.GroundTruthInstance`` s (material, layer_class, n_layers, mask) -> Instance."""
    out = []
    for g in ground_truth:
        lc = LayerClass(getattr(g, "layer_class"))  # noqa: B009 - duck-typed synth value
        out.append(
            Instance(
                image_id=image_id,
                category=category_name(str(getattr(g, "material")), lc),  # noqa: B009
                mask=np.asarray(getattr(g, "mask"), dtype=bool),  # noqa: B009
                n_layers=int(getattr(g, "n_layers")),  # noqa: B009
            )
        )
    return out


def illumination_sweep(
    detectors: Sequence[Detector],
    views: Sequence[SweepView],
    context: ImagingContext,
    *,
    illuminations: Sequence[float] = DEFAULT_ILLUMINATIONS,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every detector on every view at every illumination; one row per (detector, I)."""
    if not detectors:
        raise ValueError("illumination sweep needs at least one detector")
    if not views:
        raise DatasetError("illumination sweep needs at least one view")
    gt = {i: list(v.ground_truth) for i, v in enumerate(views)}
    names = [d.name for d in detectors]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must be unique, got {names}")
    preds: dict[str, dict[float, dict[int, list[Instance]]]] = {n: {} for n in names}
    for level in illuminations:
        for i, view in enumerate(views):
            image = view.render(float(level))
            h, w = image.shape[:2]
            for det in detectors:
                found = det.detect(image, context)
                preds[det.name].setdefault(level, {})[i] = instances_from_detections(i, found, h, w)
        if progress is not None:
            progress(f"illumination {level:g}: done")
    rows = []
    for det in detectors:
        for level in illuminations:
            m = image_level_metrics(
                gt,
                preds[det.name][level],
                iou_threshold=iou_threshold,
                class_agnostic=class_agnostic,
            )
            rows.append(
                SweepRow(
                    detector=det.name,
                    illumination=float(level),
                    n_images=m.n_images,
                    n_ground_truth=m.n_ground_truth,
                    n_detections=m.n_detections,
                    n_correct=m.n_correct,
                    flake_precision=m.flake_precision,
                    flake_recall=m.flake_recall,
                    tp=m.tp,
                    fp=m.fp,
                    fn=m.fn,
                    tn=m.tn,
                    image_precision=m.precision,
                    image_recall=m.recall,
                )
            )
    return SweepResult(tuple(rows), tuple(float(v) for v in illuminations))


@dataclass(frozen=True)
class SyntheticSweepConfig:
    """Synthetic views for the sweep: ``n_views`` fields of view centred on known flakes."""

    materials: tuple[str, ...] = ("graphene",)
    n_views: int = 8
    width_px: int = 512
    height_px: int = 512
    um_per_px: float = 0.2
    chip_um: float = 1500.0
    oxide_thickness_nm: float = 90.0
    seed: int = 0

    def context(self) -> ImagingContext:
        return ImagingContext(
            um_per_px=self.um_per_px,
            oxide_thickness_nm=self.oxide_thickness_nm,
            materials=self.materials,
        )


def synthetic_views(config: SyntheticSweepConfig = SyntheticSweepConfig()) -> list[SweepView]:
    """Views centred on the flakes of ``random_chip(seed=config.seed)`` that hold at least one
    ground-truth instance; each view keeps its own fixed noise seed across illuminations."""
    from flakefinder import synth

    chip = synth.random_chip(
        config.chip_um,
        config.chip_um,
        list(config.materials),
        oxide_thickness_nm=config.oxide_thickness_nm,
        seed=config.seed,
    )
    views: list[SweepView] = []
    for flake in chip.flakes:
        if len(views) >= config.n_views:
            break
        poly = np.asarray(flake.terraces[0].polygon_um, dtype=float)
        cx, cy = (float(v) for v in poly.mean(axis=0))
        args = (chip, cx, cy, config.width_px, config.height_px, config.um_per_px)
        gts = synth.view_instances(*args)
        if not gts:
            continue
        view_seed = config.seed * 1000 + len(views)

        def render(level: float, _args: tuple[synth.VirtualChip, float, float, int, int, float] = args, _seed: int = view_seed) -> np.ndarray:
            settings = synth.RenderSettings(illumination=level)
            return synth.render_view(*_args, settings=settings, seed=_seed)

        views.append(SweepView(tuple(instances_from_synth(len(views), gts)), render))
    if not views:
        raise DatasetError(
            f"synthetic chip (seed {config.seed}) has no flake with a ground-truth instance"
        )
    return views
