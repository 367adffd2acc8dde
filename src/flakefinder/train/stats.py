"""Dataset statistics: images and objects per material and per class (the paper's Fig. 3b)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flakefinder.artifacts import atomic_open
from flakefinder.coco import load_coco
from flakefinder.domain import parse_category_name


@dataclass(frozen=True)
class DatasetStatistics:
    """Counts of a COCO dataset; ``per_material``/``per_class`` map a name to (images, objects).

    An image counts for a material (class) when it has at least one annotation of it; crowd
    annotations are not counted. ``n_negatives`` is the number of images without annotations.
    """

    n_images: int
    n_objects: int
    n_negatives: int
    per_material: dict[str, tuple[int, int]] = field(default_factory=dict)
    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)

    def format_table(self) -> str:
        rows = [("material / class", "images", "objects")]
        for mat, (ni, no) in self.per_material.items():
            rows.append((mat, str(ni), str(no)))
            for cls, (ci, co) in self.per_class.items():
                if _material_of(cls) == mat:
                    rows.append(("  " + cls, str(ci), str(co)))
        rows.append(("total", str(self.n_images), str(self.n_objects)))
        rows.append(("negatives (no objects)", str(self.n_negatives), "0"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        lines = [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
        lines.insert(1, "-" * (w0 + w1 + w2 + 4))
        return "\n".join(lines)


def _material_of(category: str) -> str:
    try:
        return parse_category_name(category)[0]
    except ValueError:
        return category


def dataset_statistics(coco: dict[str, Any] | str | Path) -> DatasetStatistics:
    """Images and objects per material and per category of a COCO dict or file.

    The material is the annotation's ``attributes.material`` when given, else the part of the
    category name before ``_mono``/``_few``/``_thick`` (the whole name when it has no such part).
    """
    if not isinstance(coco, dict):
        coco, _ = load_coco(coco)
    cats = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
    mat_images: dict[str, set[int]] = {}
    mat_objects: dict[str, int] = {}
    cls_images: dict[str, set[int]] = {cats[c]: set() for c in sorted(cats)}
    cls_objects: dict[str, int] = {cats[c]: 0 for c in sorted(cats)}
    for name in cls_images:
        mat_images.setdefault(_material_of(name), set())
        mat_objects.setdefault(_material_of(name), 0)
    annotated: set[int] = set()
    n_objects = 0
    for ann in coco.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        iid = int(ann["image_id"])
        name = cats.get(int(ann["category_id"]), str(ann["category_id"]))
        attrs = ann.get("attributes") or {}
        mat = str(attrs.get("material") or _material_of(name))
        mat_images.setdefault(mat, set()).add(iid)
        mat_objects[mat] = mat_objects.get(mat, 0) + 1
        cls_images.setdefault(name, set()).add(iid)
        cls_objects[name] = cls_objects.get(name, 0) + 1
        annotated.add(iid)
        n_objects += 1
    n_images = len(coco["images"])
    return DatasetStatistics(
        n_images=n_images,
        n_objects=n_objects,
        n_negatives=n_images - len(annotated & {int(i["id"]) for i in coco["images"]}),
        per_material={m: (len(mat_images[m]), mat_objects[m]) for m in mat_images},
        per_class={c: (len(cls_images[c]), cls_objects[c]) for c in cls_images},
    )


def plot_statistics(stats: DatasetStatistics, path: str | Path) -> Path:
    """Bar charts of images and objects per material (left) and objects per class (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    mats = list(stats.per_material)
    x = np.arange(len(mats))
    ax1.bar(x - 0.2, [stats.per_material[m][0] for m in mats], 0.4, label="images")
    ax1.bar(x + 0.2, [stats.per_material[m][1] for m in mats], 0.4, label="objects")
    ax1.set_xticks(x, mats)
    ax1.set_ylabel("count")
    ax1.set_title("per material")
    ax1.legend()
    classes = list(stats.per_class)
    ax2.bar(np.arange(len(classes)), [stats.per_class[c][1] for c in classes], color="C1")
    ax2.set_xticks(np.arange(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax2.set_ylabel("objects")
    ax2.set_title("per class")
    fig.tight_layout()
    try:
        with atomic_open(p, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
    finally:
        plt.close(fig)
    return p
